// The static summary and details a migration starts with: what the Temporal UI shows at the top of
// its page (`temporal workflow start --static-summary` and `--static-details` give the same).
import type { MigrationSpec } from '../spec/schema';
import { showTableRef, type TableRef } from '../spec/names';

const ref = (r: unknown) => showTableRef(r as TableRef);

export function startSummary(spec: MigrationSpec): string {
  const n = spec.tables.length;
  return `backfill ${spec.name}: ${n} table entr${n === 1 ? 'y' : 'ies'}, ${spec.mode} mode, ${spec.source} → ${spec.target}`;
}

export function startDetails(spec: MigrationSpec): string {
  const approval =
    spec.cutover.approval === 'auto' ? 'automatic' : `required${spec.cutover.approvers?.length ? ` (approvers: ${spec.cutover.approvers.join(', ')})` : ''}`;
  return [
    `**Migration** \`${spec.name}\`: ${spec.mode} from \`${spec.source}\` to \`${spec.target}\`, ${spec.concurrency} range(s) at a time; approval ${approval}.`,
    '',
    '| source | target |',
    '|---|---|',
    ...spec.tables.map((t) => `| ${ref(t.source)} | ${t.target === undefined ? '(same schema)' : ref(t.target)} |`),
    '',
    'Current progress is under *Current Details*; the evidence is the `report` query.',
  ].join('\n');
}

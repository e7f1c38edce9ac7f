// Schema drift: both catalogs read again and compared with the plan. The ranges were copied and
// proven by the columns and partitions the plan names; a column added, dropped or retyped on either
// side since, or a partition attached or detached, means the evidence no longer covers the tables as
// they are. Read from the catalogs alone (no table's rows), so it is cheap enough for the gate and
// for the final check under the freeze.
import type { MigrationSpec } from '../spec/schema';
import { guarded } from '../db/errors';
import { columnChanges } from '../domain/columns';
import { checkTable, type Binding } from '../plan/binding';
import { captureOf } from '../spec/schema';
import { poolFor } from '../db/pools';
import { CAPTURE_COVERAGE_SQL } from './sql';
import type { TablePlan } from '../domain/plan';
import { readableName } from '../capture/tables';

export interface PartitionDrift {
  table: number;
  /** for people: what changed, on which side */
  sentence: string;
  /** the leaf partitions now */
  now: { source: string[]; target: string[] };
}

export interface SchemaDrift {
  /** columns (or whole tables) that changed since planning: the evidence cannot cover them */
  columns: string[];
  /** tables whose partitions changed since they were last proven */
  partitions: PartitionDrift[];
}

function listChange(side: string, before: string[], now: string[]): string[] {
  const added = now.filter((p) => !before.includes(p)).map(readableName);
  const removed = before.filter((p) => !now.includes(p)).map(readableName);
  return [
    ...(added.length ? [`${added.join(', ')} attached or created on the ${side}`] : []),
    ...(removed.length ? [`${removed.join(', ')} detached or dropped on the ${side}`] : []),
  ];
}

const ADVICE =
  'the ranges were copied and proven with the columns as planned, so the evidence does not cover the table as it is now: ' +
  'abort, then start the migration again under a new name with a spec that matches the tables (name a column in omit to leave it out)';

/**
 * Change capture still sees every write of the table: the publication still sends it (as its root,
 * where it is partitioned), and no relation under it became UNLOGGED. Sentences of what broke.
 */
async function captureCoverage(spec: MigrationSpec, publication: string, b: Binding, plan: TablePlan): Promise<string[]> {
  const r = (
    await poolFor(spec.source, 'read').query<{ published: boolean; via_root: boolean; unlogged: string }>(CAPTURE_COVERAGE_SQL, [b.sourceRel.oid, publication])
  ).rows[0];
  const out: string[] = [];
  const unlogged = JSON.parse(r.unlogged) as string[];
  if (!r.published)
    out.push(
      `${plan.source}: the publication ${publication} no longer publishes it; writes made since were never sent to the stream; abort, then start the migration again under a new name`,
    );
  else if (b.partitions.source.length && !r.via_root)
    out.push(
      `${plan.source}: the publication ${publication} no longer publishes its partitions via the root (publish_via_partition_root is off); abort, then start the migration again under a new name`,
    );
  if (unlogged.length)
    out.push(
      `${plan.source}: ${unlogged.join(', ')} became UNLOGGED: its writes do not reach the write-ahead log, so change capture cannot see them; abort, then start the migration again under a new name`,
    );
  return out;
}

export async function checkSchema(input: { spec: MigrationSpec; plans: TablePlan[] }): Promise<SchemaDrift> {
  const { spec, plans } = input;
  return guarded('comparing both catalogs with the plan', async () => {
    const columns: string[] = [];
    const partitions: PartitionDrift[] = [];
    const cap = captureOf(spec);
    for (const [i, plan] of plans.entries()) {
      const table = spec.tables[i];
      if (!table) continue;
      const r = await checkTable({ sourceAlias: spec.source, targetAlias: spec.target, table, tableIndex: i, catalogOnly: true });
      if (!r.binding) {
        columns.push(`${plan.source} → ${plan.target} changed after planning: ${r.problems.join('; ')}; ${ADVICE}`);
        continue;
      }
      if (cap) columns.push(...(await captureCoverage(spec, cap.publication, r.binding, plan)));
      const changed = plan.columns ? columnChanges(plan.columns, r.binding.columnPlan) : [];
      if (changed.length) columns.push(`${plan.source} → ${plan.target}: the columns changed after planning: ${changed.join('; ')}; ${ADVICE}`);
      if (plan.partitions) {
        const now = r.binding.partitions;
        const moved = [...listChange('source', plan.partitions.source, now.source), ...listChange('target', plan.partitions.target, now.target)];
        if (moved.length)
          partitions.push({ table: i, sentence: `${plan.source} → ${plan.target}: partitions changed since they were last proven: ${moved.join('; ')}`, now });
      }
    }
    return { columns, partitions };
  });
}

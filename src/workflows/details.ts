// What the Temporal UI shows under "Current Details": the migration in Markdown, kept current. Pure
// over the state; the workflow sets it on every move (setCurrentDetails: no command, no history).
import type { MigrationState } from './state';
import { rerunCommand } from '../domain/report';
import { captureLine, copiedRows } from '../report/render';
import { waitingLine } from '../domain/waits';

const n = (x: number) => x.toLocaleString('en-US');

export function currentDetails(s: MigrationState): string {
  const out: string[] = [`**Phase:** \`${s.phase}\`${s.detail ? ` (${s.detail})` : ''}${s.paused ? ' **(paused)**' : ''}`];
  if (s.attention) out.push(`**Attention:** ${s.attention}`);
  // What it waits for, said at once: which connection, where, why, the tries and the next one.
  for (const w of s.waits.values()) out.push(`**Waiting:** ${waitingLine(w, Date.now())}`);
  if (s.tables.length) {
    out.push('', '| table | ranges verified | failed | in flight | rows copied |', '|---|---|---|---|---|');
    for (const t of s.tables)
      out.push(
        `| ${t.plan.source} → ${t.plan.target} | ${n(t.verified)} / ${n(t.plan.rangeCount)} | ${n(t.failed.size)} | ${n(t.inFlight.size)} | ${copiedRows(t, '')} |`,
      );
  }
  const l = s.delta();
  const c = s.captureView();
  if (c) out.push('', `**${captureLine(c).replace(/^change capture:/, 'Change capture:**')}`);
  else if (l) out.push('', `**Catch-up:** ${n(l.rowsApplied)} row(s) applied, watermark ${l.watermark ?? '–'}`);
  if (s.phase === 'awaiting_approval' && s.digest && s.spec) {
    const who = s.spec.cutover.approvers?.length ? s.spec.cutover.approvers.join(', ') : 'anyone';
    out.push(
      '',
      `**Awaiting approval** of digest \`${s.digest}\`; who may approve: ${who}.`,
      `Read the evidence first (query \`report\`, or \`backfill report ${s.name}\`), then approve exactly that digest:`,
      // The UI's Markdown starts a list only after a blank line; without it the steps run together.
      '',
      // --digest: the CLI refuses if the evidence moved on since this was shown.
      `- CLI: \`backfill approve ${s.name} --as <you> --digest ${s.digest}\``,
      `- Temporal UI: *More Actions → Send an Update*, name \`approveCutover\`, data \`{"approver": "<you>", "digest": "<the digest you read>"}\``,
      `- reject: \`backfill reject ${s.name} --as <you> --reason <why>\``,
    );
  }
  const red = s.tables.flatMap((t) => [...t.failed.values()].map((f) => ({ t, f })));
  if (red.length) {
    out.push('', `**Ranges that are not proven** (${n(red.length)}):`, '');
    for (const { t, f } of red.slice(0, 10)) {
      const why = f.refused ? `refused by ${f.refused.constraint ?? 'the target'}` : (f.failed ?? []).join(', ') || 'differs';
      out.push(`- ${t.plan.source} range ${f.index} \`[${f.lo}, ${f.hi || '∞'})\`: ${why}; rerun: \`${rerunCommand(s.name, t.plan.source, f.index)}\``);
    }
    if (red.length > 10) out.push(`- … and ${n(red.length - 10)} more (query \`report\`)`);
  }
  return out.join('\n');
}

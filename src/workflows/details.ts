// What the Temporal UI shows under "Current Details": the migration in Markdown, kept current. Pure
// over the state; the state shows it on every move through its observer, wired by the workflow
// (setCurrentDetails: no command, no history).
import { setCurrentDetails } from '@temporalio/workflow';
import type { MigrationState } from './state';
import { rerunCommand } from '../domain/report';
import { captureLine, copiedRows, reverseLine } from '../report/render';
import { waitingLine } from '../domain/waits';

const n = (x: number) => x.toLocaleString('en-US');

/** The UI's "Current Details", from the state as it is now (no command: not in the history). */
export function showDetails(s: MigrationState): void {
  // What the UI shows must never stop the migration (and replays over older state shapes).
  try {
    setCurrentDetails(currentDetails(s));
  } catch {
    setCurrentDetails(`**Phase:** \`${s.phase}\``);
  }
}

function currentDetails(s: MigrationState): string {
  const out: string[] = [`**Phase:** \`${s.phase}\`${s.detail ? ` (${s.detail})` : ''}${s.control.paused ? ' **(paused)**' : ''}`];
  if (s.gate.attention) out.push(`**Attention:** ${s.gate.attention}`);
  // What it waits for, said at once: which connection, where, why, the tries and the next one.
  for (const w of s.waits.all()) out.push(`**Waiting:** ${waitingLine(w, Date.now())}`);
  if (s.ranges.tables.length) {
    out.push('', '| table | ranges verified | failed | in flight | rows copied |', '|---|---|---|---|---|');
    for (const t of s.ranges.tables)
      out.push(
        `| ${t.plan.source} → ${t.plan.target} | ${n(t.verified)} / ${n(t.plan.rangeCount)} | ${n(t.failed.size)} | ${n(t.inFlight.size)} | ${copiedRows(t, '')} |`,
      );
  }
  const l = s.catchup.delta();
  const c = s.capture.view();
  const back = s.reverse.progress();
  if (back) {
    out.push('', `**${reverseLine(back).replace(/^the way back \(target → source\):/, 'The way back (target → source):**')}`);
    if (s.phase === 'switched')
      out.push(
        '',
        'Authority is on the target; the source follows it. To switch back to the source, approving the way back by its digest:',
        '',
        `- CLI: \`backfill switch-back ${s.name} --as <you> --digest ${back.digest ?? '<digest>'}\``,
        `- Temporal UI: *More Actions → Send an Update*, name \`switchBack\`, data \`{"approver": "<you>", "digest": "<the digest>"}\``,
        '',
        'To end the way back and keep the target:',
        '',
        `- CLI: \`backfill finish ${s.name} --as <you> --reason <why>\``,
        `- Temporal UI: *More Actions → Send an Update*, name \`finish\`, data \`{"actor": "<you>", "reason": "<why>"}\``,
      );
  } else if (c) out.push('', `**${captureLine(c).replace(/^change capture:/, 'Change capture:**')}`);
  else if (l) out.push('', `**Catch-up:** ${n(l.rowsApplied)} row(s) applied, watermark ${l.watermark ?? '–'}`);
  if (s.phase === 'awaiting_approval' && s.evidence.digest && s.spec) {
    const who = s.spec.cutover.approvers?.length ? s.spec.cutover.approvers.join(', ') : 'anyone';
    out.push(
      '',
      `**Awaiting approval** of digest \`${s.evidence.digest}\`; who may approve: ${who}.`,
      `Read the evidence first (query \`report\`, or \`backfill report ${s.name}\`), then approve exactly that digest:`,
      // The UI's Markdown starts a list only after a blank line; without it the steps run together.
      '',
      // --digest: the CLI refuses if the evidence moved on since this was shown.
      `- CLI: \`backfill approve ${s.name} --as <you> --digest ${s.evidence.digest}\``,
      `- Temporal UI: *More Actions → Send an Update*, name \`approveCutover\`, data \`{"approver": "<you>", "digest": "<the digest you read>"}\``,
      `- reject: \`backfill reject ${s.name} --as <you> --reason <why>\``,
    );
  }
  const red = s.ranges.tables.flatMap((t) => [...t.failed.values()].map((f) => ({ t, f })));
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

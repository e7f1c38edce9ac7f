// The way back (`cutover.reverse`) as the report presents it: its evidence and the digest a switch
// back approves, the stream from the target, the switch back's final window, and how it ended. Pure:
// the workflow's report builds it from its state, the report kept in the ledger from the audit.
import type { AuditRecord, ReverseReport } from './report';

/** The audit's note when the way back opens: where its stream starts. */
export function openedNote(point: string): string {
  return `every change the target commits from ${point} on goes back to the source`;
}

const lastOf = (xs: readonly AuditRecord[], action: string) => [...xs].reverse().find((e) => e.action === action);

/** The way back from the ledger's audit alone; undefined when it never opened. */
export function reverseFromAudit(entries: readonly AuditRecord[]): ReverseReport | undefined {
  const opened = lastOf(entries, 'open-way-back');
  if (!opened) return undefined;
  const after = entries.slice(entries.indexOf(opened));
  const switched = after.find((e) => e.action === 'switch');
  const back = after.find((e) => e.action === 'switch-back');
  const finish = after.find((e) => e.action === 'finish');
  const asked = lastOf(after, 'approve-switch-back');
  const voided = asked && after.slice(after.indexOf(asked)).find((e) => e.action === 'approval-void');
  return {
    digest: opened.digest ?? null,
    point: /from (\S+) on/.exec(opened.note ?? '')?.[1] ?? null,
    switchedAt: switched?.at ?? null,
    ...(asked && !voided
      ? { approval: { approver: asked.actor ?? '', digest: asked.digest ?? '', approvedAt: asked.at, ...(asked.note ? { comment: asked.note } : {}) } }
      : {}),
    ...(voided ? { red: voided.note ?? 'the switch back was red' } : {}),
    ...(back ? { switchedBackAt: back.at } : {}),
    ...(finish ? { finished: { by: finish.actor ?? 'the workflow', reason: finish.note ?? '' } } : {}),
  };
}

/** The phase a way back stands in: completed once it ended, else switched (authority on the target). */
export function reversePhase(r: ReverseReport): 'completed' | 'switched' {
  return r.switchedBackAt || r.finished ? 'completed' : 'switched';
}

const fmt = (n: number) => n.toLocaleString('en-US');

/** The way back in sentences (Markdown): the report's section, and the HTML page's. */
export function reverseLines(r: ReverseReport): string[] {
  const out: string[] = [];
  if (r.switchedBackAt) out.push(`Switched back at ${r.switchedBackAt}: authority is on the source again.`);
  else if (r.finished) out.push(`Finished (${r.finished.reason || 'no reason given'}, by ${r.finished.by}): authority stays on the target.`);
  else if (r.switchedAt) out.push(`Authority is on the target since ${r.switchedAt}; the source follows it.`);
  out.push(
    `Evidence of the way back: the switch's evidence, then ${r.point ? `every change the target commits from ${r.point} on` : 'every change the target commits after the switch'} goes back to the source.`,
  );
  out.push(`Digest of the way back: ${r.digest ? `\`${r.digest}\`` : 'none'}${reversePhase(r) === 'switched' ? ' (what a switch back approves)' : ''}`);
  if (r.stream)
    out.push(
      `Stream back: ${fmt(r.stream.transactions)} target transaction(s), ${fmt(r.stream.rows)} row change(s) applied to the source, up to ${r.stream.appliedLsn ?? 'none yet'}; lag ${r.stream.lagSeconds} s, ${r.stream.lagBytes} bytes.`,
    );
  else out.push('Stream back: its counts are not kept in the ledger (see the workflow result).');
  if (r.checkpoint)
    out.push(
      `Checkpoint: at ${r.checkpoint.at} the source was proven equal to the target as it stood at ${r.checkpoint.point} (every row of every table); a switch back compares what was written since.`,
    );
  if (r.checkpointRed) out.push(`The last checkpoint did not hold: ${r.checkpointRed}.`);
  if (r.approval) out.push(`Switch back approved by ${r.approval.approver} (digest \`${r.approval.digest}\`) at ${r.approval.approvedAt}.`);
  if (r.red) out.push(`The last switch back was red: ${r.red}. The target took writes again and the approval is void.`);
  if (r.window)
    out.push(
      `The switch back's final window: ${fmt(r.window.keys)} changed key(s) compared on both sides; ${r.window.proof}; ${fmt(r.window.ms)} ms after the target's freeze.`,
    );
  if (r.keepUntil && reversePhase(r) === 'switched') out.push(`It finishes by itself at ${r.keepUntil} (cutover.reverse.keep).`);
  return out;
}

// The switch back (`switchBack`, phase switched): gated as the switch is, with the directions
// swapped. The target is frozen (`cutover.reverse.freeze`), the stream back applied to a fence, every
// key changed on the target since the switch compared on both sides, then the tripwire: storage
// rewritten, and every row version either side wrote since the switch found by its transaction id
// and compared. Green: the source's sequences advanced, `cutover.reverse.switch` exactly once, the
// way back's slot and publication dropped, completed with authority on the source. Red: the target
// unfrozen, the approval void, back to following.
import type { MigrationSpec } from '../spec/schema';
import { acts, summarised } from '../workflows/activities';
import { audit } from '../workflows/audit';
import type { MigrationResult } from '../workflows/messages';
import type { MigrationState } from '../workflows/state';
import { reverseEnded } from './result.workflow';
import { windowDifferences } from '../capture/epochs.workflow';
import { WRITERS_GRACE_MS } from '../gate/final-check.workflow';

/** The switch back, once approved: the migration's end (green), or undefined (red: following again). */
export async function switchBack(s: MigrationState, back: MigrationSpec): Promise<MigrationResult | undefined> {
  const a = s.reverse.view!.approval!;
  await audit(s, 'approve-switch-back', a.approver, a.digest, { comment: a.comment });
  s.setPhase('final_check', 'switching back: the target frozen, the way back applied to its freeze, its final window compared');
  const started = Date.now();
  const frozenAt = (
    await acts.runAction({
      migration: s.name,
      execution: s.execution,
      spec: back,
      action: 'freeze',
      actor: a.approver,
      digest: a.digest,
      reason: 'the switch back',
    })
  ).at;
  s.reverse.froze();
  const why = await finalWindowBack(s, back, frozenAt);
  if (why) {
    await unfreezeTarget(s, back, why);
    const voided = s.reverse.backRed(why);
    await audit(s, 'approval-void', voided?.approver, voided?.digest, { reason: why });
    s.setPhase('switched', `the switch back was red (${why}); authority stays on the target, the source follows it`);
    return undefined;
  }
  s.setPhase('switching', 'switching back to the source');
  await summarised("advance the source's sequences past the target's keys").advanceSequences({ spec: back });
  const sw = await summarised(`switch authority back to the source (digest ${a.digest}, approved by ${a.approver})`).runSwitch({
    migration: s.name,
    execution: s.execution,
    spec: back,
    digest: a.digest,
    approver: a.approver,
    back: true,
  });
  s.reverse.switchedBack(sw.switchedAt);
  await summarised('end the way back: drop its replication slot and publication on the target').dropCapture({ migration: back.name, spec: back });
  s.reverse.dropped();
  s.setPhase('completed', `switched back at ${sw.switchedAt}, ${Date.now() - started} ms after the target's freeze: authority is on the source`);
  return reverseEnded(s, a.approver, 'switched back', sw.switchedAt);
}

/** The way back's final window on the frozen target: why it is red, or undefined. */
async function finalWindowBack(s: MigrationState, back: MigrationSpec, frozenAt: string): Promise<string | undefined> {
  const w = await acts.awaitWriters({ spec: back, before: frozenAt, timeoutMs: WRITERS_GRACE_MS });
  if (w.open > 0) return `${w.open} writing transaction(s) opened on the target before its freeze were still open after ${WRITERS_GRACE_MS / 1000} s`;
  for (;;) {
    const x = await summarised('apply the way back up to the freeze of the target').applyCapture({ migration: back.name, spec: back, maxMs: 20_000 });
    s.reverse.applied(x);
    s.touch();
    if (x.reached) break;
  }
  const r = s.reverse.view!;
  const win = await summarised(`compare every key changed on the target since ${r.point}`).compareWindow({ migration: back.name, spec: back, since: r.point });
  const red = windowDifferences(win);
  if (red) return `the way back's final window differs: ${red}`;
  if (!r.baseline) return 'the way back has no baseline to account for the writes since the switch';
  const t = await summarised('account for every write on either side since the switch').captureTripwire({
    migration: back.name,
    spec: back,
    baseline: r.baseline,
  });
  if (t.rewritten.length) return `rewritten or truncated since the switch (TRUNCATE, VACUUM FULL, CLUSTER, a type change): ${t.rewritten.join(', ')}`;
  if (!t.accounted) return `the writes since the switch are not proven: ${t.detail}`;
  return undefined;
}

/** The target takes writes again: `cutover.reverse.unfreeze` (when given) after a frozen switch back that did not switch. */
export async function unfreezeTarget(s: MigrationState, back: MigrationSpec, why: string, a: typeof acts = acts): Promise<void> {
  if (!s.reverse.view?.frozen) return;
  if (back.cutover.unfreeze) await a.runAction({ migration: s.name, execution: s.execution, spec: back, action: 'unfreeze', reason: why });
  s.reverse.unfroze();
}

// The final check, after the approval, for a live source: freeze, the last window, every range
// again, the totals on the frozen source. Red voids the approval (the caller unfreezes).
import type { Approval } from '../domain/report';
import { acts } from '../workflows/activities';
import type { MigrationState } from '../workflows/state';
import { oldestMark } from '../catchup/state.workflow';
import { deltaRound, sweep } from '../catchup/rounds.workflow';
import { capturedFinalWindow, capturedTripwire } from '../capture/epochs.workflow';
import { refreshReport, hasConstraints, reconcileAll, restoreAndValidate } from '../report/evidence.workflow';

/** How long the final check waits for writers that were open when the freeze ran. */
export const WRITERS_GRACE_MS = 60_000;

/** The final check; returns why it is red, or undefined when green. */
export async function finalCheck(s: MigrationState, approved: Approval): Promise<string | undefined> {
  const { spec } = s;
  const l = s.live!;
  const started = Date.now();
  let frozenAt: string | undefined;
  if (spec.cutover.freeze) {
    frozenAt = (await acts.runAction({ migration: s.name, execution: s.execution, spec, action: 'freeze', actor: approved.approver, digest: approved.digest }))
      .at;
    s.gate.froze();
    // Writers already inside a transaction when the freeze ran may still commit: wait for them.
    const w = await acts.awaitWriters({ spec, before: frozenAt, timeoutMs: WRITERS_GRACE_MS });
    if (w.open > 0) return `${w.open} writing transaction(s) opened before the freeze were still open after ${WRITERS_GRACE_MS / 1000} s`;
  }
  const before = l.rowsApplied;
  if (l.capture) {
    // Change capture: the window is the keys changed since the checkpoint, not every range.
    s.describe('applying the stream to the freeze, then comparing every key changed since the checkpoint');
    s.showDetails();
    const why = await capturedFinalWindow(s);
    if (why) return why;
    const trip = await capturedTripwire(s);
    if (trip.red) return trip.red;
    if (trip.sweep) {
      // Writes the stream cannot be shown to have carried: every range measured again on the
      // frozen source (copied again where it changed), then the totals, as with a change column.
      s.describe(l.capture.tripwire ?? 'checking every range again');
      s.showDetails();
      await sweep(s);
      if (s.ranges.failedCount() > 0) return `${s.ranges.failedCount()} range(s) still differ on the frozen source after the final window`;
      await reconcileAll(s);
    }
  } else {
    if (s.catchup.hasDelta() && !(await deltaRound(s))) return 'the final delta window did not verify';
    s.describe('checking every range again');
    await sweep(s);
    if (s.ranges.failedCount() > 0) return `${s.ranges.failedCount()} range(s) still differ after the final window was copied`;
  }
  if (hasConstraints(s)) {
    const broken = await restoreAndValidate(s);
    if (broken.length) return `rows break ${broken.join('; ')}`;
  }
  if (frozenAt && s.catchup.hasDelta()) {
    const late = (await acts.changedSince({ spec, since: frozenAt })).filter((x) => x.rows > 0);
    if (late.length) return `writes after the freeze: ${late.map((x) => `${x.rows} row(s) in ${x.table}`).join(', ')}`;
  }
  // Change capture: the totals were proven at the checkpoint, every key changed since was compared
  // in the window, and the tripwire accounted for every write (or the totals were read above).
  if (!l.capture) await reconcileAll(s);
  s.setPhase('final_check', 'building the final report');
  await refreshReport(s, { final: true });
  s.gate.finalWindowChecked({
    rows: l.rowsApplied - before,
    ms: Date.now() - started,
    watermark: l.capture ? l.capture.applied : oldestMark(l.marks),
    ...(l.capture?.tripwire ? { proof: l.capture.tripwire } : {}),
  });
  if (s.evidence.report!.verdict === 'red') return 'the final report is red';
  return undefined;
}

/** Red: the source takes writes again (cutover.unfreeze), and the approval is void. */
export async function unfreezeAfter(s: MigrationState, why: string): Promise<void> {
  if (s.spec.cutover.unfreeze) await acts.runAction({ migration: s.name, execution: s.execution, spec: s.spec, action: 'unfreeze', reason: why });
  s.gate.unfroze();
}

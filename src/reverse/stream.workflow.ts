// The way back (`cutover.reverse`), as the workflow runs it. Before the switch, under the freeze and
// after the final window, its slot is made on the target: every change the target commits after it
// goes back to the source. After the switch the migration stays in phase `switched`, the stream from
// the target applied to the source call after call, until a finish (the `finish` update, an abort,
// a cancellation, or `cutover.reverse.keep` elapsed) drops the slot and the publication on the target
// and completes with authority on the target, or a switch back (switch-back.workflow.ts) hands
// authority back to the source.
import { ApplicationFailure, CancellationScope, allHandlersFinished, condition, continueAsNew, isCancellation, patched, sleep } from '@temporalio/workflow';
import { openedNote } from '../domain/reverse-report';
import { durationMs } from '../spec/schema';
import { reversedSpec } from '../spec/reverse';
import { lastTries, summarised } from '../workflows/activities';
import { audit } from '../workflows/audit';
import type { MigrationResult } from '../workflows/messages';
import type { MigrationState } from '../workflows/state';
import type { MigrationWorkflow } from '../workflows/types';
import { unfreezeAfter } from '../gate/final-check.workflow';
import { endingFailure, rootCause } from '../workflows/errors';
import { switchBack, unfreezeTarget } from './switch-back.workflow';
import { reverseEnded } from './result.workflow';

/** One call of the stream back follows it for at most this long before the workflow looks again. */
const FOLLOW_MS = 10_000;
/** A call told to stop at a mark has this long to end by itself (and report what it applied) before it is cancelled. */
const STOP_GRACE_MS = 3_000;

/** Before the switch: the way back's publication and slot on the target (once; a continued run has them). */
export async function openReverse(s: MigrationState, digest: string): Promise<void> {
  if (!s.spec.cutover.reverse || s.reverse.view) return;
  try {
    const r = await summarised('open the way back: a publication and a replication slot on the target').startReverse({
      migration: s.name,
      spec: s.spec,
      digest,
    });
    s.reverse.started(r.point, r.digest, r.baseline);
    // (Patched: migrations started before this kept the way back's opening out of the ledger's audit.)
    if (patched('way-back-audited')) await audit(s, 'open-way-back', undefined, r.digest, { reason: openedNote(r.point) });
  } catch (e) {
    if (isCancellation(e)) throw e;
    // Nothing was switched: whatever of the way back was made goes, and the source takes writes
    // again, before the migration fails with the reason.
    const back = reversedSpec(s.spec)!;
    await lastTries.dropCapture({ migration: back.name, spec: back }).catch(() => undefined);
    if (s.gate.frozen) await unfreezeAfter(s, `the way back could not be opened: ${rootCause(e).message}`);
    throw e;
  }
}

/** The switch ran: the source follows the target from now on, until `keep` if given. */
export function switchedWithReverse(s: MigrationState, o: { switchedAt: string; digest: string; approver: string }): void {
  const keep = s.spec.cutover.reverse?.keep;
  s.reverse.switched({ ...o, ...(keep ? { keepUntil: Date.now() + durationMs(keep) } : {}) });
  s.catchup.enter('switched');
}

/** Whether the way back should end now: asked for, or its `keep` elapsed (then asked for by it). */
function finishDue(s: MigrationState): boolean {
  if (s.control.aborted !== undefined) s.reverse.finishAsked('abort', s.control.aborted);
  const until = s.reverse.view?.keepUntil;
  if (until !== undefined && Date.now() >= until) s.reverse.finishAsked('keep', `cutover.reverse.keep (${s.spec.cutover.reverse?.keep ?? ''}) elapsed`);
  return s.reverse.finishing;
}

/** Phase switched: the stream back applied call after call until a finish; then the finish. */
export async function followBack(s: MigrationState): Promise<MigrationResult> {
  const back = reversedSpec(s.spec)!;
  s.setPhase('switched', 'authority is on the target; the source follows it until a switch back or a finish');
  while (!finishDue(s)) {
    await followOnce(s, back);
    // (Patched: migrations started before this had no checkpoints of the way back.)
    if (!s.reverse.view?.approval && !finishDue(s) && checkpointDue(s) && patched('way-back-checkpoints')) await checkpointOnce(s);
    if (s.reverse.view?.approval) {
      const end = await switchBack(s, back);
      if (end) return end;
      continue;
    }
    if (s.historyFull() && !finishDue(s)) {
      await condition(allHandlersFinished);
      await continueAsNew<MigrationWorkflow>(s.spec, s.carry());
    }
  }
  return finishReverse(s);
}

/**
 * One call of the stream back, following it as the target commits. A finish, a switch back or `keep`
 * running out stops the call in flight at a mark in the target's WAL, where it ends and reports what
 * it applied; a call that has not ended STOP_GRACE_MS later (one held on the source) is cancelled.
 */
async function followOnce(s: MigrationState, back: NonNullable<ReturnType<typeof reversedSpec>>): Promise<void> {
  const until = s.reverse.view?.keepUntil;
  const asked = () => s.reverse.finishing || s.control.aborted !== undefined || s.reverse.view?.approval !== undefined;
  const call = new CancellationScope();
  const watch = new CancellationScope();
  watch
    .run(async () => {
      if (until === undefined) await condition(asked);
      else await condition(asked, Math.max(1, until - Date.now()));
      await lastTries.stopStream({ spec: back }).catch(() => undefined);
      await sleep(STOP_GRACE_MS);
      call.cancel();
    })
    .catch(() => undefined);
  try {
    const r = await call.run(() =>
      summarised("apply the target's changes to the source as they commit").applyCapture({ migration: back.name, spec: back, maxMs: FOLLOW_MS, follow: true }),
    );
    s.reverse.applied(r);
    s.touch();
  } catch (e) {
    if (isCancellation(e) && (asked() || (until !== undefined && Date.now() >= until))) return;
    // Change capture's sentences name the side it reads "the source": here that is the target.
    const root = rootCause(e);
    if (!isCancellation(e) && root instanceof ApplicationFailure)
      throw endingFailure(
        root,
        `the way back stopped: authority stays on the target and the source no longer follows it (to go back, migrate the target to the source anew). It reads the target, so "the source" below is the target: ${root.message}`,
      );
    throw e;
  } finally {
    watch.cancel();
    call.cancel();
  }
}

/** Row changes gone back since the last checkpoint after which the next one is due, whatever the time. */
const CHECKPOINT_ROWS = 100_000;

/** Whether a checkpoint of the way back is due: `cutover.reverse.checkpoint` (1 hour) since the last try, or CHECKPOINT_ROWS since. */
function checkpointDue(s: MigrationState): boolean {
  const r = s.reverse.view!;
  const last = r.checkpointTried ?? { at: r.switchedAt ? Date.parse(r.switchedAt) : Date.now(), rows: 0 };
  const every = durationMs(s.spec.cutover.reverse?.checkpoint ?? '1 hour');
  return Date.now() - last.at >= every || r.rows - last.rows >= CHECKPOINT_ROWS;
}

/** A checkpoint of the way back (reverse/checkpoint.ts): held, the switch back's window starts there. */
async function checkpointOnce(s: MigrationState): Promise<void> {
  s.reverse.checkpointTried(Date.now());
  // A checkpoint that cannot be taken (no free slot on the target, say) must not stop the stream
  // back: it is said, tried a few times, and tried again when the next one is due.
  const c = await lastTries.checkpointBack({ migration: s.name, spec: s.spec }).catch((e: unknown) => {
    if (isCancellation(e)) throw e;
    s.reverse.checkpointDiffered(`a checkpoint could not be taken: ${rootCause(e).message}`);
    return undefined;
  });
  if (!c) return;
  s.reverse.applied(c.applied);
  if (c.differ.length) s.reverse.checkpointDiffered(`at ${c.point} the source differs from the target: ${c.differ.join('; ')}`);
  else s.reverse.checkpointed({ point: c.point, baseline: c.baseline, at: new Date().toISOString() });
  s.touch();
}

/** Ends the way back: its slot and publication dropped on the target, the finish audited, completed with authority on the target. */
async function finishReverse(s: MigrationState): Promise<MigrationResult> {
  const back = reversedSpec(s.spec)!;
  const r = s.reverse.view!;
  if (!r.dropped) {
    await summarised('end the way back: drop its replication slot and publication on the target').dropCapture({ migration: back.name, spec: back });
    s.reverse.dropped();
  }
  const f = r.finish ?? { by: 'the workflow', reason: 'finished' };
  await audit(s, 'finish', f.by, r.digest, { reason: f.reason });
  s.setPhase('completed', `the way back finished (${f.reason}); authority stays on the target`);
  return reverseEnded(s, f.by, f.reason);
}

/**
 * Temporal's cancellation once the way back is open finishes it: in phase switched, or during a switch
 * back that has not switched (the target unfrozen first), authority stays on the target; a switch back
 * that has switched completes as one. Undefined before the switch.
 */
export function finishOnCancellation(s: MigrationState): Promise<MigrationResult> | undefined {
  const r = s.reverse.view;
  if (!r?.switchedAt) return undefined;
  return CancellationScope.nonCancellable(async () => {
    const back = reversedSpec(s.spec)!;
    if (r.switchedBackAt) {
      if (!r.dropped) await lastTries.dropCapture({ migration: back.name, spec: back });
      s.reverse.dropped();
      s.setPhase('completed', `switched back at ${r.switchedBackAt}: authority is on the source`);
      return reverseEnded(s, r.approval?.approver ?? 'the switch back', 'switched back', r.switchedBackAt);
    }
    await unfreezeTarget(s, back, 'cancelled through Temporal', lastTries);
    s.reverse.finishAsked('cancellation', 'cancelled through Temporal');
    return finishReverse(s);
  });
}

/**
 * On the way out of a failure: the way back's slot and publication dropped, best effort (said by the
 * caller). A switch back that failed before it switched unfreezes the target first; one that may have
 * switched (runSwitch was asked) is read from its record.
 */
export async function dropReverseLast(s: MigrationState): Promise<void> {
  const r = s.reverse.view;
  if (!r || r.dropped) return;
  const back = reversedSpec(s.spec)!;
  const ran = r.frozen && r.backAsked ? await lastTries.switchRecorded({ migration: s.name, execution: s.execution, spec: back, back: true }) : null;
  if (ran) s.reverse.switchedBack(ran.at);
  else await unfreezeTarget(s, back, 'the migration failed', lastTries);
  await lastTries.dropCapture({ migration: back.name, spec: back });
  s.reverse.dropped();
}

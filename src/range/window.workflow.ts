// Backfilling: a sliding window of ranges in flight, each run by the range life cycle (attempts,
// then locating), and the window's stops: an abort, a fatal error, a full history.
import { allHandlersFinished, condition, continueAsNew, isCancellation, patched, sleep } from '@temporalio/workflow';
import type { RangeInput } from './copy';
import { locateFirstPolicy, rangePolicy, runRange } from '../domain/range-lifecycle';
import { lagGraceMs } from '../spec/schema';
import { summarised } from '../workflows/activities';
import { rangeBounds } from '../domain/range-bounds';
import type { TablePlan } from '../domain/plan';
import { isSnapshotGone, rootCause } from '../workflows/errors';
import type { MigrationState } from '../workflows/state';
import type { MigrationWorkflow } from '../workflows/types';
import { showRanges } from '../workflows/metrics';
import { asksReuse, firstAttemptOf } from '../plan/resume.workflow';
import type { ResumeTable } from '../domain/resume';

/** ` [lo, hi)` for a key-span plan (arithmetic); '' where the bounds live in the ledger or need SQL. */
function boundsOf(p: TablePlan, i: number): string {
  if (p.kind !== 'size' || !p.size || !p.hi) return '';
  const b = rangeBounds({ lo: p.lo[0], hi: p.hi[0], size: p.size, rangeCount: p.rangeCount }, i);
  return ` [${b.lo}, ${b.hi})`;
}

/**
 * `copiedBefore`: a rerun, so even its first attempt now is a re-copy. `resumed`: the range's first
 * pass in a migration started again after an earlier run (resume.ts).
 */
async function rangeInFlight(s: MigrationState, t: number, i: number, copiedBefore: boolean, resumed?: ResumeTable): Promise<void> {
  const { spec } = s;
  const st = s.ranges.tables[t];
  s.ranges.started(t, i);
  showRanges(s, t);
  const args = (attempt: number, finalAttempt: boolean): RangeInput => ({
    migration: s.name,
    spec: { source: spec.source, target: spec.target, control: spec.control, mode: spec.mode },
    table: spec.tables[t],
    tableIndex: t,
    plan: st.plan,
    rangeIndex: i,
    attempt,
    finalAttempt,
    // Change capture: the source is read at the epoch's snapshot.
    ...(s.live?.capture?.epoch !== undefined ? { epoch: s.live.capture.epoch } : {}),
  });
  // Verified by the earlier run: measured first, copied only if it differs.
  const copyArgs = (attempt: number, finalAttempt: boolean): RangeInput =>
    asksReuse(resumed, attempt) ? { ...args(attempt, finalAttempt), reuse: true } : args(attempt, finalAttempt);
  let first = true;
  // What the UI's timeline says on each bar: the table, its range and, where the plan has them, the
  // keys. The range by its index, as the report, Current Details and `backfill rerun --range` name it.
  const where = `${st.plan.source} range ${i} of ${st.plan.rangeCount}${boundsOf(st.plan, i)}`;
  const copying = summarised(`${spec.mode === 'verify' ? 'verify' : asksReuse(resumed, 1) ? 'copy or reuse' : 'copy'} ${where}`, {
    eager: s.ranges.dispatch(),
  });
  const locating = summarised(`locate differences in ${where}`);
  const rechecking = summarised(`read the differing keys of ${where} again`);
  const stopping = () => s.control.aborted !== undefined;
  // (Patched: verify-mode migrations started before locate-first go on measuring after waits.)
  const policy =
    spec.mode === 'verify' && patched('verify-locate-first')
      ? locateFirstPolicy(spec.retries.rangeAttempts, lagGraceMs(spec), stopping)
      : rangePolicy(spec.mode, spec.retries.rangeAttempts, stopping);
  try {
    // Each step hands back its activity's promise itself (see RangeSteps: the command order).
    const outcome = await runRange(i, policy, {
      attempt: (n, final) => (spec.mode === 'verify' ? copying.verifyRange(args(n, final)) : copying.copyRange(copyArgs(n, final))),
      attempted: (r, n) => {
        s.ranges.ran(r);
        s.ranges.copied(t, r.rowsCopied, copiedBefore || n > 1);
        // A resumed migration counts what the first attempt did: verified without a copy, or copied.
        if (first && resumed) s.ranges.firstAttempted(t, r.reuse);
        first = false;
      },
      // (Patched: migrations started before locating existed go on without it.)
      locate: (n) => (patched('locate-failed-ranges') ? locating.locateRange(args(n, true)) : Promise.resolve(undefined)),
      wait: (ms) => sleep(ms),
      recheck: (n) => rechecking.recheckRange(args(n, true)),
      release: () => {
        s.ranges.released(t, i);
      },
    });
    s.ranges.settled(t, i, outcome);
  } catch (e) {
    if (s.live?.capture && isSnapshotGone(e)) {
      // The epoch's snapshot ended under this range: a new epoch copies it (nothing was committed).
      s.capture.giveBack({ t, i, ...(copiedBefore ? { copiedBefore: true as const } : {}) });
    } else if (!(isCancellation(e) && s.control.aborted !== undefined)) s.control.failedInFlight(e);
    // (An abort that ended a range's wait for a database: the abort ends the migration.)
  } finally {
    s.ranges.landed(t, i);
    s.touch(t);
  }
}

/** Copies (or verifies) every range still to do, `concurrency` at a time; continues as new when the history is full. */
export async function backfill(s: MigrationState): Promise<void> {
  s.setPhase('backfilling');
  const { ranges, control } = s;
  for (;;) {
    await condition(
      () =>
        control.fatal !== undefined ||
        control.aborted !== undefined ||
        (!s.hasWork() && ranges.inFlight() === 0) ||
        (!control.paused && s.hasWork() && ranges.slotsInUse() < control.concurrency) ||
        (s.hasWork() && s.historyFull()),
    );
    if (control.fatal !== undefined || control.aborted !== undefined || !s.hasWork()) break;
    if (s.historyFull()) {
      // Let the ranges in flight land, then go on in a fresh run with the counters.
      await condition(() => ranges.inFlight() === 0);
      if (control.fatal === undefined && control.aborted === undefined) {
        await condition(allHandlersFinished);
        await continueAsNew<MigrationWorkflow>(s.spec, s.carry());
      }
      break;
    }
    // A planned range's first pass (not a rerun, nor a range a lost snapshot gives back).
    const firstPass = ranges.rerunQueue.length === 0 && !s.live?.capture?.again.length;
    const next = s.nextRange()!;
    void rangeInFlight(s, next.t, next.i, next.copiedBefore === true, firstPass ? firstAttemptOf(s, next.t) : undefined);
  }
  await condition(() => ranges.inFlight() === 0);
  if (control.fatal !== undefined) {
    s.setPhase('failed', rootCause(control.fatal).message);
    throw control.fatal;
  }
}

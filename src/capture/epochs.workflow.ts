// Change capture (`capture: logical`): the phases of a migration that follows the source's
// write-ahead log. Ranges are copied at an epoch's exported snapshot; the slot's stream is applied
// to the target from there; a checkpoint proves every range at a new snapshot while writes go on;
// the final window proves only the keys changed since that checkpoint. Workflow code sees LSNs and
// counts; names, snapshots and connections stay in the activities and the ledger.
import { CancellationScope, condition, isCancellation, patched } from '@temporalio/workflow';
import { catchUpOf, durationMs, oneTable } from '../spec/schema';
import type { ApplyOutcome, WindowTable } from './steps';
import { acts, holders, lastTries, summarised } from '../workflows/activities';
import { backfill } from '../range/window.workflow';
import { failure } from '../domain/failures';
import { isSnapshotGone } from '../workflows/errors';
import { reachedAgain, waitedInSight } from '../workflows/waits';
import { reconcileAll } from '../report/evidence.workflow';
import type { MigrationState } from '../workflows/state';
import type { CaptureView } from './state.workflow';

/** One apply call streams at most this long before the workflow looks again (progress, a decision). */
const APPLY_MS = 20_000;
/** The patch under which the gate's calls follow the stream, and a decision stops the one in flight. */
const GATE_FOLLOWS = 'gate-interrupts-stream';
/** Epochs opened in a row without a range copied: something keeps ending them. */
const MAX_FRUITLESS_EPOCHS = 5;

const cap = (s: MigrationState): CaptureView => s.live!.capture!;

function showLag(c: CaptureView): string {
  const mb = Number(c.lagBytes) / (1024 * 1024);
  return `lag ${c.lagSeconds.toFixed(1)} s, ${mb >= 1 ? `${mb.toFixed(1)} MB` : `${c.lagBytes} bytes`} of WAL`;
}

/** Counts an apply call's work into the state, and shows it. */
function applied(s: MigrationState, r: ApplyOutcome): void {
  s.capture.applied(r);
  r.byTable.forEach((n, t) => s.ranges.copied(t, n));
  s.catchup.applied(r.rows, r.reached ? 0 : Math.max(1, r.rows));
  s.touch();
}

/** One call of the stream: to what was committed when it started (its fence), or to `untilLsn`; `follow`: on past the fence. */
async function applyRound(s: MigrationState, o: { untilLsn?: string; maxMs?: number; follow?: boolean } = {}): Promise<ApplyOutcome> {
  const what = o.untilLsn
    ? `apply the captured changes up to ${o.untilLsn}`
    : o.follow
      ? 'apply the captured changes as they commit while the gate waits'
      : 'apply the captured changes';
  const r = await summarised(what).applyCapture({
    migration: s.name,
    spec: s.spec,
    untilLsn: o.untilLsn,
    maxMs: o.maxMs ?? APPLY_MS,
    ...(o.follow ? { follow: true } : {}),
  });
  applied(s, r);
  return r;
}

/** The stream applied exactly up to `lsn` (the point of a new snapshot): nothing at or past it. */
async function applyTo(s: MigrationState, lsn: string): Promise<void> {
  for (;;) {
    const r = await applyRound(s, { untilLsn: lsn });
    if (r.reached) return;
  }
}

interface OpenEpoch {
  epoch: number;
  point: string;
  /** the holder ended (its worker died, its session was cut) */
  ended(): boolean;
  close(): void;
}

/**
 * A new snapshot epoch: its holder starts (the first creates the slot with it), and the stream is
 * applied up to its point when the slot started earlier, so target and snapshot meet exactly there.
 */
async function openEpoch(s: MigrationState): Promise<OpenEpoch> {
  // Waits for a source that cannot be reached: not fruitless epochs, each one said (waits.ts).
  let waited = 0;
  let lastWait: unknown;
  for (let tries = 1; ; tries++) {
    const epoch = s.capture.openEpoch();
    const scope = new CancellationScope();
    let ended = false;
    let holderFailure: unknown;
    const held = scope.run(() => holders.holdSnapshot({ migration: s.name, spec: s.spec, epoch }));
    const end = () => {
      ended = true;
      // Ranges reading this epoch stop being taken: the next epoch copies them.
      s.capture.holderEnded(epoch);
    };
    held.then(end, (e: unknown) => {
      holderFailure = e;
      end();
    });
    // A holder that cannot start (or dies at once) fails this wait rather than leaving it waiting.
    const endedEarly = held.then(() => {
      // A failure of the migration, not of the workflow task (a plain Error would retry the task forever).
      throw failure('SnapshotLost', `the snapshot of epoch ${epoch} ended before it was ready`);
    });
    // Its failure reaches the race below; this only keeps it from being unhandled once the epoch was ready.
    endedEarly.catch(() => undefined);
    let ready;
    try {
      ready = await Promise.race([acts.awaitEpoch({ migration: s.name, spec: s.spec, epoch, timeoutMs: 120_000 }), endedEarly]);
    } catch (e) {
      // The source cannot be reached: said, waited for in sight, then another epoch.
      if (ended && !isCancellation(e) && (await waitedInSight(holderFailure, 'holdSnapshot', ++waited))) {
        lastWait = holderFailure;
        tries--;
        continue;
      }
      // Its worker died while it opened: another epoch, a few times.
      if (ended && !isCancellation(e) && tries < MAX_FRUITLESS_EPOCHS) continue;
      throw e;
    }
    if (lastWait) reachedAgain(lastWait, 'holdSnapshot');
    if (!ready.slotCreated) await applyTo(s, ready.point);
    return { epoch, point: ready.point, ended: () => ended, close: () => scope.cancel() };
  }
}

/**
 * The backfill under change capture: every range copied at an epoch's snapshot, and the rows
 * outside the planned ranges at the same one. An epoch whose holder dies ends there; the ranges not
 * yet copied continue in a new one (what was copied stays).
 */
export async function capturedBackfill(s: MigrationState): Promise<void> {
  const c = cap(s);
  // The ranges change: the next checkpoint is the evidence (and the final window's start).
  s.capture.rangesChange();
  let fruitless = 0;
  for (;;) {
    s.setPhase('backfilling', `opening snapshot epoch ${c.epochs + 1}`);
    const ep = await openEpoch(s);
    s.capture.reading(ep.epoch, ep.point, ep.ended());
    const before = s.ranges.tables.reduce((a, t) => a + t.verified + t.failed.size, 0);
    try {
      await backfill(s);
      if (!c.lost && !ep.ended() && s.control.aborted === undefined) {
        for (const [t, st] of s.ranges.tables.entries())
          await summarised(`copy the rows of ${st.plan.source} outside its ranges at the snapshot`).copyOutside({
            migration: s.name,
            ...oneTable(s.spec, t),
            plan: st.plan,
            repair: true,
            epoch: ep.epoch,
          });
      }
    } catch (e) {
      if (!isSnapshotGone(e) || isCancellation(e)) throw e;
      s.capture.snapshotGone();
    } finally {
      ep.close();
      s.capture.doneReading();
    }
    const lostIt = c.lost || ep.ended();
    s.capture.lossHandled();
    if (!lostIt || s.control.aborted !== undefined) return;
    const after = s.ranges.tables.reduce((a, t) => a + t.verified + t.failed.size, 0);
    fruitless = after > before ? 0 : fruitless + 1;
    if (fruitless >= MAX_FRUITLESS_EPOCHS) {
      // A failure of the migration, with its reason (a plain Error would retry the workflow task forever).
      throw failure('SnapshotLost', `${MAX_FRUITLESS_EPOCHS} snapshot epochs in a row ended before a range was copied`);
    }
  }
}

/** The stream back to back until the target is within `catchUp.maxLag` of the source. */
async function converge(s: MigrationState): Promise<void> {
  const maxLag = durationMs(catchUpOf(s.spec).maxLag);
  for (let round = 1; s.control.aborted === undefined; round++) {
    const r = await applyRound(s);
    s.describe(`round ${round}: ${r.transactions} transaction(s), ${r.rows} row(s) applied; ${showLag(cap(s))}`);
    s.showDetails();
    // Reached its fence within the bound: a change committed when it started was applied that fast.
    if (r.reached && r.ms <= maxLag) return;
  }
}

/**
 * A checkpoint: a new snapshot at P, the stream applied exactly to P, then every range (and the
 * rows outside them) compared source@P against the target. Green: P is the evidence's point.
 */
async function checkpoint(s: MigrationState): Promise<void> {
  for (let tries = 1; ; tries++) {
    s.describe('checkpoint: a new snapshot, the stream applied exactly to it, every range compared at it');
    s.showDetails();
    // Both sides' transaction ids and the source's own counts, before the snapshot: what the final
    // window's tripwire starts from.
    // (Patched: migrations started before this had no tripwire.)
    const baseline = patched('capture-tripwire')
      ? await summarised("read the source's write counters before the checkpoint").captureBaseline({ spec: s.spec })
      : undefined;
    const ep = await openEpoch(s);
    try {
      let outsideEqual = true;
      for (const [t, st] of s.ranges.tables.entries()) {
        const r = await summarised(`compare every range of ${st.plan.source} at the checkpoint ${ep.point}`).sweepTable({
          migration: s.name,
          ...oneTable(s.spec, t),
          plan: st.plan,
          repair: false,
          epoch: ep.epoch,
        });
        s.ranges.measured(t, r.failed);
        outsideEqual &&= r.outside.equal;
        s.touch(t);
      }
      if (!outsideEqual) s.describe('rows outside the planned ranges differ at the checkpoint');
      if (s.ranges.failedCount() === 0 && outsideEqual) {
        // The whole-table totals at the same point: what the final window builds on.
        await reconcileAll(s, { epoch: ep.epoch });
        s.capture.checkpointed(ep.point, baseline);
      }
      return;
    } catch (e) {
      // The checkpoint's holder died: take another (the stream never moved past its point).
      if (isCancellation(e) || (!isSnapshotGone(e) && !ep.ended()) || tries >= MAX_FRUITLESS_EPOCHS) throw e;
    } finally {
      ep.close();
    }
  }
}

/** Catching up under change capture: the stream until the lag is within bounds, then a checkpoint. */
export async function capturedCatchUp(s: MigrationState): Promise<void> {
  s.setPhase('catching_up', 'applying the changes captured since the snapshot');
  await converge(s);
  if (s.control.aborted !== undefined) return;
  await checkpoint(s);
  // The checkpoint lasts as long as comparing every range takes, while the writers go on: what they
  // wrote meanwhile is applied before the gate opens, so an approval finds little left to apply at
  // the freeze, whatever the table's size. (Patched: migrations started before went to the gate.)
  if (s.control.aborted === undefined && cap(s).checkpoint && patched('capture-converge-after-checkpoint')) await converge(s);
}

/** While the gate waits, the pause between two calls of the stream. (Patched: 1 s before the calls followed the stream.) */
export function gatePauseMs(): number {
  return patched(GATE_FOLLOWS) ? 100 : 1000;
}

/**
 * While the gate waits: the stream goes on, so the final window stays small. Each call follows the
 * stream (every transaction applied as it commits) for up to 10 s, so little is left to apply when
 * a decision (an approval, a rejection, an abort, a rerun) arrives. The decision stops the call in
 * flight rather than waiting for it to end: a mark in the source's WAL that it stops at
 * (stopStream), and the activity's cancellation for a call that cannot read it (one held on the
 * target). Either way it stops between two source transactions: one being applied is rolled back
 * whole, its position with it, and the final window's call applies it. (Patched: migrations
 * started before this waited for a call that stopped at its fence.)
 */
export async function streamWhileWaiting(s: MigrationState, decided: () => boolean): Promise<void> {
  if (!patched(GATE_FOLLOWS)) {
    await applyRound(s, { maxMs: 10_000 });
    return;
  }
  const scope = new CancellationScope();
  // The decision stops the call; once the call has ended, the scope's cancel ends this wait.
  scope
    .run(() => condition(decided))
    .then(
      () => {
        // Not awaited, and its failure only leaves the cancellation to stop the call.
        lastTries.stopStream({ spec: s.spec }).catch(() => undefined);
        scope.cancel();
      },
      () => undefined,
    );
  try {
    await scope.run(() => applyRound(s, { maxMs: 10_000, follow: true }));
  } catch (e) {
    if (!isCancellation(e) || !decided()) throw e;
  } finally {
    scope.cancel();
  }
}

/**
 * The final window, on a frozen source: the stream applied to a fence set now (every transaction
 * committed before it), then every key changed since the checkpoint compared on both sides.
 * Returns why it is red, or undefined.
 */
export async function capturedFinalWindow(s: MigrationState): Promise<string | undefined> {
  const c = cap(s);
  for (;;) {
    const r = await applyRound(s);
    if (r.reached) break;
  }
  if (!c.checkpoint) return 'no green checkpoint to compare the final window against';
  const w = await summarised(`compare every key changed since the checkpoint ${c.checkpoint}`).compareWindow({
    migration: s.name,
    spec: s.spec,
    since: c.checkpoint,
  });
  s.capture.windowCompared(w.reduce((a, x) => a + x.keys, 0));
  const red = windowDifferences(w);
  return red && `the final window differs: ${red}`;
}

/** The tables whose window differs, in a sentence (undefined: none); either direction's final window. */
export function windowDifferences(w: WindowTable[]): string | undefined {
  const red = w.filter((x) => x.differing > 0 || x.source.rows !== x.target.rows || x.source.checksum !== x.target.checksum);
  return red.length ? red.map((x) => `${x.differing} of ${x.keys} changed key(s) in ${x.table}, e.g. (${x.sample[0]?.join(', ')})`).join('; ') : undefined;
}

/**
 * After a green window, on the frozen source: what the stream could not have told. A relation
 * rewritten or truncated since the checkpoint makes the window red (a new checkpoint proves it);
 * writes that neither the rows written since the checkpoint nor the write counters account for
 * make the final check measure every range again (capture/tripwire.ts).
 * Returns why it is red, or whether every range must be measured. (Patched with the baseline.)
 */
export async function capturedTripwire(s: MigrationState): Promise<{ red?: string; sweep: boolean }> {
  const c = cap(s);
  if (!patched('capture-tripwire')) return { sweep: false };
  const measure = 'every range measured again on the frozen source, and copied again where it changed';
  if (!c.baseline) {
    s.capture.judged(`no write counters from the checkpoint: ${measure}`);
    return { sweep: true };
  }
  const t = await summarised('account for every write on the source since the checkpoint').captureTripwire({
    migration: s.name,
    spec: s.spec,
    baseline: c.baseline,
  });
  if (t.rewritten.length)
    return {
      red: `rewritten or truncated on the source since the checkpoint (TRUNCATE, VACUUM FULL, CLUSTER, a type change): ${t.rewritten.join(', ')}; a new checkpoint compares every range again`,
      sweep: false,
    };
  s.capture.judged(t.accounted ? t.detail : `${t.detail}: ${measure}`);
  return { sweep: !t.accounted };
}

/** Ends change capture: drops the slot and publication the migration created (once). `last`: on the way out of a failure. */
export async function endCapture(s: MigrationState, o: { last?: boolean } = {}): Promise<void> {
  const c = s.live?.capture;
  if (!c || c.dropped) return;
  const a = o.last ? lastTries : summarised('drop the replication slot and publication');
  await a.dropCapture({ migration: s.name, spec: s.spec });
  s.capture.slotDropped();
}

/** A sentence on what the slot holds back, for a migration that waits for a person. */
export async function slotNote(s: MigrationState): Promise<string> {
  if (!s.live?.capture || s.live.capture.dropped) return '';
  const st = await acts.slotState({ spec: s.spec });
  if (!st.exists) return '';
  const mb = (Number(st.retainedBytes) / (1024 * 1024)).toFixed(1);
  return `; replication slot ${st.slot} retains ${mb} MB of WAL on the source while this waits (backfill abort drops it)`;
}

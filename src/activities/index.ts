// The activities the worker registers. Every one is idempotent (a retry after a crash, or a second
// run of the same input, leaves the databases as one run would) and heartbeats while it runs.
import { compareTotals as totals, startReverse as reverseStart } from '../reverse/steps';
import { checkpointBack as checkpointAtBack } from '../reverse/checkpoint';
import { planMigration as plan } from '../plan/plan';
import { copyRange as copy, verifyRange as verify, type RangeInput } from '../range/copy';
import { sessionCaps, timingSessionWaits } from '../db/sessions';
import { locateRange as locate, recheckRange as recheck } from '../range/locate';
import { reconcileTable as reconcile, reconcileTables as reconcileMany } from '../gate/reconcile';
import { buildReport as report } from '../report/build';
import {
  advanceSequences as sequences,
  runSwitch as sw,
  switchRecorded as recorded,
  appendAudit,
  runAction as action,
  awaitWriters as writers,
  changedSince as since,
  type AuditEntry,
} from '../gate/cutover';
import { applyDelta as delta, captureWatermark as watermark } from '../catchup/delta';
import { sweepOutside, sweepTable as sweep, type SweepInput } from '../catchup/sweep';
import {
  applyCapture as apply,
  awaitEpoch as epochReady,
  compareWindow as window,
  dropCapture as drop,
  holdSnapshot as hold,
  slotState as slot,
  stopStream as stop,
} from '../capture/steps';
import { alive, WORKER_ID } from './heartbeat';
import { restoreConstraints as restore } from '../schema/constraints';
import { checkSchema as drift } from '../schema/drift';
import { captureBaseline as baseline, captureTripwire as tripwire } from '../capture/tripwire';
import type { MigrationSpec } from '../spec/schema';
import type { RangeResult } from '../domain/range-lifecycle';

export const planMigration = alive(plan);
/**
 * Each range's result names the worker that ran it (the workflow shares ranges by it: domain/sharing.ts)
 * and, where our sessions are capped (db/sessions.ts), the caps and how long its sessions waited.
 */
const named =
  (fn: (input: RangeInput) => Promise<RangeResult>) =>
  async (input: RangeInput): Promise<RangeResult> => {
    const { out, waitedMs } = await timingSessionWaits(() => fn(input));
    const caps = sessionCaps([input.spec.source, input.spec.target, input.spec.control]);
    return { ...out, worker: WORKER_ID, ...(Object.keys(caps).length ? { sessions: { caps, waitedMs } } : {}) };
  };
export const copyRange = alive(named(copy));
export const verifyRange = alive(named(verify));
export const locateRange = alive(locate);
export const recheckRange = alive(recheck);
export const reconcileTable = alive(reconcile);
export const reconcileTables = alive(reconcileMany);
export const compareTotals = alive(totals);
export const checkpointBack = alive(checkpointAtBack);
export const buildReport = alive(report);
export const advanceSequences = alive(sequences);
export const runSwitch = alive(sw);
export const switchRecorded = alive(recorded);
export const captureWatermark = alive(watermark);
export const applyDelta = alive(delta);
export const sweepTable = alive(sweep);
/** Change capture: the rows outside the planned ranges, copied at the epoch's snapshot. */
export const copyOutside = alive((input: SweepInput) => sweepOutside(input, true));
export const holdSnapshot = alive(hold);
export const awaitEpoch = alive(epochReady);
export const applyCapture = alive(apply);
export const compareWindow = alive(window);
export const slotState = alive(slot);
export const dropCapture = alive(drop);
export const stopStream = alive(stop);
/** The way back (`cutover.reverse`): its publication and slot on the target, before the switch. */
export const startReverse = alive(reverseStart);
export const runAction = alive(action);
export const awaitWriters = alive(writers);
export const changedSince = alive(since);
export const restoreConstraints = alive(restore);
export const checkSchema = alive(drift);
export const captureBaseline = alive(baseline);
export const captureTripwire = alive(tripwire);
export const recordAudit = alive(async (input: { spec: MigrationSpec; entry: AuditEntry }): Promise<void> => {
  await appendAudit(input.spec, input.entry);
});

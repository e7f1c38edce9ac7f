// What a failed migration undoes on its way out, best effort (the failure is what counts), saying
// what it could not: the foreign keys set aside, the replication slot and publication on the source,
// the way back's on the target, and a source left frozen by a failure before the switch ran.
import { log, patched } from '@temporalio/workflow';
import { lastTries } from './activities';
import type { MigrationState } from './state';
import { rootCause } from './errors';
import { hasConstraints } from '../report/evidence.workflow';
import { endCapture } from '../capture/epochs.workflow';
import { dropReverseLast } from '../reverse/stream.workflow';

/** Undoes what a failed migration leaves; returns what could not be undone, in sentences (empty: all of it). */
export async function undoOnFailure(s: MigrationState | undefined, why: string): Promise<string[]> {
  const left: string[] = [];
  const undone = (what: string) => (c: unknown) => {
    left.push(`${what}: ${rootCause(c).message}`);
  };
  if (!s) return left;
  if (hasConstraints(s))
    await lastTries.restoreConstraints({ spec: s.spec, migration: s.name }).catch(undone('the foreign keys set aside could not be restored'));
  if (s.live?.capture) await endCapture(s, { last: true }).catch(undone('the replication slot and publication could not be dropped'));
  if (s.live?.reverse) await dropReverseLast(s).catch(undone("the way back's replication slot and publication on the target could not be dropped"));
  // (Patched: migrations started before this left the source frozen.)
  if (s.gate.frozen && patched('unfreeze-on-failure')) await unfreezeUnlessSwitched(s, why, left);
  if (left.length) log.warn('a failed migration could not undo everything', { migration: s.name, left: left.join('; ') });
  return left;
}

/**
 * The source was frozen for the switch and the migration failed: it takes writes again, unless the
 * switch ran (its record says so, when runSwitch was asked to switch and failed after all). What
 * could not be done is said.
 */
async function unfreezeUnlessSwitched(s: MigrationState, why: string, left: string[]): Promise<void> {
  if (s.gate.switching) {
    const ran = await lastTries.switchRecorded({ migration: s.name, execution: s.execution, spec: s.spec }).catch((e: unknown) => rootCause(e));
    if (ran instanceof Error) {
      left.push(`the source stays frozen: whether cutover.switch ran could not be read (${ran.message}); see backfill.switches`);
      return;
    }
    if (ran) {
      s.gate.handedOver();
      left.push(`cutover.switch ran at ${ran.at}: authority is on the target, and the source stays frozen`);
      return;
    }
  }
  const unfreeze = s.spec.cutover.unfreeze;
  if (!unfreeze) {
    left.push('the source stays frozen: cutover.freeze ran and the spec has no cutover.unfreeze');
    return;
  }
  try {
    await lastTries.runAction({ migration: s.name, execution: s.execution, spec: s.spec, action: 'unfreeze', reason: `the migration failed: ${why}` });
    s.gate.unfroze();
  } catch (e) {
    left.push(`the source stays frozen: cutover.unfreeze failed (${rootCause(e).message})`);
  }
}

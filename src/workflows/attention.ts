// Stopping and waiting for a person: an abort ends the migration once nothing is in flight;
// needs_attention waits for a rerun or an abort, it does not die.
import { condition } from '@temporalio/workflow';
import type { MigrationResult } from './messages';
import type { MigrationState } from './state';
import { audit } from './audit';
import { hasConstraints, restoreAndValidate } from '../report/evidence.workflow';
import { endCapture, slotNote } from '../capture/epochs.workflow';
import { dropReverseLast } from '../reverse/stream.workflow';

/** The migration's end when an abort was asked for, else undefined. */
export async function stopIfAborted(s: MigrationState): Promise<MigrationResult | undefined> {
  const { control } = s;
  if (control.aborted === undefined) return undefined;
  await condition(() => s.ranges.inFlight() === 0);
  // No constraint is left dropped: re-created (validated where the rows allow; the report says which).
  if (hasConstraints(s)) await restoreAndValidate(s);
  // Nor a replication slot holding WAL on the source, nor the way back's on the target.
  await endCapture(s);
  await dropReverseLast(s);
  s.setPhase('aborted', control.aborted);
  await audit(s, 'abort', undefined, s.evidence.digest, { reason: control.aborted });
  return { migration: s.name, phase: 'aborted', verdict: 'red', reason: control.aborted };
}

/** Waits in needs_attention for a rerun (undefined: go on) or an abort (the migration's end). */
export async function needsAttention(s: MigrationState, why: string): Promise<MigrationResult | undefined> {
  // A slot keeps WAL on the source while a person looks: say how much, in the one detail shown.
  const held = await slotNote(s);
  s.setPhase('needs_attention', `${why}${held}`);
  await condition(() => s.ranges.rerunQueue.length > 0 || s.control.aborted !== undefined);
  return stopIfAborted(s);
}

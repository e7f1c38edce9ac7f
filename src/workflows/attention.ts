// Stopping and waiting for a person: an abort ends the migration once nothing is in flight;
// needs_attention waits for a rerun or an abort, it does not die.
import { condition } from '@temporalio/workflow';
import type { MigrationResult } from './messages';
import type { MigrationState } from './state';
import { audit } from './audit';
import { hasConstraints, restoreConstraints } from '../report/evidence.workflow';
import { dropCapture, slotNote } from '../capture/epochs.workflow';

/** The migration's end when an abort was asked for, else undefined. */
export async function stopIfAborted(s: MigrationState): Promise<MigrationResult | undefined> {
  if (s.aborted === undefined) return undefined;
  await condition(() => s.inFlight() === 0);
  // No constraint is left dropped: re-created (validated where the rows allow; the report says which).
  if (hasConstraints(s)) await restoreConstraints(s);
  // Nor a replication slot holding WAL on the source.
  await dropCapture(s);
  s.setPhase('aborted', s.aborted);
  await audit(s, 'abort', undefined, s.digest, { reason: s.aborted });
  return { migration: s.name, phase: 'aborted', verdict: 'red', reason: s.aborted };
}

/** Waits in needs_attention for a rerun (undefined: go on) or an abort (the migration's end). */
export async function needsAttention(s: MigrationState, why: string): Promise<MigrationResult | undefined> {
  // A slot keeps WAL on the source while a person looks: say how much, in the one detail shown.
  const held = await slotNote(s);
  s.setPhase('needs_attention', `${why}${held}`);
  await condition(() => s.rerunQueue.length > 0 || s.aborted !== undefined);
  return stopIfAborted(s);
}

// Switching authority: sequences advanced past the copied keys, then the switch action, exactly
// once (its record commits with it).
import type { Approval } from '../domain/report';
import { summarised } from '../workflows/activities';
import type { MigrationResult } from '../workflows/messages';
import type { MigrationState } from '../workflows/state';
import { endCapture } from '../capture/epochs.workflow';
import { followBack, openReverse, switchedWithReverse } from '../reverse/stream.workflow';

export async function switchAuthority(s: MigrationState, approved: Approval): Promise<MigrationResult> {
  s.setPhase('switching');
  await summarised('advance the target sequences past the copied keys').advanceSequences({ spec: s.spec });
  // The way back's slot exists before the switch hands the writes to the target: none is missed.
  await openReverse(s, approved.digest);
  s.gate.switchAsked();
  const sw = await summarised(`switch authority (digest ${approved.digest}, approved by ${approved.approver})`).runSwitch({
    migration: s.name,
    execution: s.execution,
    spec: s.spec,
    digest: approved.digest,
    approver: approved.approver,
  });
  s.evidence.switched(sw.switchedAt);
  s.gate.handedOver();
  // The target is the source of truth now: the slot and publication go.
  await endCapture(s);
  if (s.spec.cutover.reverse) {
    switchedWithReverse(s, { switchedAt: sw.switchedAt, digest: approved.digest, approver: approved.approver });
    return followBack(s);
  }
  s.setPhase('completed');
  return {
    migration: s.name,
    phase: 'completed',
    verdict: 'green',
    digest: approved.digest,
    switchedAt: sw.switchedAt,
    ...(s.gate.finalWindow ? { finalWindow: s.gate.finalWindow } : {}),
  };
}

// The gate: the evidence is green and its digest presented; a person approves exactly that digest
// (or `cutover.approval: auto` does). Catch-up goes on while the gate waits; a window that does not
// verify turns it red and the migration goes back to catching up, for a new digest.
import { allHandlersFinished, condition, continueAsNew, upsertSearchAttributes } from '@temporalio/workflow';
import { catchUpOf, durationMs } from '../spec/schema';
import type { Approval } from '../domain/report';
import type { MigrationResult } from '../workflows/messages';
import { ATTENTION, attentionKey } from '../workflows/search-attributes';
import type { MigrationState } from '../workflows/state';
import type { MigrationWorkflow, Stage } from '../workflows/types';
import { audit, voidApproval } from '../workflows/audit';
import { refreshReport } from '../report/evidence.workflow';
import { deltaRound } from '../catchup/rounds.workflow';
import { needsAttention, stopIfAborted } from '../workflows/attention';
import { gatePauseMs, streamWhileWaiting } from '../capture/epochs.workflow';

export type GateOutcome = { approved: Approval } | { to: Stage } | { end: MigrationResult };

export async function gate(s: MigrationState): Promise<GateOutcome> {
  const { spec } = s;
  // A run continued from the gate presents the same evidence again (the ledger did not change).
  if (!s.evidence.report) await refreshReport(s, { evidenceMark: s.live?.evidenceMark ?? null });
  s.gate.presented();
  if (spec.cutover.approval === 'auto') {
    const approved = { approver: 'auto', digest: s.evidence.report!.digest, approvedAt: new Date().toISOString() };
    s.gate.approve(approved);
    return { approved };
  }
  s.setPhase('awaiting_approval', `approve digest ${s.evidence.digest} to switch`);
  const c = catchUpOf(spec);
  const enteredAt = Date.now();
  const overdueAt = spec.cutover.approvalTimeout ? enteredAt + durationMs(spec.cutover.approvalTimeout) : undefined;
  let red = false;
  for (;;) {
    const decided = () => s.decided();
    // Change capture streams on while the gate waits, with a short pause between calls.
    const waits = [
      s.catchup.hasDelta() ? durationMs(c.interval) : s.live?.capture ? gatePauseMs() : undefined,
      overdueAt && !s.gate.attention ? Math.max(1, overdueAt - Date.now()) : undefined,
    ].filter((w): w is number => w !== undefined);
    if (waits.length === 0) await condition(decided);
    else if (await condition(decided, Math.min(...waits))) break;
    if (decided()) break;
    if (overdueAt !== undefined && !s.gate.attention && Date.now() >= overdueAt) {
      // Waiting too long is worth a look; it never approves anything by itself.
      s.gate.attend(ATTENTION.approvalOverdue);
      s.describe(`approve digest ${s.evidence.digest} to switch; waiting for approval for longer than ${spec.cutover.approvalTimeout}`);
      upsertSearchAttributes([{ key: attentionKey, value: ATTENTION.approvalOverdue }]);
      s.showDetails();
    }
    if (s.catchup.hasDelta() && !decided()) {
      // Catch-up goes on while the gate waits; a window that does not verify turns it red.
      if (!(await deltaRound(s))) {
        red = true;
        break;
      }
    }
    if (s.live?.capture && !decided()) await streamWhileWaiting(s, decided);
    if (s.historyFull() && !decided()) {
      await condition(allHandlersFinished);
      await continueAsNew<MigrationWorkflow>(spec, s.carry());
    }
  }
  if (s.gate.attention) {
    s.gate.attended();
    upsertSearchAttributes([{ key: attentionKey, value: null }]);
    s.showDetails();
  }
  const stop = await stopIfAborted(s);
  if (stop) return { end: stop };
  if (red) {
    if (s.gate.approval) await voidApproval(s, 'a catch-up window did not verify while the gate waited');
    return { to: 'catchup' };
  }
  const r = s.gate.rejection;
  if (r) {
    await audit(s, 'reject', r.approver, s.evidence.digest, { reason: r.reason });
    const end = await needsAttention(s, `rejected by ${r.approver}: ${r.reason}`);
    if (end) return { end };
  }
  if (!s.gate.approval) return { to: 'backfill' };
  return { approved: s.gate.approval };
}

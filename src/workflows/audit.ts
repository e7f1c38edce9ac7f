// The append-only audit in the ledger: approvals, rejections, voided approvals, aborts.
import type { MigrationState } from './state';
import { acts } from './activities';

export function audit(s: MigrationState, action: string, actor?: string, digest?: string, detail?: unknown): Promise<void> {
  return acts.recordAudit({ spec: s.spec, entry: { migration: s.name, execution: s.execution, action, actor, digest, detail } });
}

/** The approval no longer holds (the evidence it approved turned red); a new one is needed. */
export async function voidApproval(s: MigrationState, why: string): Promise<void> {
  const a = s.approval;
  s.approval = undefined;
  await audit(s, 'approval-void', a?.approver, a?.digest, { reason: why });
}

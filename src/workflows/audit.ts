// The append-only audit in the ledger: approvals, rejections, voided approvals, aborts.
import type { MigrationState } from './state';
import { acts } from './activities';
import { auditNote } from '../domain/report';

export async function audit(s: MigrationState, action: string, actor?: string, digest?: string, detail?: unknown): Promise<void> {
  await acts.recordAudit({ spec: s.spec, entry: { migration: s.name, execution: s.execution, action, actor, digest, detail } });
  // The report shows it at once (an abort after the last report was built, an approval): no command.
  const note = auditNote(detail as Parameters<typeof auditNote>[0]);
  s.audited({ at: new Date().toISOString(), action, ...(actor ? { actor } : {}), ...(digest ? { digest } : {}), ...(note ? { note } : {}) });
}

/** The approval no longer holds (the evidence it approved turned red); a new one is needed. */
export async function voidApproval(s: MigrationState, why: string): Promise<void> {
  const a = s.gate.voidApproval();
  await audit(s, 'approval-void', a?.approver, a?.digest, { reason: why });
}

// The migration's messages, wired to its state: queries read it, signals set it, updates change it
// after a validator has had its say. Validators are synchronous and pure (an async validator's
// rejection is ignored); a refused approval or rejection is recorded by the worker's audit sink,
// since a validator cannot run an activity.
import { log, proxySinks, setHandler } from '@temporalio/workflow';
import { controlAlias } from '../spec/schema';
import {
  abortSignal,
  approveCutoverUpdate,
  auditRecordedSignal,
  pauseSignal,
  progressQuery,
  rejectCutoverUpdate,
  reportQuery,
  rerunUpdate,
  finishUpdate,
  switchBackUpdate,
  resumeSignal,
  setConcurrencySignal,
  type AuditSinks,
} from './messages';
import type { Phase } from '../domain/phases';
import type { MigrationState } from './state';
import { failure } from '../domain/failures';

const { audit: auditSink } = proxySinks<AuditSinks>();

/** What an approval is judged against. */
export interface GateView {
  phase: Phase;
  /** the digest of the evidence presented now */
  digest?: string;
  /** cutover.approvers, when given */
  approvers?: string[];
  /** this evidence has an approval already */
  approved: boolean;
  /** a rejection of this evidence is being recorded */
  rejected?: boolean;
}

/** Why an approval is refused, or undefined when it is taken. Pure. */
function approvalRefusal(g: GateView, a: { approver?: unknown; digest?: unknown } | undefined): string | undefined {
  if (!a || typeof a.approver !== 'string' || !a.approver.trim()) return 'approveCutover needs { approver, digest }';
  if (g.phase !== 'awaiting_approval') return `cannot approve: the migration is in phase ${g.phase}, not awaiting_approval`;
  // Never the digest presented now: an approval is of evidence read, not of a string copied from here.
  if (a.digest !== g.digest) return `digest ${String(a.digest)} is not the evidence presented now; read the report again and approve the digest it shows`;
  if (g.approvers && !g.approvers.includes(a.approver.trim()))
    return `"${a.approver}" is not an allowed approver (cutover.approvers: ${g.approvers.join(', ')})`;
  if (g.approved) return 'this evidence is already approved';
  // One decision per presentation of the evidence: a rejection stands until the evidence is presented again.
  if (g.rejected) return 'this evidence has just been rejected; approve it when it is presented again';
  return undefined;
}

/** Why a rejection is refused, or undefined. Pure. */
function rejectionRefusal(g: Pick<GateView, 'phase' | 'approved' | 'rejected'>, r: { approver?: unknown; reason?: unknown } | undefined): string | undefined {
  if (!r || typeof r.approver !== 'string' || !r.approver.trim() || typeof r.reason !== 'string' || !r.reason.trim())
    return 'rejectCutover needs { approver, reason }';
  if (g.phase !== 'awaiting_approval') return `cannot reject: the migration is in phase ${g.phase}, not awaiting_approval`;
  if (g.approved) return 'this evidence is approved and the migration is going on to the switch; abort to stop it';
  if (g.rejected) return 'this evidence is already rejected';
  return undefined;
}

/** Why a rerun is refused, or undefined. Pure over the table names and range counts given. */
function rerunRefusal(
  g: Pick<GateView, 'phase' | 'approved'>,
  tables: readonly { rangeCount: number }[],
  tableIndexOf: (name: string) => number,
  r: { table?: unknown; ranges?: unknown } | undefined,
): string | undefined {
  if (!r || !Array.isArray(r.ranges) || r.ranges.length === 0 || !r.ranges.every((i: unknown) => Number.isInteger(i) && (i as number) >= 0))
    return 'rerun needs { ranges: [non-negative integers], table? }';
  const phase = g.phase;
  if (!['needs_attention', 'awaiting_approval'].includes(phase))
    return `cannot rerun in phase ${phase}: reruns are taken when the migration needs attention or awaits approval`;
  if (phase === 'awaiting_approval' && g.approved) return 'the evidence is approved and the migration is going on to the switch; abort to stop it';
  const table = typeof r.table === 'string' ? r.table : undefined;
  if (table !== undefined && tableIndexOf(table) < 0) return `no table "${table}" in this migration`;
  const ts = table === undefined ? tables : [tables[tableIndexOf(table)]];
  const bad = (r.ranges as number[]).filter((i) => !ts.some((t) => i < t.rangeCount));
  if (bad.length) return `no range ${bad.join(', ')} in ${table ?? 'any table'}`;
  return undefined;
}

/** Why a switch back is refused, or undefined when it is taken: as an approval, of the way back's evidence. Pure. */
function switchBackRefusal(
  g: { phase: Phase; digest?: string; approvers?: string[]; approved: boolean; finishing: boolean },
  a: { approver?: unknown; digest?: unknown } | undefined,
): string | undefined {
  if (!a || typeof a.approver !== 'string' || !a.approver.trim()) return 'switchBack needs { approver, digest }';
  if (g.phase !== 'switched')
    return `cannot switch back: the migration is in phase ${g.phase}; a switch back is taken while it is switched with the way back open (cutover.reverse)`;
  if (g.finishing) return 'the way back is finishing: there is nothing to switch back through';
  if (a.digest !== g.digest)
    return `digest ${String(a.digest)} is not the way back's evidence; read it again (progress.reverse.digest) and approve the digest shown`;
  if (g.approvers && !g.approvers.includes(a.approver.trim()))
    return `"${a.approver}" is not an allowed approver (cutover.approvers: ${g.approvers.join(', ')})`;
  if (g.approved) return 'the switch back is already approved';
  return undefined;
}

/** Why a finish of the way back is refused, or undefined. Pure. */
function finishRefusal(
  g: { phase: Phase; finishing: boolean; switchingBack: boolean },
  f: { actor?: unknown; reason?: unknown } | undefined,
): string | undefined {
  if (!f || typeof f.actor !== 'string' || !f.actor.trim()) return 'finish needs { actor, reason? }';
  if (f.reason !== undefined && typeof f.reason !== 'string') return 'finish: reason must be text';
  if (g.phase !== 'switched') return `cannot finish: the migration is in phase ${g.phase}; finish ends the way back of a switched migration (cutover.reverse)`;
  if (g.finishing) return 'the way back is finishing already';
  if (g.switchingBack) return 'a switch back is approved and under way';
  return undefined;
}

/** A validator's refusal: its reason alone, no stack trace (the caller reads it in the UI or a CLI). */
const refusal = (why: string) => failure('Refused', why);

/** What the gate has decided so far for the evidence presented now. */
const decisions = (s: MigrationState) => ({ approved: s.gate.approval !== undefined, rejected: s.gate.rejection !== undefined });

/** The queries: safe from the first moment (before the spec is known to be valid). */
export function setQueryHandlers(s: MigrationState): void {
  setHandler(progressQuery, () => s.progress(), {
    description:
      'Where the migration stands: phase, per-table ranges (total, pending, in flight, verified, failed), rows copied, catch-up, the digest awaiting approval.',
  });
  setHandler(reportQuery, () => s.reportView(), {
    description: 'The evidence: verdict, digest, per-table totals and checks, every failed range with its keys and rerun command, approvals.',
  });
}

/** Signals and updates: once the spec is valid. */
export function setControlHandlers(s: MigrationState): void {
  const refused = (action: string, a: { approver?: unknown; digest?: unknown } | undefined, reason: string) =>
    auditSink.refused({
      control: controlAlias(s.spec),
      migration: s.name,
      execution: s.execution,
      action,
      actor: typeof a?.approver === 'string' ? a.approver : undefined,
      digest: typeof a?.digest === 'string' ? a.digest : undefined,
      reason,
    });

  setHandler(
    pauseSignal,
    () => {
      s.control.pause();
      s.touch();
    },
    { description: 'Start no new range until resume (ranges in flight finish).' },
  );
  setHandler(
    resumeSignal,
    () => {
      s.control.unpause();
      s.waits.resumeSignalled();
      s.touch();
    },
    { description: 'Start ranges again after pause; after waiting too long for a database (needs_attention), try again.' },
  );
  setHandler(
    abortSignal,
    (a) => {
      s.control.abort((a && typeof a.reason === 'string' && a.reason) || 'aborted by an operator');
      s.touch();
    },
    { description: 'Stop the migration: { reason }. Ranges in flight land, nothing is switched; it ends as Failed (Aborted). Same as cancelling.' },
  );
  setHandler(
    setConcurrencySignal,
    (c) => {
      const v = Number(c?.value);
      // A signal cannot be refused: a value out of range is ignored, and the worker's log says so.
      if (Number.isInteger(v) && v >= 1 && v <= 64) s.control.setConcurrency(v);
      else log.warn('setConcurrency ignored: the value must be an integer from 1 to 64', { migration: s.name, value: String(c?.value) });
      s.touch();
    },
    { description: 'Ranges in flight at once: { value } from 1 to 64.' },
  );

  setHandler(
    auditRecordedSignal,
    (e) => {
      // From the worker: an entry it wrote to the ledger's audit (a refused approval or rejection).
      if (!e || typeof e.at !== 'string' || typeof e.action !== 'string') return;
      const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
      const [actor, digest, note] = [str(e.actor), str(e.digest), str(e.note)];
      s.audited({ at: e.at, action: e.action, ...(actor ? { actor } : {}), ...(digest ? { digest } : {}), ...(note ? { note } : {}) });
      s.touch();
    },
    {
      description:
        'The worker recorded an audit entry for this migration (a refused approval or rejection): { at, action, actor?, digest?, note? }. The report shows it.',
    },
  );

  // The approval is an Update so that it can be refused.
  setHandler(
    approveCutoverUpdate,
    (a) => {
      const approval = { approver: a.approver.trim(), digest: a.digest, comment: a.comment, approvedAt: new Date().toISOString() };
      s.gate.approve(approval);
      s.touch();
      return { approvedAt: approval.approvedAt };
    },
    {
      description:
        'Approve the cutover: { approver, digest, comment? }, the digest of the report you read. Refused unless the migration awaits approval of exactly that evidence and you may approve.',
      validator: (a) => {
        const why = approvalRefusal({ phase: s.phase, digest: s.evidence.digest, approvers: s.spec.cutover.approvers, ...decisions(s) }, a);
        if (why) {
          refused('approve-refused', a, why);
          throw refusal(why);
        }
      },
    },
  );
  setHandler(
    rejectCutoverUpdate,
    (r) => {
      s.gate.reject({ approver: r.approver.trim(), reason: r.reason });
      s.touch();
      return { rejectedAt: new Date().toISOString() };
    },
    {
      description: 'Reject the evidence presented: { approver, reason }. The migration waits in needs_attention for a rerun or an abort.',
      validator: (r) => {
        const why = rejectionRefusal({ phase: s.phase, ...decisions(s) }, r);
        if (why) {
          refused('reject-refused', r, why);
          throw refusal(why);
        }
      },
    },
  );
  setHandler(
    switchBackUpdate,
    (a) => {
      const approval = { approver: a.approver.trim(), digest: a.digest, comment: a.comment, approvedAt: new Date().toISOString() };
      s.reverse.approveBack(approval);
      s.touch();
      return { approvedAt: approval.approvedAt };
    },
    {
      description:
        "Phase switched: switch authority back to the source, { approver, digest, comment? }, the digest of the way back's evidence (progress.reverse.digest). The target is frozen, its last changes applied to the source and proven; red: unfrozen, the approval void.",
      validator: (a) => {
        const r = s.reverse.view;
        const why = switchBackRefusal(
          { phase: s.phase, digest: r?.evidence, approvers: s.spec.cutover.approvers, approved: r?.approval !== undefined, finishing: s.reverse.finishing },
          a,
        );
        if (why) {
          refused('switch-back-refused', a, why);
          throw refusal(why);
        }
      },
    },
  );
  setHandler(
    finishUpdate,
    (f) => {
      s.reverse.finishAsked(f.actor.trim(), (typeof f.reason === 'string' && f.reason.trim()) || 'finished by an operator');
      s.touch();
      return { finishedAt: new Date().toISOString() };
    },
    {
      description:
        'Phase switched: end the way back, { actor, reason? }. The stream from the target stops, its slot and publication on the target are dropped, and the migration completes with authority on the target.',
      validator: (f) => {
        const why = finishRefusal({ phase: s.phase, finishing: s.reverse.finishing, switchingBack: s.reverse.view?.approval !== undefined }, f);
        if (why) throw refusal(why);
      },
    },
  );
  setHandler(rerunUpdate, (r) => ({ ranges: s.queueRerun(r.table, r.ranges) }), {
    description: 'Copy and verify only these ranges again: { ranges: [n, ...], table? }. Taken when the migration needs attention or awaits approval.',
    validator: (r) => {
      const why = rerunRefusal({ phase: s.phase, ...decisions(s) }, s.ranges.plans, (n) => s.tableIndexOf(n), r);
      if (why) throw refusal(why);
    },
  });
}

// The Temporal surface of a migration: what the Temporal CLI and UI, and our own CLI, use to watch
// and steer it. Names here are the public contract (README, "Temporal surface").
import type { SessionUse } from '../domain/range-lifecycle';
import { defineQuery, defineSignal, defineUpdate, type Sinks } from '@temporalio/workflow';
import type { AuditRecord, Report } from '../domain/report';
import type { Waiting } from '../domain/waits';
import type { ResumeSummary } from '../domain/resume';
import type { Phase } from '../domain/phases';

export interface RangeCounts {
  total: number;
  pending: number;
  inFlight: number;
  verified: number;
  failed: number;
}

export interface DeltaProgress {
  /** the oldest watermark catch-up has reached (ISO text from the source's clock) */
  watermark: string | null;
  /** rows written or deleted by catch-up so far */
  rowsApplied: number;
  /** rows the last catch-up round had to apply: what remained behind the source */
  remaining: number;
}

/** Change capture (`capture: logical`): how far the stream has applied, and how far behind it is. */
export interface CaptureProgress {
  /** the end LSN of the last source transaction applied to the target */
  appliedLsn: string | null;
  /** the last green checkpoint's LSN: the evidence at the gate is the source as of it */
  checkpoint: string | null;
  lagSeconds: number;
  /** WAL between the source's position and what the target has applied, in bytes */
  lagBytes: string;
  transactions: number;
  rows: number;
  /** snapshot epochs opened (the copy's, and one per checkpoint) */
  epochs: number;
}

/** The way back (`cutover.reverse`), while the migration is switched: the stream from the target to the source. */
export interface ReverseProgress {
  /** when the switch ran: the source has followed the target since */
  since: string | null;
  /** the end LSN of the last target transaction applied to the source */
  appliedLsn: string | null;
  lagSeconds: number;
  /** WAL between the target's position and what the source has applied, in bytes */
  lagBytes: string;
  transactions: number;
  rows: number;
  /** `cutover.reverse.keep`: when it finishes by itself */
  keepUntil?: string;
  /** the digest of the way back's evidence: `switchBack` approves exactly it */
  digest?: string;
  /** why the last switch back turned red (its approval void) */
  red?: string;
}

export interface Progress {
  migration: string;
  phase: Phase;
  /** why the migration waits or stopped, in a sentence */
  detail?: string;
  /**
   * rowsCopied: rows written into the target by copies (every attempt, reruns, repairs, catch-up);
   * rowsRecopied: of those, the rows of ranges copied again (further attempts at a mismatched range,
   * reruns, a sweep's repairs); absent from a worker that predates it.
   */
  tables: { source: string; target: string; ranges: RangeCounts; rowsCopied: number; rowsRecopied?: number }[];
  delta?: DeltaProgress;
  capture?: CaptureProgress;
  /** phase switched: the way back */
  reverse?: ReverseProgress;
  digest?: string;
  /** while awaiting approval: who may approve (empty: anyone) */
  approvers?: string[];
  /** set while the gate has waited longer than cutover.approvalTimeout */
  attention?: string;
  /** the last final check: rows in its window, and how long it took from the freeze to the verdict */
  finalWindow?: { rows: number; ms: number; watermark: string | null; proof?: string };
  /** what the migration waits for now: a database that cannot be reached, an activity that keeps failing */
  waiting?: Waiting[];
  /**
   * started again after an abort or failure of an earlier run of this name: per table, the ranges its
   * ledger had verified (`reusable`), those verified again without a copy (`reused`), those that no
   * longer verified and were copied again (`differed`), and every range this run copied (`copied`)
   */
  resume?: ResumeSummary;
  paused: boolean;
  concurrency: number;
  /** the workers that ran the latest ranges (they share the ranges); absent before a range has run */
  workers?: number;
  /** where workers cap our sessions per database (BACKFILL_SESSIONS): the caps by alias, and how long ranges waited for a session in all */
  sessions?: SessionUse;
  startedAt: string;
  updatedAt: string;
}

export interface ApproveInput {
  approver: string;
  digest: string;
  comment?: string;
}
export interface RejectInput {
  approver: string;
  reason: string;
}
export interface RerunInput {
  table?: string;
  ranges: number[];
}

export interface MigrationResult {
  migration: string;
  phase: Phase;
  verdict: 'green' | 'red';
  digest?: string;
  switchedAt?: string;
  reason?: string;
  finalWindow?: { rows: number; ms: number; watermark: string | null; proof?: string };
  /** the way back, once ended: what went back from the target to the source, and who finished it (or switched back) */
  reverse?: { transactions: number; rows: number; finishedBy: string; reason: string; switchedBackAt?: string };
}

export interface FinishInput {
  /** who finishes the way back (the audit names them) */
  actor: string;
  reason?: string;
}

export const progressQuery = defineQuery<Progress>('progress');
export const reportQuery = defineQuery<Report>('report');

export const approveCutoverUpdate = defineUpdate<{ approvedAt: string }, [ApproveInput]>('approveCutover');
export const rejectCutoverUpdate = defineUpdate<{ rejectedAt: string }, [RejectInput]>('rejectCutover');
export const rerunUpdate = defineUpdate<{ ranges: number }, [RerunInput]>('rerun');
/** Phase switched: switch back to the source, approving the way back's evidence by its digest (gated as approveCutover). */
export const switchBackUpdate = defineUpdate<{ approvedAt: string }, [ApproveInput]>('switchBack');
/** Phase switched: end the way back (the stream from the target), authority stays on the target. */
export const finishUpdate = defineUpdate<{ finishedAt: string }, [FinishInput]>('finish');

export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
export const abortSignal = defineSignal<[{ reason?: string }]>('abort');
export const setConcurrencySignal = defineSignal<[{ value: number }]>('setConcurrency');
/**
 * The worker tells the migration of an audit entry it recorded itself (a refused approval or
 * rejection: a validator cannot run an activity), so that the report carries it at once.
 */
export const auditRecordedSignal = defineSignal<[AuditRecord]>('auditRecorded');

/** Worker-side sinks: run outside the workflow sandbox, never during replay. */
export interface AuditSinks extends Sinks {
  audit: {
    /** an approval or rejection refused by its validator (a validator cannot run an activity) */
    refused(entry: { control: string; migration: string; execution: string; action: string; actor?: string; digest?: string; reason: string }): void;
  };
}

// The Temporal surface of a migration (DESIGN.md section 2): what the Temporal CLI and UI, and our
// own CLI, use to watch and steer it. Names here are the public contract.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { Report } from '../report/model';

export const WORKFLOW_TYPE = 'backfillMigration';

export const PHASES = [
  'planning',
  'backfilling',
  'reconciling',
  'catching_up',
  'needs_attention',
  'awaiting_approval',
  'final_check',
  'switching',
  'completed',
  'aborted',
  'failed',
] as const;
export type Phase = (typeof PHASES)[number];
export const TERMINAL: readonly Phase[] = ['completed', 'aborted', 'failed'];

export interface RangeCounts {
  total: number;
  pending: number;
  inFlight: number;
  verified: number;
  failed: number;
}

export interface Progress {
  migration: string;
  phase: Phase;
  /** why the migration waits or stopped, in a sentence */
  detail?: string;
  tables: { source: string; target: string; ranges: RangeCounts; rowsCopied: number }[];
  delta?: { watermark: string | null; rowsApplied: number; remaining: number };
  digest?: string;
  paused: boolean;
  concurrency: number;
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
}

export const progressQuery = defineQuery<Progress>('progress');
export const reportQuery = defineQuery<Report>('report');

export const approveCutoverUpdate = defineUpdate<{ approvedAt: string }, [ApproveInput]>('approveCutover');
export const rejectCutoverUpdate = defineUpdate<{ rejectedAt: string }, [RejectInput]>('rejectCutover');
export const rerunUpdate = defineUpdate<{ ranges: number }, [RerunInput]>('rerun');

export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
export const abortSignal = defineSignal<[{ reason?: string }]>('abort');
export const setConcurrencySignal = defineSignal<[{ value: number }]>('setConcurrency');

export const SEARCH_ATTRIBUTES = { migration: 'BackfillMigration', phase: 'BackfillPhase' } as const;

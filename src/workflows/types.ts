// Shapes of the migration workflow's state: what a run keeps, and what it hands to the next run at
// continue-as-new (counters and cursors, never ranges: the ledger has those).
import type { CaptureBaseline } from '../capture/baseline';
import type { TablePlan } from '../domain/plan';
import type { FailedRange, SessionUse } from '../domain/range-lifecycle';
import type { Approval } from '../domain/report';
import type { ResumeState } from '../domain/resume';
import type { MigrationResult } from './messages';

/** Where the stage loop stands: copying and proving ranges, catching up, at the gate, or switched with the way back open. */
export type Stage = 'backfill' | 'catchup' | 'gate' | 'switched';

/** One range of one table: table index and range index. */
export interface RangeRef {
  t: number;
  i: number;
  /** the range was copied before (a rerun): what it copies now counts as re-copied */
  copiedBefore?: true;
}

export interface TableState {
  plan: TablePlan;
  /** the next range the window takes */
  next: number;
  verified: number;
  inFlight: Set<number>;
  /** ranges in flight that wait out verify.lagGrace: they hold no slot of the window */
  released: Set<number>;
  failed: Map<number, FailedRange>;
  /** rows written into the target by copies: first copies, re-copies and catch-up's writes */
  rowsCopied: number;
  /** of rowsCopied, the rows of ranges copied again: further attempts at a mismatched range, reruns, a sweep's repairs */
  rowsRecopied: number;
}

/** Catch-up state of a migration whose source keeps taking writes (compact: a few values per table). */
export interface LiveState {
  stage: Stage;
  /** per table: the watermark the next catch-up round reads from (null: the table has no delta) */
  marks: (string | null)[];
  rowsApplied: number;
  remaining: number;
  /** the watermark in the evidence presented at the gate (the digest covers it) */
  evidenceMark: string | null;
  finalChecks: number;
  /** change capture (`capture: logical`): the stream's state instead of watermarks */
  capture?: CaptureState;
  /** the way back (`cutover.reverse`): from the switch on, the stream from the target to the source */
  reverse?: ReverseState;
}

/** The way back's state: where its stream started on the target, how far it has applied to the source. */
export interface ReverseState {
  /** the LSN on the target where the slot of the way back starts */
  point: string;
  /** the switch it follows: when, the digest approved and by whom (set once the switch ran) */
  switchedAt?: string;
  digest?: string;
  approver?: string;
  /** `cutover.reverse.keep`: when the way back finishes by itself (ms, workflow time) */
  keepUntil?: number;
  /** the end LSN of the last target transaction applied to the source */
  applied: string | null;
  transactions: number;
  rows: number;
  lagBytes: string;
  lagSeconds: number;
  /** a finish asked for: by whom and why */
  finish?: { by: string; reason: string };
  /** the digest of the way back's evidence: a switch back approves exactly it */
  evidence?: string;
  /** before the slot, on both sides: the switch back's tripwire starts there */
  baseline?: CaptureBaseline;
  /** the switch back approved (void again when its final window is red) */
  approval?: Approval;
  /** the switch back froze the target (cutover.reverse.freeze) and has not unfrozen it */
  frozen?: boolean;
  /** the switch back's final window, green: keys compared, ms since the target's freeze, how the rest was proven */
  window?: { keys: number; ms: number; proof: string };
  /** the last checkpoint of the way back: the source proven equal to the target at `point` (a switch back compares what came after) */
  checkpoint?: { point: string; baseline: CaptureBaseline; at: string; rows: number };
  /** the last checkpoint that did not hold, and why (the next one is tried later) */
  checkpointRed?: string;
  /** when the last checkpoint was tried (ms, workflow time), and the rows applied then */
  checkpointTried?: { at: number; rows: number };
  /** runSwitch was asked to switch back: from here only its record says whether it ran */
  backAsked?: boolean;
  /** the switch back ran: authority is on the source again */
  switchedBackAt?: string;
  /** why the last switch back attempt turned red */
  red?: string;
  /** the slot and publication on the target were dropped */
  dropped: boolean;
}

/** Change capture's state: LSNs and counts only (names and snapshots stay in the ledger). */
export interface CaptureState {
  /** snapshot epochs opened so far (ranges, then every checkpoint, each open one) */
  epochs: number;
  /** the epoch the ranges read now, while its holder lives */
  epoch?: number;
  /** the LSN of that epoch's snapshot */
  point?: string;
  /** how far the target has applied the stream (end LSN of the last source transaction applied) */
  applied: string | null;
  transactions: number;
  rows: number;
  lagBytes: string;
  lagSeconds: number;
  /** the last green checkpoint: the evidence at the gate is the source as of this LSN */
  checkpoint: string | null;
  /** ranges to take again in a new epoch: their snapshot went away under them */
  again: RangeRef[];
  /** a range found its epoch's snapshot gone: take no more ranges in it */
  lost: boolean;
  /** the slot and the publication were dropped */
  dropped: boolean;
  /** keys compared by the last final window */
  windowKeys?: number;
  /** the transaction ids, the source's write counters and storage at the last green checkpoint (the final window's tripwire) */
  baseline?: CaptureBaseline;
  /** how the last final window's tripwire judged it */
  tripwire?: string;
}

/** The last final check: rows in its window, and how long it took from the freeze to the verdict. */
export interface FinalWindow {
  rows: number;
  ms: number;
  watermark: string | null;
  /** change capture: how the tripwire judged the window (the rows, the counters, or every range measured instead) */
  proof?: string;
}

/** What a run hands to the next one at continue-as-new: counters, not ranges. */
export interface Carried {
  plans: TablePlan[];
  /** rowsRecopied: absent from runs before it was counted (read as 0) */
  tables: { next: number; verified: number; rowsCopied: number; rowsRecopied?: number; failed: FailedRange[] }[];
  startedAt: string;
  approvals: Approval[];
  concurrency: number;
  paused: boolean;
  rerunQueue: RangeRef[];
  runs: number;
  /** a live source: where the migration stood and what catch-up has done */
  live?: LiveState;
  /** started again after an earlier run: the ranges reused and copied so far */
  resume?: ResumeState;
  /** where workers cap our sessions: the caps, and how long ranges waited for a session so far */
  sessions?: SessionUse;
}

/** The workflow's signature (`backfillMigration`), for continue-as-new from a stage. */
export type MigrationWorkflow = (input: unknown, carried?: Carried) => Promise<MigrationResult>;

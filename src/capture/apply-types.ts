// What the apply (apply.ts) is given and what it returns, and a source transaction as it is read
// from the stream before it is applied.
import type pg from 'pg';
import type { BeginMessage } from './pgoutput';
import type { BoundRelation, CaptureTable, Change } from './tables';

export interface ApplyOptions {
  migration: string;
  slot: string;
  publication: string;
  /** the source's connection string: the replication stream, and a normal session for the fence */
  source: string;
  /** a write pool on the target */
  target: pg.Pool;
  tables: CaptureTable[];
  /**
   * What is known, from the source's catalog when the call began, about relations the stream may
   * describe that are not `tables`. Nothing else is ignored: a change is never dropped silently.
   */
  relations: RelationScope;
  /** stop before the first transaction whose commit LSN (Begin's final LSN) is at or past this */
  untilLsn?: string;
  /** stop when this is spent (a transaction already begun is finished first) */
  maxMs: number;
  /**
   * go on past the fence, applying each transaction as it commits, until `maxMs` is spent or the
   * stop mark of this slot (emitStop) arrives after the fence (the gate's calls)
   */
  follow?: boolean;
  /** called about every second while working: the caller heartbeats */
  onProgress?: (p: ApplyProgress) => void;
  /** stop soon and cleanly: a target transaction in progress is rolled back */
  signal?: AbortSignal;
}

/** A relation by the name pgoutput gives it. */
export interface RelationName {
  schema: string;
  name: string;
}

export interface RelationScope {
  /** the publication's name, for sentences */
  publication: string;
  /**
   * the user manages the publication: it may publish tables outside the spec (`outside`); a relation
   * the call did not know of may be one added to it since, and the next call (a retry) looks again
   */
  managed: boolean;
  /** partitions (at any depth) of the spec's tables: changes sent under their own names */
  partitions: (RelationName & { table: number })[];
  /** published relations known to be outside the spec (neither a spec table nor a partition of one): ignored */
  outside: RelationName[];
}

export interface ApplyProgress {
  /** source transactions applied by this call so far */
  transactions: number;
  /** changes applied by this call so far */
  rows: number;
  /** transactions skipped as already applied */
  skipped: number;
  /** a target transaction is open */
  applying: boolean;
  /** the last applied transaction's commit and end LSNs */
  commitLsn: string;
  endLsn: string;
  /** how far the stream has sent */
  receivedLsn: string;
  ms: number;
}

export interface RowCounts {
  inserted: number;
  updated: number;
  deleted: number;
}

export interface ApplyResult {
  /** source transactions applied by this call */
  transactions: number;
  /** per table index: rows inserted, updated and deleted on the target */
  rows: Record<number, RowCounts>;
  /** transactions the slot sent again that the target already had */
  skippedTransactions: number;
  /** changes for relations in the publication known to be outside the spec (`relations.outside`) */
  skippedChanges: number;
  /** per table index: updates and deletes that found no target row */
  unmatched: Record<number, number>;
  /** the last applied transaction (this call's or an earlier one's); 0/0 when none */
  applied: { commitLsn: string; endLsn: string };
  /** the position last sent to the slot as confirmed (a stream that died may have lost it) */
  acknowledged: string;
  /** the fence or untilLsn was reached with nothing pending */
  reached: boolean;
  /** source WAL not yet covered: pg_current_wal_lsn() minus the position caught up to, in bytes */
  lagBytes: string;
  /** 0 when reached; else the age of the oldest transaction not applied (or of the last one seen) */
  lagSeconds: number;
  ms: number;
}

/** A source transaction read from the stream, its changes held until its Commit arrives. */
export interface PendingTransaction {
  begin: BeginMessage;
  changes: { relation: BoundRelation; change: Change }[];
  /** the target already has it */
  skip: boolean;
}

// The apply's reading of the stream: frames decoded into source transactions (Begin, changes,
// Commit), each handed whole to the target (apply-target.ts); the fence and untilLsn that end a
// call; and the acknowledgements that let the slot forget only what the target has committed.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { Relations } from './apply-relations';
import { FENCE_PREFIX, STOP_PREFIX, emitFence, lagBytes } from './apply-source';
import { TargetApplier } from './apply-target';
import type { ApplyOptions, ApplyResult, PendingTransaction, RowCounts } from './apply-types';
import { CaptureError } from './errors';
import { maxLsn, showLsn } from './lsn';
import { msFromPgTime, type CommitMessage, type PgOutputMessage } from './pgoutput';
import { openStream, type ReplicationStream } from './replication';

const PROGRESS_EVERY_MS = 1000;
/** Well inside wal_sender_timeout (60 s by default), also while a long target transaction runs. */
const STATUS_EVERY_MS = 10_000;
/** How long one wait for a frame lasts before the deadline and the signal are looked at again. */
const WAIT_SLICE_MS = 200;

export class ApplyRun {
  private readonly deadline: number;
  private readonly relations: Relations;
  private readonly target: TargetApplier;

  private appliedCommit = 0n;
  private appliedEnd = 0n;
  /** the position the slot may forget up to: everything before it is on the target or not ours */
  private acked = 0n;
  /** the last position actually written to a live stream */
  private sentAck = 0n;
  private received = 0n;
  private pending?: PendingTransaction;
  private fenceId = '';
  private fenceEnd = 0n;
  private fenceSeenInTransaction = false;
  private stopSeenInTransaction = false;
  private reached = false;
  private lastStatusAt = 0;
  private lastSeenCommitTime?: bigint;
  private unappliedCommitTime?: bigint;

  private transactions = 0;
  private rowsApplied = 0;
  private skippedTransactions = 0;
  private skippedChanges = 0;
  private readonly rows: Record<number, RowCounts> = {};
  private readonly unmatched: Record<number, number> = {};

  constructor(
    private readonly o: ApplyOptions,
    target: pg.PoolClient,
    private readonly until: bigint | undefined,
    private readonly started: number,
  ) {
    this.deadline = started + o.maxMs;
    this.relations = new Relations(o.tables, o.relations);
    this.target = new TargetApplier(target, o.migration, o.signal, o.target);
    for (const t of o.tables) {
      this.rows[t.index] = { inserted: 0, updated: 0, deleted: 0 };
      this.unmatched[t.index] = 0;
    }
  }

  /** A cancel sent to the target session has landed (before the connection is let go). */
  settled(): Promise<void> {
    return this.target.settled();
  }

  /** The target connection may be broken: it is not given back to the pool. */
  get targetBroken(): boolean {
    return this.target.broken;
  }

  async run(): Promise<ApplyResult> {
    const applied = await this.target.prepare();
    this.appliedCommit = applied.commit;
    this.appliedEnd = applied.end;
    const stream = await openStream(this.o.source, { slot: this.o.slot, publication: this.o.publication, startLsn: showLsn(this.appliedEnd) });
    // Never acknowledge below what the slot already has: that would move it backwards.
    this.acked = maxLsn(this.appliedEnd, stream.slotConfirmed);
    this.sentAck = stream.slotConfirmed;
    this.lastStatusAt = Date.now();
    const ticker = setInterval(() => this.tick(stream), PROGRESS_EVERY_MS);
    try {
      // Emitted after the stream is open; its arrival means the stream has caught up to this moment.
      this.fenceId = randomUUID();
      this.fenceEnd = await emitFence(this.o.source, this.fenceId);
      await this.consume(stream);
      this.sendStatus(stream);
    } finally {
      clearInterval(ticker);
      await stream.close();
    }
    const behind = await lagBytes(this.o.source, maxLsn(this.appliedEnd, this.acked));
    return {
      transactions: this.transactions,
      rows: this.rows,
      skippedTransactions: this.skippedTransactions,
      skippedChanges: this.skippedChanges,
      unmatched: this.unmatched,
      applied: { commitLsn: showLsn(this.appliedCommit), endLsn: showLsn(this.appliedEnd) },
      acknowledged: showLsn(this.sentAck),
      reached: this.reached,
      lagBytes: behind,
      lagSeconds: this.lagSeconds(),
      ms: Date.now() - this.started,
    };
  }

  private async consume(stream: ReplicationStream): Promise<void> {
    for (;;) {
      if (this.o.signal?.aborted) return this.stopWithPending();
      // A transaction already begun is finished before the time limit counts.
      if (!this.pending && Date.now() >= this.deadline) return;
      const frame = await stream.next(WAIT_SLICE_MS);
      if (!frame) continue;
      this.received = maxLsn(this.received, frame.walEnd);
      if (frame.tag === 'keepalive') {
        if (frame.replyRequested) this.sendStatus(stream);
        continue;
      }
      if (await this.handle(frame.message, stream)) return;
    }
  }

  private stopWithPending(): void {
    if (this.pending) this.unappliedCommitTime = this.pending.begin.commitTime;
    this.pending = undefined;
  }

  /** true: stop. */
  private async handle(m: PgOutputMessage, stream: ReplicationStream): Promise<boolean> {
    switch (m.tag) {
      case 'begin':
        if (this.pending) throw new CaptureError('the replication stream began a transaction inside another one', 'XX001');
        if (this.until !== undefined && m.finalLsn >= this.until) {
          this.reached = true;
          return true;
        }
        this.pending = { begin: m, changes: [], skip: m.finalLsn <= this.appliedCommit };
        return false;
      case 'relation':
        this.relations.describe(m);
        return false;
      case 'insert':
      case 'update':
      case 'delete': {
        const tx = this.inTransaction(m.tag);
        if (tx.skip) return false;
        const relation = this.relations.of(m.relid);
        if (relation) tx.changes.push({ relation, change: m });
        else this.skippedChanges++;
        return false;
      }
      case 'truncate': {
        const tx = this.inTransaction('truncate');
        if (tx.skip) return false;
        for (const relid of m.relids) {
          const relation = this.relations.of(relid);
          if (!relation) {
            this.skippedChanges++;
            continue;
          }
          throw new CaptureError(
            `a TRUNCATE of ${relation.source} on the source cannot be applied by change capture: start the migration of that table again (a new migration name)`,
            '0A000',
          );
        }
        return false;
      }
      case 'message':
        if (m.transactional) return false;
        // Following past the fence: this slot's stop mark ends the call (one from before the fence,
        // an earlier decision's, is not for this call).
        if (this.o.follow && this.reached && m.prefix === STOP_PREFIX && m.content.toString('utf8') === this.o.slot) {
          if (this.pending) {
            this.stopSeenInTransaction = true;
            return false;
          }
          this.acked = maxLsn(this.acked, this.appliedEnd, m.lsn);
          this.sendStatus(stream);
          return true;
        }
        if (m.prefix !== FENCE_PREFIX || m.content.toString('utf8') !== this.fenceId) return false;
        // In protocol 1 a non-transactional message never falls inside a transaction; if it ever
        // did, the transaction around it is finished first.
        if (this.pending) {
          this.fenceSeenInTransaction = true;
          return false;
        }
        this.reachFence(m.lsn, stream);
        return !this.o.follow;
      case 'commit':
        return this.commit(m, stream);
      default:
        return false;
    }
  }

  private inTransaction(what: string): PendingTransaction {
    if (!this.pending) throw new CaptureError(`the replication stream sent a ${what} outside a transaction`, 'XX001');
    return this.pending;
  }

  private reachFence(lsn: bigint, stream: ReplicationStream): void {
    this.reached = true;
    this.acked = maxLsn(this.acked, this.appliedEnd, lsn, this.fenceEnd);
    this.sendStatus(stream);
  }

  private async commit(m: CommitMessage, stream: ReplicationStream): Promise<boolean> {
    const tx = this.inTransaction('commit');
    this.lastSeenCommitTime = tx.begin.commitTime;
    if (tx.skip) {
      this.skippedTransactions++;
    } else if (tx.changes.length === 0) {
      // Nothing of ours in it: nothing to write, and nothing before it is pending.
      this.acked = maxLsn(this.acked, m.endLsn);
    } else {
      const done = await this.target.apply(tx, m);
      if (done.outcome === 'stopped') {
        this.unappliedCommitTime = tx.begin.commitTime;
        return true;
      }
      if (done.outcome === 'skipped') this.skippedTransactions++;
      else {
        this.count(tx, done.rows, done.unmatched);
        this.appliedCommit = m.commitLsn;
        this.appliedEnd = m.endLsn;
        this.acked = maxLsn(this.acked, m.endLsn);
        // Only now, after the target's COMMIT: the slot may forget this transaction.
        this.sendStatus(stream);
      }
    }
    this.pending = undefined;
    if (this.stopSeenInTransaction) {
      this.sendStatus(stream);
      return true;
    }
    if (this.fenceSeenInTransaction) {
      this.fenceSeenInTransaction = false;
      this.reachFence(0n, stream);
      return !this.o.follow;
    }
    return false;
  }

  /** An applied transaction's rows into the call's totals. */
  private count(tx: PendingTransaction, rows: Record<number, RowCounts>, unmatched: Record<number, number>): void {
    this.transactions++;
    this.rowsApplied += tx.changes.length;
    for (const [i, c] of Object.entries(rows)) {
      const total = this.rows[Number(i)];
      total.inserted += c.inserted;
      total.updated += c.updated;
      total.deleted += c.deleted;
    }
    for (const [i, n] of Object.entries(unmatched)) this.unmatched[Number(i)] += n;
  }

  private sendStatus(stream: ReplicationStream): void {
    if (stream.sendStatus(this.acked, false)) this.sentAck = this.acked;
    this.lastStatusAt = Date.now();
  }

  private tick(stream: ReplicationStream): void {
    if (Date.now() - this.lastStatusAt >= STATUS_EVERY_MS) this.sendStatus(stream);
    try {
      this.o.onProgress?.({
        transactions: this.transactions,
        rows: this.rowsApplied,
        skipped: this.skippedTransactions,
        applying: this.target.applying,
        commitLsn: showLsn(this.appliedCommit),
        endLsn: showLsn(this.appliedEnd),
        receivedLsn: showLsn(this.received),
        ms: Date.now() - this.started,
      });
    } catch {
      // A failing progress callback must not stop the apply; the caller's signal does that.
    }
  }

  private lagSeconds(): number {
    if (this.reached) return 0;
    const at = this.unappliedCommitTime ?? this.lastSeenCommitTime;
    if (at === undefined) return 0;
    return Math.max(0, (Date.now() - msFromPgTime(at)) / 1000);
  }
}

// The apply engine: reads a slot's stream and applies each source transaction to the target in one
// target transaction, together with the record of how far it got. The source is acknowledged only
// after that commit, so a connection or process killed anywhere leaves the target either with the
// whole transaction and its record, or with neither; the next call resumes from the record and
// skips, by commit LSN, whatever the slot sends again.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { ensureSchema } from '../db/ledger';
import { CaptureError, explain } from './errors';
import { isConnectionLoss } from '../db/sqlstate';
import { CAPTURE_DDL, ENSURE_APPLIED_ROW, LOCK_APPLIED, LOG_KEYS, LOG_TRANSACTION, READ_APPLIED, RECORD_APPLIED } from './ledger';
import { maxLsn, parseLsn, showLsn } from './lsn';
import { msFromPgTime, type BeginMessage, type CommitMessage, type PgOutputMessage, type RelationMessage } from './pgoutput';
import { connectSource, openStream, type ReplicationStream } from './replication';
import { quoteIdent } from '../db/sql';
import { bindRelation, keyColumnsOf, readableName, sourceLabel, StatementCache, type BoundRelation, type CaptureTable, type Change } from './tables';

export type { CaptureTable } from './tables';

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

/** Non-transactional logical messages arrive in WAL order: ours says every earlier commit was sent. */
const FENCE_PREFIX = 'backfill.fence';
const PROGRESS_EVERY_MS = 1000;
/** Well inside wal_sender_timeout (60 s by default), also while a long target transaction runs. */
const STATUS_EVERY_MS = 10_000;
/** How long one wait for a frame lasts before the deadline and the signal are looked at again. */
const WAIT_SLICE_MS = 200;

interface PendingTransaction {
  begin: BeginMessage;
  changes: { relation: BoundRelation; change: Change }[];
  /** the target already has it */
  skip: boolean;
}

/** Thrown inside a target transaction when the caller's signal asks to stop: rolled back, not an error. */
const STOPPED = Symbol('stopped');

export async function applyChanges(o: ApplyOptions): Promise<ApplyResult> {
  const started = Date.now();
  checkTables(o.tables);
  const until = o.untilLsn === undefined ? undefined : parseLsn(o.untilLsn);
  let client: pg.PoolClient;
  try {
    client = await o.target.connect();
  } catch (e) {
    throw explain('could not connect to the target', e);
  }
  // A checked-out client has no error listener; a connection that dies between two statements
  // would otherwise end the process. The next statement fails instead.
  const ignore = () => undefined;
  client.on('error', ignore);
  const run = new ApplyRun(o, client, until, started);
  try {
    return await run.run();
  } finally {
    client.removeListener('error', ignore);
    client.release(run.targetBroken || undefined);
  }
}

/** Before anything is opened: each table once, by index and by source name, with a copied key. */
function checkTables(tables: CaptureTable[]): void {
  const indexes = new Set<number>();
  const names = new Set<string>();
  for (const t of tables) {
    const name = `${t.sourceSchema}\0${t.sourceName}`;
    if (indexes.has(t.index) || names.has(name))
      throw new CaptureError(`the table ${sourceLabel(t)} (index ${t.index}) is listed twice for change capture`, '42710');
    indexes.add(t.index);
    names.add(name);
    if (!t.key.length) throw new CaptureError(`the table ${sourceLabel(t)} has no key for change capture`, '42P10');
    keyColumnsOf(t);
  }
}

class ApplyRun {
  targetBroken = false;
  private readonly deadline: number;
  private readonly byName = new Map<string, CaptureTable>();
  private readonly partitions = new Map<string, number>();
  private readonly outside = new Set<string>();
  /**
   * relid → its binding; null: known to be outside the spec (its changes are skipped); an error:
   * thrown at its first change. (Via the root, pgoutput describes a partition too, right after the
   * root, though its changes come under the root's relid: only a change decides.)
   */
  private readonly relations = new Map<number, BoundRelation | null | CaptureError>();
  private readonly statements = new StatementCache();

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
  private reached = false;
  private applying = false;
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
    private readonly target: pg.PoolClient,
    private readonly until: bigint | undefined,
    private readonly started: number,
  ) {
    this.deadline = started + o.maxMs;
    for (const t of o.tables) {
      this.byName.set(`${t.sourceSchema}\0${t.sourceName}`, t);
      this.rows[t.index] = { inserted: 0, updated: 0, deleted: 0 };
      this.unmatched[t.index] = 0;
    }
    for (const p of o.relations.partitions) this.partitions.set(`${p.schema}\0${p.name}`, p.table);
    for (const r of o.relations.outside) this.outside.add(`${r.schema}\0${r.name}`);
  }

  async run(): Promise<ApplyResult> {
    await this.prepareBookkeeping();
    const stream = await openStream(this.o.source, { slot: this.o.slot, publication: this.o.publication, startLsn: showLsn(this.appliedEnd) });
    // Never acknowledge below what the slot already has: that would move it backwards.
    this.acked = maxLsn(this.appliedEnd, stream.slotConfirmed);
    this.sentAck = stream.slotConfirmed;
    this.lastStatusAt = Date.now();
    const ticker = setInterval(() => this.tick(stream), PROGRESS_EVERY_MS);
    try {
      await this.emitFence();
      await this.consume(stream);
      this.sendStatus(stream);
    } finally {
      clearInterval(ticker);
      await stream.close();
    }
    const lagBytes = await this.lagBytes();
    return {
      transactions: this.transactions,
      rows: this.rows,
      skippedTransactions: this.skippedTransactions,
      skippedChanges: this.skippedChanges,
      unmatched: this.unmatched,
      applied: { commitLsn: showLsn(this.appliedCommit), endLsn: showLsn(this.appliedEnd) },
      acknowledged: showLsn(this.sentAck),
      reached: this.reached,
      lagBytes,
      lagSeconds: this.lagSeconds(),
      ms: Date.now() - this.started,
    };
  }

  private async prepareBookkeeping(): Promise<void> {
    try {
      await ensureSchema(this.target, CAPTURE_DDL);
      await this.target.query(ENSURE_APPLIED_ROW, [this.o.migration]);
      const r = await this.target.query<{ commit_lsn: string; end_lsn: string }>(READ_APPLIED, [this.o.migration]);
      this.appliedCommit = parseLsn(r.rows[0].commit_lsn);
      this.appliedEnd = parseLsn(r.rows[0].end_lsn);
    } catch (e) {
      if (isConnectionLoss(e)) this.targetBroken = true;
      throw explain("could not read or prepare change capture's record on the target", e);
    }
  }

  /** Emitted after the stream is open; its arrival means the stream has caught up to this moment. */
  private async emitFence(): Promise<void> {
    this.fenceId = randomUUID();
    const session = await connectSource(this.o.source);
    try {
      const v = await session.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
      // PostgreSQL 17 can flush the message at once; before, the WAL writer does within moments.
      const version = Number(v.rows[0].v);
      const flush = version >= 170000 ? ', true' : '';
      // A snapshot of the running transactions in the WAL just before the fence: once the fence is
      // acknowledged, the slot's restart point can move up to here, so the next call decodes from
      // near this moment instead of from the last periodic one (up to 15 s of WAL back). PostgreSQL
      // 16 and later; a role without the right to it only loses the shortcut.
      if (version >= 160000) await session.query('SELECT pg_log_standby_snapshot()').catch(() => undefined);
      const r = await session.query<{ lsn: string }>(`SELECT pg_logical_emit_message(false, $1, $2${flush})::text AS lsn`, [FENCE_PREFIX, this.fenceId]);
      // The function returns the end of the message's record: acknowledging it does not send the
      // fence again to the next call.
      this.fenceEnd = parseLsn(r.rows[0].lsn);
    } catch (e) {
      throw explain('could not mark the current position on the source (pg_logical_emit_message)', e);
    } finally {
      // A session that cannot close cleanly is gone anyway; the work's own errors are reported.
      await session.end().catch(() => undefined);
    }
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
        this.relations.set(m.relid, this.bind(m));
        return false;
      case 'insert':
      case 'update':
      case 'delete': {
        const tx = this.inTransaction(m.tag);
        if (tx.skip) return false;
        const relation = this.relationOf(m.relid);
        if (relation) tx.changes.push({ relation, change: m });
        else this.skippedChanges++;
        return false;
      }
      case 'truncate': {
        const tx = this.inTransaction('truncate');
        if (tx.skip) return false;
        for (const relid of m.relids) {
          const relation = this.relationOf(relid);
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
        if (m.transactional || m.prefix !== FENCE_PREFIX || m.content.toString('utf8') !== this.fenceId) return false;
        // In protocol 1 a non-transactional message never falls inside a transaction; if it ever
        // did, the transaction around it is finished first.
        if (this.pending) {
          this.fenceSeenInTransaction = true;
          return false;
        }
        this.reachFence(m.lsn, stream);
        return true;
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

  /** A spec table's binding; null for a relation known to be outside the spec; else why its changes stop the migration. */
  private bind(m: RelationMessage): BoundRelation | null | CaptureError {
    const name = `${m.schema}\0${m.name}`;
    const table = this.byName.get(name);
    if (table) return bindRelation(m, table);
    if (this.outside.has(name)) return null;
    const { publication, managed } = this.o.relations;
    const rel = readableName(`${quoteIdent(m.schema)}.${quoteIdent(m.name)}`);
    const pub = readableName(quoteIdent(publication));
    const index = this.partitions.get(name);
    const of = index === undefined ? undefined : this.o.tables.find((t) => t.index === index);
    if (of)
      return new CaptureError(
        `the source's stream sends the changes of ${rel}, a partition of ${sourceLabel(of)}, under the partition's own name (the publication ${pub} has publish_via_partition_root off), so they would not reach the target: ` +
          `ALTER PUBLICATION ${pub} SET (publish_via_partition_root = true), then abort and start the migration again with a new name`,
        '0A000',
      );
    if (managed)
      // Added to the user's publication after this call read it: retried, the next call knows it.
      return new CaptureError(
        `the source's stream sends the changes of ${rel}, which the publication ${pub} did not publish when this call began; reading the stream again`,
        '55000',
      );
    return new CaptureError(
      `the source's stream sends the changes of ${rel}, which is not a table of this migration, though the publication ${pub} is the migration's own (only its tables): ` +
        `stopped rather than leave its changes out; abort, check the publication (SELECT * FROM pg_publication_tables WHERE pubname = '${publication.replace(/'/g, "''")}'), then start the migration again with a new name`,
      '0A000',
    );
  }

  private relationOf(relid: number): BoundRelation | null {
    const r = this.relations.get(relid);
    if (r === undefined) throw new CaptureError(`the replication stream sent a change for relation ${relid} before describing it`, 'XX001');
    if (r instanceof CaptureError) throw r;
    return r;
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
      const outcome = await this.applyTransaction(tx, m);
      if (outcome === 'stopped') return true;
      if (outcome === 'applied') {
        this.appliedCommit = m.commitLsn;
        this.appliedEnd = m.endLsn;
        this.acked = maxLsn(this.acked, m.endLsn);
        // Only now, after the target's COMMIT: the slot may forget this transaction.
        this.sendStatus(stream);
      }
    }
    this.pending = undefined;
    if (this.fenceSeenInTransaction) {
      this.reachFence(0n, stream);
      return true;
    }
    return false;
  }

  private async applyTransaction(tx: PendingTransaction, commit: CommitMessage): Promise<'applied' | 'skipped' | 'stopped'> {
    const q = this.target;
    const rows: Record<number, RowCounts> = {};
    const unmatched: Record<number, number> = {};
    const keys: [number, (string | null)[]][] = [];
    this.applying = true;
    try {
      await this.bookkeeping('BEGIN', () => q.query('BEGIN'));
      // Another caller for this migration may have applied it meanwhile: decide under the row lock.
      const locked = await this.bookkeeping('lock', () => q.query<{ commit_lsn: string }>(LOCK_APPLIED, [this.o.migration]));
      if (parseLsn(locked.rows[0].commit_lsn) >= commit.commitLsn) {
        await q.query('ROLLBACK');
        this.skippedTransactions++;
        return 'skipped';
      }
      for (const { relation, change } of tx.changes) {
        if (this.o.signal?.aborted) throw STOPPED;
        const p = this.statements.prepare(relation, change);
        let r: pg.QueryResult;
        try {
          r = await q.query(p.statement);
        } catch (e) {
          throw this.refused(relation, p.keys[0], e);
        }
        const i = relation.table.index;
        const counts = (rows[i] ??= { inserted: 0, updated: 0, deleted: 0 });
        if (p.kind === 'insert') counts.inserted++;
        else if (!r.rowCount) unmatched[i] = (unmatched[i] ?? 0) + 1;
        else if (p.kind === 'update') counts.updated++;
        else counts.deleted++;
        for (const k of p.keys) keys.push([i, k]);
      }
      const position = [this.o.migration, showLsn(commit.commitLsn)];
      await this.bookkeeping('record', () => q.query(RECORD_APPLIED, [...position, showLsn(commit.endLsn)]));
      const perTable: Record<number, number> = {};
      for (const { relation } of tx.changes) perTable[relation.table.index] = (perTable[relation.table.index] ?? 0) + 1;
      await this.bookkeeping('log', () =>
        q.query(LOG_TRANSACTION, [...position, showLsn(commit.endLsn), tx.begin.xid, tx.changes.length, JSON.stringify(perTable)]),
      );
      await this.bookkeeping('keys', () => q.query(LOG_KEYS, [...position, JSON.stringify(keys)]));
      await this.bookkeeping('COMMIT', () => q.query('COMMIT'));
    } catch (e) {
      await q.query('ROLLBACK').catch(() => {
        this.targetBroken = true;
      });
      if (e === STOPPED) {
        this.unappliedCommitTime = tx.begin.commitTime;
        return 'stopped';
      }
      if (isConnectionLoss(e)) this.targetBroken = true;
      throw e;
    } finally {
      this.applying = false;
    }
    this.transactions++;
    this.rowsApplied += tx.changes.length;
    for (const [i, c] of Object.entries(rows)) {
      const total = this.rows[Number(i)];
      total.inserted += c.inserted;
      total.updated += c.updated;
      total.deleted += c.deleted;
    }
    for (const [i, n] of Object.entries(unmatched)) this.unmatched[Number(i)] += n;
    return 'applied';
  }

  private async bookkeeping<T>(step: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (isConnectionLoss(e)) throw explain(`the connection to the target was lost while applying a source transaction (${step})`, e);
      throw explain(`the target refused to record an applied source transaction (${step})`, e);
    }
  }

  private refused(relation: BoundRelation, key: (string | null)[], e: unknown): CaptureError {
    const at = `${relation.target} at key (${key.map((v) => v ?? 'NULL').join(', ')})`;
    if (isConnectionLoss(e)) return explain(`the connection to the target was lost while applying a change to ${at}`, e);
    return explain(`the target refused a change to ${at}`, e);
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
        applying: this.applying,
        commitLsn: showLsn(this.appliedCommit),
        endLsn: showLsn(this.appliedEnd),
        receivedLsn: showLsn(this.received),
        ms: Date.now() - this.started,
      });
    } catch {
      // A failing progress callback must not stop the apply; the caller's signal does that.
    }
  }

  private async lagBytes(): Promise<string> {
    const session = await connectSource(this.o.source);
    try {
      const r = await session.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      const behind = parseLsn(r.rows[0].lsn) - maxLsn(this.appliedEnd, this.acked);
      return String(behind > 0n ? behind : 0n);
    } catch (e) {
      throw explain("could not read the source's WAL position", e);
    } finally {
      // A session that cannot close cleanly is gone anyway; the work's own errors are reported.
      await session.end().catch(() => undefined);
    }
  }

  private lagSeconds(): number {
    if (this.reached) return 0;
    const at = this.unappliedCommitTime ?? this.lastSeenCommitTime;
    if (at === undefined) return 0;
    return Math.max(0, (Date.now() - msFromPgTime(at)) / 1000);
  }
}

// The apply's target side: the record of how far it got (read, and prepared when missing), and one
// source transaction applied in one target transaction together with that record, its log entry
// and the keys it touched. A transaction another caller applied meanwhile is left alone.
import type pg from 'pg';
import { ensureSchema } from '../db/ledger';
import { isConnectionLoss } from '../db/sqlstate';
import type { PendingTransaction, RowCounts } from './apply-types';
import { CaptureError, explain } from './errors';
import { parseLsn, showLsn } from './lsn';
import type { CommitMessage } from './pgoutput';
import { CANCEL_BACKEND_SQL, CAPTURE_DDL, ENSURE_APPLIED_ROW, LOCK_APPLIED, LOG_KEYS, LOG_TRANSACTION, READ_APPLIED, RECORD_APPLIED } from './sql';
import { StatementCache, type BoundRelation } from './tables';

/** Thrown inside a target transaction when the caller's signal asks to stop: rolled back, not an error. */
const STOPPED = Symbol('stopped');

/** What became of a source transaction: applied (with its rows), already there, or rolled back to stop. */
export type Applied =
  { outcome: 'applied'; rows: Record<number, RowCounts>; unmatched: Record<number, number> } | { outcome: 'skipped' } | { outcome: 'stopped' };

export class TargetApplier {
  /** the connection may be broken: it is not given back to the pool */
  broken = false;
  /** a target transaction is open */
  applying = false;
  private readonly statements = new StatementCache();

  /** the cancel of a statement in flight, sent when the caller's signal asked to stop */
  private cancelling?: Promise<void>;

  constructor(
    private readonly target: pg.PoolClient,
    private readonly migration: string,
    private readonly signal: AbortSignal | undefined,
    private readonly pool?: pg.Pool,
  ) {}

  /**
   * The caller asks to stop while a target transaction is open: its statement in flight (one that
   * waits for a lock, or a long one) is cancelled from another session, so the transaction rolls
   * back now rather than when that statement ends. The connection is not given back to the pool
   * (a cancel must never reach another user of it).
   */
  private stopNow = (): void => {
    if (!this.applying || !this.pool || this.cancelling) return;
    this.broken = true;
    const pid = (this.target as unknown as { processID?: number }).processID;
    if (!pid) return;
    // A cancel that cannot be sent only leaves the statement to end by itself.
    this.cancelling = this.pool.query(CANCEL_BACKEND_SQL, [pid]).then(
      () => undefined,
      () => undefined,
    );
  };

  /** Waits for a cancel sent, so that it lands before the connection is let go. */
  async settled(): Promise<void> {
    await this.cancelling;
  }

  /** The last applied transaction's commit and end LSNs (0/0 when none), the record made first when missing. */
  async prepare(): Promise<{ commit: bigint; end: bigint }> {
    try {
      await ensureSchema(this.target, CAPTURE_DDL);
      await this.target.query(ENSURE_APPLIED_ROW, [this.migration]);
      const r = await this.target.query<{ commit_lsn: string; end_lsn: string }>(READ_APPLIED, [this.migration]);
      return { commit: parseLsn(r.rows[0].commit_lsn), end: parseLsn(r.rows[0].end_lsn) };
    } catch (e) {
      if (isConnectionLoss(e)) this.broken = true;
      throw explain("could not read or prepare change capture's record on the target", e);
    }
  }

  async apply(tx: PendingTransaction, commit: CommitMessage): Promise<Applied> {
    const q = this.target;
    const rows: Record<number, RowCounts> = {};
    const unmatched: Record<number, number> = {};
    const keys: [number, (string | null)[]][] = [];
    this.applying = true;
    this.signal?.addEventListener('abort', this.stopNow);
    try {
      await this.bookkeeping('BEGIN', () => q.query('BEGIN'));
      // Another caller for this migration may have applied it meanwhile: decide under the row lock.
      const locked = await this.bookkeeping('lock', () => q.query<{ commit_lsn: string }>(LOCK_APPLIED, [this.migration]));
      if (parseLsn(locked.rows[0].commit_lsn) >= commit.commitLsn) {
        await q.query('ROLLBACK');
        return { outcome: 'skipped' };
      }
      for (const { relation, change } of tx.changes) {
        if (this.signal?.aborted) throw STOPPED;
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
      const position = [this.migration, showLsn(commit.commitLsn)];
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
        this.broken = true;
      });
      // Stopped, or its statement cancelled because the caller asked to stop: rolled back whole.
      if (e === STOPPED || (this.signal?.aborted && this.cancelling)) return { outcome: 'stopped' };
      if (isConnectionLoss(e)) this.broken = true;
      throw e;
    } finally {
      this.applying = false;
      this.signal?.removeEventListener('abort', this.stopNow);
    }
    return { outcome: 'applied', rows, unmatched };
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
}

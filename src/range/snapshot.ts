// Reading the source at a change-capture snapshot: every range of an epoch imports the snapshot the
// epoch's holder exported, so its rows are consistent with one LSN (its copy point) and the slot
// streams exactly what commits after it. The snapshot's name lives in the ledger, never in history.
import type pg from 'pg';
import type { ApplicationFailure } from '@temporalio/common';
import { failure } from '../domain/failures';
import { controlAlias, type MigrationSpec } from '../spec/schema';
import { inTransaction, poolFor } from '../db/pools';
import { BEGIN_SNAPSHOT } from '../db/sql';
import { setSnapshotSql } from './sql';
import { EPOCH } from '../db/ledger';

/** Which snapshot a range reads: the epoch, recorded in the ledger by its holder. */
export interface SnapshotRef {
  migration: string;
  spec: Pick<MigrationSpec, 'control' | 'target'>;
  epoch: number;
}

export interface Epoch {
  snapshot: string;
  /** the LSN the snapshot is consistent with */
  point: string;
  slot: string;
  temporary: boolean;
}

/** The failure a range reports when its epoch's snapshot is gone (its holder died or let go). */
function snapshotGone(epoch: number, why: string): ApplicationFailure {
  return failure('SnapshotGone', `the snapshot of epoch ${epoch} is gone (${why}): the ranges not yet copied continue in a new epoch`);
}

export async function epochOf(ref: SnapshotRef): Promise<Epoch | undefined> {
  const r = await poolFor(controlAlias(ref.spec), 'write').query(EPOCH, [ref.migration, ref.epoch]);
  // Booleans read as 't'/'f' in our sessions.
  const row = r.rows[0] as { snapshot: string; point: string; slot: string; temporary: string; released: string } | undefined;
  return row && row.released !== 't' ? { snapshot: row.snapshot, point: row.point, slot: row.slot, temporary: row.temporary === 't' } : undefined;
}

/**
 * Opens a repeatable-read transaction on `c` at the epoch's snapshot. `SET TRANSACTION SNAPSHOT`
 * must be its first statement; it fails once the exporting session is gone.
 */
export async function beginAtSnapshot(c: pg.ClientBase, ref: SnapshotRef): Promise<Epoch> {
  const e = await epochOf(ref);
  if (!e) throw snapshotGone(ref.epoch, 'released');
  await c.query(BEGIN_SNAPSHOT);
  try {
    await c.query(setSnapshotSql(e.snapshot));
  } catch (err) {
    // The transaction is void either way; the import's error is the one that counts.
    await c.query('ROLLBACK').catch(() => undefined);
    const code = (err as { code?: string }).code;
    // 22023: invalid snapshot identifier (its session ended); 42704: it does not exist.
    if (code === '22023' || code === '42704') throw snapshotGone(ref.epoch, 'its holder ended');
    throw err;
  }
  return e;
}

/** `fn` on a source session at the epoch's snapshot, or on the pool as it is now without one. */
export async function atSnapshot<T>(pool: pg.Pool, ref: SnapshotRef | undefined, fn: (c: pg.ClientBase | pg.Pool) => Promise<T>): Promise<T> {
  if (!ref) return fn(pool);
  return inTransaction(pool, (c) => beginAtSnapshot(c, ref), fn);
}

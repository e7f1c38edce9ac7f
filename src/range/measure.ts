// One side's evidence for a selection of rows (a range, the rows outside the ranges, a catch-up
// window), and the replace-then-measure step that copies a selection and proves it in one snapshot.
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { inTransaction } from '../db/pools';
import { BEGIN_SNAPSHOT, PREFER_INDEX, copyInSql, copyOutSql, duplicatesSql, profileSql, type KeyRange, type Selection, type Side } from '../db/sql';
import { copyOutHashedSql, deleteRangeSql } from './sql';
import type { Binding } from '../plan/binding';
import { CopyMeter, copyPipe } from './pipe';
import { HashSplitter } from './hash';
import { beginAtSnapshot, type SnapshotRef } from './snapshot';
import { secondsSince } from '../activities/metrics';
import { NO_DUPLICATES, compareProfiles, parseDuplicates, parseProfile, type Checks, type DuplicateKeys, type SideProfile } from './compare';

export interface Measured {
  profile: SideProfile;
  dups: DuplicateKeys;
}

/** Both sides after a replace, with what the copy moved and how long its two steps took (for the metrics). */
export interface Replaced {
  s: Measured;
  t: Measured;
  rows: number;
  bytes: number;
  /** the delete and the COPY */
  copySeconds: number;
  /** measuring both sides */
  verifySeconds: number;
}

const DUPLICATE_SAMPLE = 20;

/** One side's evidence: the fused profile scan, and duplicate keys where no index rules them out. */
export async function measure(c: pg.ClientBase | pg.Pool, b: Binding, side: Side, r?: KeyRange | Selection): Promise<Measured> {
  const unique = side === 'source' ? b.sourceKeyUnique : b.targetKeyUnique;
  const [p, d] = await Promise.all([c.query(profileSql(b, side, r)), unique ? undefined : c.query(duplicatesSql(b, side, r, DUPLICATE_SAMPLE))]);
  return { profile: parseProfile(p.rows, b.checks), dups: d ? parseDuplicates(d.rows) : NO_DUPLICATES };
}

/**
 * Whether the source side of a copy's checks can come from the COPY itself: its count and checksum
 * are all it needs when no aggregate or distribution is checked and a unique index rules out
 * duplicate keys in the source.
 */
function hashInCopy(b: Binding): boolean {
  return b.checks.aggregates.length === 0 && b.checks.distribution.length === 0 && b.sourceKeyUnique;
}

/** `fn` in a transaction of its own whose plans take the key index (see PREFER_INDEX). */
export function throughIndex<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(pool, 'BEGIN', async (c) => {
    await c.query(PREFER_INDEX);
    return fn(c);
  });
}

export function compareMeasured(b: Binding, s: Measured, t: Measured): Checks {
  return compareProfiles(s.profile, t.profile, b, { source: s.dups, target: t.dups });
}

/**
 * Opens a source snapshot and a target transaction, replaces the selected rows in the target with
 * the source's, and measures both sides there: the snapshot the copy reads is the one the source
 * side of the checks reads. The caller records what it must and commits both.
 */
export async function replaceAndMeasure(src: pg.PoolClient, tgt: pg.PoolClient, b: Binding, sel: KeyRange | Selection, at?: SnapshotRef): Promise<Replaced> {
  // Change capture: the epoch's snapshot, so the rows are consistent with its LSN.
  if (at) await beginAtSnapshot(src, at);
  else await src.query(BEGIN_SNAPSHOT);
  await tgt.query('BEGIN');
  if ('outside' in sel) await Promise.all([src.query(PREFER_INDEX), tgt.query(PREFER_INDEX)]);
  const started = performance.now();
  await tgt.query(deleteRangeSql(b, sel));
  const sink = tgt.query(copyFrom(copyInSql(b)));
  const meter = new CopyMeter();
  if (hashInCopy(b)) {
    // The source's count and checksum come with its COPY: only the target is read again.
    const split = new HashSplitter();
    await copyPipe([src.query(copyTo(copyOutHashedSql(b, sel))), split, meter, sink]);
    const copied = performance.now();
    const s: Measured = { profile: { count: String(split.rows), checksum: String(split.sum), aggregates: {}, distribution: {} }, dups: NO_DUPLICATES };
    const t = await measure(tgt, b, 'target', sel);
    return { s, t, rows: Number(sink.rowCount ?? 0), bytes: meter.bytes, copySeconds: (copied - started) / 1000, verifySeconds: secondsSince(copied) };
  }
  await copyPipe([src.query(copyTo(copyOutSql(b, sel))), meter, sink]);
  const copied = performance.now();
  const [s, t] = await Promise.all([measure(src, b, 'source', sel), measure(tgt, b, 'target', sel)]);
  return { s, t, rows: Number(sink.rowCount ?? 0), bytes: meter.bytes, copySeconds: (copied - started) / 1000, verifySeconds: secondsSince(copied) };
}

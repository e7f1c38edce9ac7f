// One range, end to end: copy it (source snapshot -> worker -> target, one target transaction),
// then prove it: count, checksum, aggregates, distributions and duplicate keys on both sides,
// recorded in the ledger in the same transaction. Running it twice leaves the target identical:
// the range is deleted before it is copied.
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { Context } from '@temporalio/activity';
import { controlAlias, type MigrationSpec, type TableSpec } from '../spec/schema';
import { inTransaction, poolFor } from '../db/pools';
import { MARK_VERIFIED } from '../db/ledger';
import { PREFER_INDEX, copyInSql, copyOutSql, deleteRangeSql, duplicatesSql, profileSql, type KeyRange, type Selection, type Side } from '../db/sql';
import { guarded } from '../db/errors';
import { bindingFor, type Binding } from './binding';
import { WORKER_ID, heartbeat } from './heartbeat';
export { heartbeat } from './heartbeat';
import { resolveRange, type TablePlan } from './ranges';
import { NO_DUPLICATES, compareProfiles, failedChecks, parseDuplicates, parseProfile, type Checks, type DuplicateKeys, type SideProfile } from './compare';

export interface SideEvidence {
  count: string;
  checksum: string;
}

export interface RangeInput {
  migration: string;
  spec: Pick<MigrationSpec, 'source' | 'target' | 'control' | 'mode'>;
  table: TableSpec;
  tableIndex: number;
  plan: TablePlan;
  rangeIndex: number;
  attempt: number;
  /** the last attempt the spec allows: a mismatch now marks the range failed */
  finalAttempt: boolean;
}

export interface RangeResult {
  status: 'verified' | 'mismatch' | 'failed';
  lo: string;
  hi: string;
  source: SideEvidence;
  target: SideEvidence;
  /** the names of the checks that failed */
  failed: string[];
  rowsCopied: number;
}

/** No byte through the COPY pipe for this long: the connection is dead or stuck; abort and retry. */
export function stallTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const s = Number(env.BACKFILL_STALL_TIMEOUT ?? 120);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 120_000;
}

/**
 * Counts bytes through the COPY pipe and heartbeats with them. A pipe that stops moving fails the
 * attempt (liveness heartbeats alone would keep a stuck copy alive forever).
 */
export class Progress extends Transform {
  bytes = 0;
  private lastBeat = Date.now();
  private lastByte = Date.now();
  private readonly watchdog: NodeJS.Timeout;
  constructor(stallMs: number) {
    super();
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastByte > stallMs) this.destroy(new Error(`the copy stalled: no data for ${Math.round(stallMs / 1000)} s`));
    }, Math.min(5000, stallMs / 2));
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.lastByte = Date.now();
    if (this.lastByte - this.lastBeat > 2000) {
      this.lastBeat = this.lastByte;
      heartbeat({ bytes: this.bytes });
    }
    cb(null, chunk);
  }
  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    clearInterval(this.watchdog);
    cb(err);
  }
  override _flush(cb: TransformCallback): void {
    clearInterval(this.watchdog);
    cb();
  }
}

function cancellation(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

/**
 * Source COPY -> progress -> target COPY. Settles on the first error of any stream: after a
 * connection dies, waiting for every stream to close can wait forever; the caller then destroys
 * both clients, which ends whatever is left.
 */
export async function copyPipe(streams: [NodeJS.ReadableStream, Transform, NodeJS.WritableStream]): Promise<void> {
  const failed = new Promise<never>((_, reject) => {
    for (const s of streams) (s as unknown as NodeJS.EventEmitter).once('error', reject);
  });
  const done = pipeline(streams[0], streams[1], streams[2], { signal: cancellation() });
  done.catch(() => undefined);
  failed.catch(() => undefined);
  await Promise.race([done, failed]);
}

export interface Measured {
  profile: SideProfile;
  dups: DuplicateKeys;
}

const DUPLICATE_SAMPLE = 20;

/** One side's evidence for a range: the fused profile scan, and duplicate keys where no index rules them out. */
export async function measure(c: pg.ClientBase | pg.Pool, b: Binding, side: Side, r?: KeyRange | Selection): Promise<Measured> {
  const unique = side === 'source' ? b.sourceKeyUnique : b.targetKeyUnique;
  const [p, d] = await Promise.all([
    c.query(profileSql(b, side, r)),
    unique ? undefined : c.query(duplicatesSql(b, side, r, DUPLICATE_SAMPLE)),
  ]);
  return { profile: parseProfile(p.rows, b.checks), dups: d ? parseDuplicates(d.rows) : NO_DUPLICATES };
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

function statusOf(input: RangeInput, checks: Checks): RangeResult['status'] {
  if (checks.ok) return 'verified';
  return input.finalAttempt ? 'failed' : 'mismatch';
}

function ledgerParams(input: RangeInput, b: Binding, lo: string, hi: string, status: string, s: SideProfile, t: SideProfile, checks: Checks): unknown[] {
  return [
    input.migration, input.tableIndex, input.rangeIndex, b.sourceName, b.targetName, lo, hi,
    status, input.attempt, s.count, s.checksum, t.count, t.checksum, JSON.stringify(checks), WORKER_ID,
  ];
}

function result(status: RangeResult['status'], lo: string, hi: string, s: SideProfile, t: SideProfile, checks: Checks, rowsCopied: number): RangeResult {
  return {
    status,
    lo,
    hi,
    source: { count: s.count, checksum: s.checksum },
    target: { count: t.count, checksum: t.checksum },
    failed: failedChecks(checks),
    rowsCopied,
  };
}

const at = (input: RangeInput) => ({
  migration: input.migration,
  sourceAlias: input.spec.source,
  controlAlias: controlAlias(input.spec as MigrationSpec),
  tableIndex: input.tableIndex,
  rangeIndex: input.rangeIndex,
});

/**
 * Runs `fn` with a source and a target client. A client that failed (mid-COPY, say) is in an
 * unknown state: it is destroyed (the server rolls back a transaction whose connection closes),
 * never asked to ROLLBACK, which pg would queue behind the abandoned COPY forever.
 */
export async function withCopyClients<T>(
  spec: Pick<MigrationSpec, 'source' | 'target'>,
  fn: (src: pg.PoolClient, tgt: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const src = await poolFor(spec.source, 'read').connect();
  let tgt: pg.PoolClient | undefined;
  let failure: Error | undefined;
  try {
    tgt = await poolFor(spec.target, 'write').connect();
    return await fn(src, tgt);
  } catch (e) {
    failure = e as Error;
    throw e;
  } finally {
    tgt?.release(failure);
    src.release(failure);
  }
}

/**
 * Opens a source snapshot and a target transaction, replaces the selected rows in the target with
 * the source's, and measures both sides there: the snapshot the copy reads is the one the source
 * side of the checks reads. The caller records what it must and commits both.
 */
export async function replaceAndMeasure(src: pg.PoolClient, tgt: pg.PoolClient, b: Binding, sel: KeyRange | Selection): Promise<{ s: Measured; t: Measured; rows: number }> {
  await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  await tgt.query('BEGIN');
  if ('outside' in sel) await Promise.all([src.query(PREFER_INDEX), tgt.query(PREFER_INDEX)]);
  await tgt.query(deleteRangeSql(b, sel));
  const sink = tgt.query(copyFrom(copyInSql(b)));
  await copyPipe([src.query(copyTo(copyOutSql(b, sel))), new Progress(stallTimeoutMs()), sink]);
  const [s, t] = await Promise.all([measure(src, b, 'source', sel), measure(tgt, b, 'target', sel)]);
  return { s, t, rows: Number(sink.rowCount ?? 0) };
}

/** Copy one range and verify it, in one target transaction and one source snapshot. */
export async function copyRange(input: RangeInput): Promise<RangeResult> {
  const b = await bindingFor(input.spec, input.table, input.tableIndex);
  const sameLedger = controlAlias(input.spec as MigrationSpec) === input.spec.target;
  return guarded(`copying ${b.sourceName} range ${input.rangeIndex}`, async () => {
    const { range: r, lo, hi } = await resolveRange(b, input.plan, at(input));
    return withCopyClients(input.spec, async (src, tgt) => {
      const { s, t, rows } = await replaceAndMeasure(src, tgt, b, r);
      const checks = compareMeasured(b, s, t);
      const status = statusOf(input, checks);
      const params = ledgerParams(input, b, lo, hi, status, s.profile, t.profile, checks);
      if (sameLedger) await tgt.query(MARK_VERIFIED, params);
      await tgt.query('COMMIT');
      await src.query('COMMIT');
      if (!sameLedger) await poolFor(controlAlias(input.spec as MigrationSpec), 'write').query(MARK_VERIFIED, params);
      return result(status, lo, hi, s.profile, t.profile, checks, rows);
    });
  });
}

/** Verify one range without copying: both sides measured as they are now, at the same time. */
export async function verifyRange(input: RangeInput): Promise<RangeResult> {
  const b = await bindingFor(input.spec, input.table, input.tableIndex);
  return guarded(`verifying ${b.sourceName} range ${input.rangeIndex}`, async () => {
    const { range: r, lo, hi } = await resolveRange(b, input.plan, at(input));
    const [s, t] = await Promise.all([
      measure(poolFor(input.spec.source, 'read'), b, 'source', r),
      measure(poolFor(input.spec.target, 'write'), b, 'target', r),
    ]);
    const checks = compareMeasured(b, s, t);
    const status = statusOf(input, checks);
    await poolFor(controlAlias(input.spec as MigrationSpec), 'write').query(
      MARK_VERIFIED,
      ledgerParams(input, b, lo, hi, status, s.profile, t.profile, checks),
    );
    return result(status, lo, hi, s.profile, t.profile, checks, 0);
  });
}

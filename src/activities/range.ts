// One range, end to end: copy it (source snapshot -> worker -> target, one target transaction),
// then prove it: count and checksum on both sides, recorded in the ledger in the same transaction.
// Running it twice leaves the target identical: the range is deleted before it is copied.
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { Context } from '@temporalio/activity';
import { controlAlias, type MigrationSpec, type TableSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import { MARK_VERIFIED } from '../db/ledger';
import {
  copyInSql,
  copyOutSql,
  deleteRangeSql,
  sourceChecksumSql,
  targetChecksumSql,
  type IntRange,
} from '../db/sql';
import { guarded } from '../db/errors';
import { bindingFor, type Binding } from './binding';

export interface SideEvidence {
  count: string;
  checksum: string;
}

export interface RangeInput {
  migration: string;
  spec: Pick<MigrationSpec, 'source' | 'target' | 'control' | 'mode'>;
  table: TableSpec;
  tableIndex: number;
  rangeIndex: number;
  lo: string;
  hi: string;
  attempt: number;
  /** the last attempt the spec allows: a mismatch now marks the range failed */
  finalAttempt: boolean;
}

export interface RangeResult {
  status: 'verified' | 'mismatch' | 'failed';
  source: SideEvidence;
  target: SideEvidence;
  rowsCopied: number;
}

/** Counts bytes through the COPY pipe and heartbeats, so a stuck range is noticed and retried. */
class Progress extends Transform {
  bytes = 0;
  private last = Date.now();
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (Date.now() - this.last > 2000) {
      this.last = Date.now();
      heartbeat({ bytes: this.bytes });
    }
    cb(null, chunk);
  }
}

function heartbeat(details: unknown): void {
  try {
    Context.current().heartbeat(details);
  } catch {
    /* not inside an activity (direct calls from tests and the CLI) */
  }
}

function cancellation(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

async function checksum(c: pg.ClientBase, sql: string): Promise<SideEvidence> {
  const r = await c.query(sql);
  return { count: String(r.rows[0].count), checksum: String(r.rows[0].checksum) };
}

function ledgerParams(input: RangeInput, b: Binding, status: string, s: SideEvidence, t: SideEvidence): unknown[] {
  const checks = { count: s.count === t.count, checksum: s.checksum === t.checksum };
  return [
    input.migration, input.tableIndex, input.rangeIndex, b.sourceName, b.targetName, input.lo, input.hi,
    status, input.attempt, s.count, s.checksum, t.count, t.checksum, JSON.stringify(checks),
  ];
}

function statusOf(input: RangeInput, s: SideEvidence, t: SideEvidence): RangeResult['status'] {
  if (s.count === t.count && s.checksum === t.checksum) return 'verified';
  return input.finalAttempt ? 'failed' : 'mismatch';
}

/** Copy one range and verify it, in one target transaction and one source snapshot. */
export async function copyRange(input: RangeInput): Promise<RangeResult> {
  const b = await bindingFor(input.spec, input.table, input.tableIndex);
  const r: IntRange = { lo: input.lo, hi: input.hi };
  const sameLedger = controlAlias(input.spec as MigrationSpec) === input.spec.target;
  return guarded(`copying ${b.sourceName} range ${input.rangeIndex}`, async () => {
    const src = await poolFor(input.spec.source, 'read').connect();
    let tgt: pg.PoolClient | undefined;
    let failure: Error | undefined;
    try {
      tgt = await poolFor(input.spec.target, 'write').connect();
      // The snapshot the copy reads is the snapshot the source checksum reads.
      await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await tgt.query('BEGIN');
      await tgt.query(deleteRangeSql(b, r));
      const progress = new Progress();
      const sink = tgt.query(copyFrom(copyInSql(b)));
      await pipeline(src.query(copyTo(copyOutSql(b, r))), progress, sink, { signal: cancellation() });
      const [s, t] = await Promise.all([checksum(src, sourceChecksumSql(b, r)), checksum(tgt, targetChecksumSql(b, r))]);
      const status = statusOf(input, s, t);
      if (sameLedger) await tgt.query(MARK_VERIFIED, ledgerParams(input, b, status, s, t));
      await tgt.query('COMMIT');
      await src.query('COMMIT');
      if (!sameLedger) await poolFor(controlAlias(input.spec as MigrationSpec), 'write').query(MARK_VERIFIED, ledgerParams(input, b, status, s, t));
      return { status, source: s, target: t, rowsCopied: Number(sink.rowCount ?? 0) };
    } catch (e) {
      failure = e as Error;
      throw e;
    } finally {
      // A client that failed mid-COPY is in an unknown state: destroy it rather than reuse it.
      if (failure) {
        await tgt?.query('ROLLBACK').catch(() => undefined);
        await src.query('ROLLBACK').catch(() => undefined);
      }
      tgt?.release(failure);
      src.release(failure);
    }
  });
}

/** Verify one range without copying: both sides counted and hashed as they are now. */
export async function verifyRange(input: RangeInput): Promise<RangeResult> {
  const b = await bindingFor(input.spec, input.table, input.tableIndex);
  const r: IntRange = { lo: input.lo, hi: input.hi };
  return guarded(`verifying ${b.sourceName} range ${input.rangeIndex}`, async () => {
    const [s, t] = await Promise.all([
      checksum(poolFor(input.spec.source, 'read') as unknown as pg.ClientBase, sourceChecksumSql(b, r)),
      checksum(poolFor(input.spec.target, 'write') as unknown as pg.ClientBase, targetChecksumSql(b, r)),
    ]);
    const status = statusOf(input, s, t);
    await poolFor(controlAlias(input.spec as MigrationSpec), 'write').query(MARK_VERIFIED, ledgerParams(input, b, status, s, t));
    return { status, source: s, target: t, rowsCopied: 0 };
  });
}

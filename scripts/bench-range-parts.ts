// Where a verified range's time goes above the plain range copy: the same ranges copied by plain loops
// that add, one at a time, what copyRange adds (the source's row hash in its COPY and the worker
// splitting it off, the target's hash scan after the copy, the ledger row), each loop paired with the
// range copy floor in the same run.
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { PostgresServer } from '../src/infra/postgres';
import type { BoundTable } from '../src/db/sql';
import { BEGIN_SNAPSHOT, copyInSql, profileSql } from '../src/db/sql';
import { copyOutHashedSql } from '../src/range/sql';
import { HashSplitter } from '../src/range/hash';
import { CopyMeter, copyPipe } from '../src/range/pipe';
import { MockActivityEnvironment } from '@temporalio/testing';
import { MigrationSpec } from '../src/spec/schema';
import { planMigration } from '../src/plan/plan';
import { copyRange } from '../src/range/copy';

export interface PartsOptions {
  /** names the migration the activity step plans (one per size and run) */
  name: string;
  src: PostgresServer;
  tgt: PostgresServer;
  b: BoundTable;
  rows: number;
  chunk: number;
  inFlight: number;
}

/**
 * The steps a loop takes per range, each added to the one before: the plain copy (the range copy
 * floor), the source read at a snapshot with each row's hash in its COPY and the worker splitting it
 * off, the target's hash scan after the copy, the range's ledger row in the target transaction, and
 * last the copyRange activity itself (planned once, run outside Temporal).
 */
export const LADDER = ['copy', 'snapshot + hashed copy', '+ target scan', '+ ledger row', 'copyRange'] as const;
export type Step = (typeof LADDER)[number];

/** A HashSplitter that keeps the time it spends in the worker. */
class TimedSplitter extends HashSplitter {
  static cpuMs = 0;
  override _transform(chunk: Buffer, enc: BufferEncoding, cb: (e?: Error | null, d?: Buffer) => void): void {
    const t0 = performance.now();
    super._transform(chunk, enc, (e, d) => {
      TimedSplitter.cpuMs += performance.now() - t0;
      cb(e, d);
    });
  }
}

const LEDGER = `CREATE TABLE IF NOT EXISTS public.bench_ledger (t int, r int, lo text, hi text, status text, count text, checksum text, checks jsonb, at timestamptz DEFAULT now(), PRIMARY KEY (t, r))`;
const RECORD = `INSERT INTO public.bench_ledger (t, r, lo, hi, status, count, checksum, checks) VALUES (0, $1, $2, $3, 'verified', $4, $5, $6)
                ON CONFLICT (t, r) DO UPDATE SET status = excluded.status, count = excluded.count, checksum = excluded.checksum, checks = excluded.checks, at = now()`;

/** The activity itself, outside Temporal (MockActivityEnvironment), `inFlight` ranges at a time. */
async function activityLoop(o: PartsOptions): Promise<void> {
  const env = new MockActivityEnvironment();
  const spec = MigrationSpec.parse({
    name: o.name,
    source: 'src',
    target: 'tgt',
    tables: [{ source: 'public.orders', target: 'public.orders', key: ['id'], chunk: { column: 'id', size: o.chunk } }],
    cutover: { approval: 'auto' },
  });
  const migration = spec.name;
  const planned: Awaited<ReturnType<typeof planMigration>> = await env.run(planMigration, { migration, spec });
  const plan = planned.plans[0];
  let next = 0;
  const lane = async () => {
    while (next < plan.rangeCount) {
      const rangeIndex = next++;
      const r: Awaited<ReturnType<typeof copyRange>> = await env.run(copyRange, {
        migration,
        spec,
        table: planned.tables[0],
        tableIndex: 0,
        plan,
        rangeIndex,
        attempt: 1,
        finalAttempt: true,
      });
      if (r.status !== 'verified') throw new Error(`range ${rangeIndex}: ${r.status}`);
    }
  };
  await Promise.all(Array.from({ length: o.inFlight }, lane));
}

/** One pass over every range with the steps of `step`, `inFlight` lanes at a time; the worker's splitting time in ms. */
export async function rangeLoop(o: PartsOptions, step: Step): Promise<{ splitMs: number }> {
  const level = LADDER.indexOf(step);
  if (step === 'copyRange') {
    await activityLoop(o);
    return { splitMs: 0 };
  }
  await o.tgt.query('bench', LEDGER);
  TimedSplitter.cpuMs = 0;
  let next = 1;
  const lane = async () => {
    const a = new pg.Client({ connectionString: o.src.url('bench') });
    const c = new pg.Client({ connectionString: o.tgt.url('bench') });
    await Promise.all([a.connect(), c.connect()]);
    try {
      while (next <= o.rows) {
        const lo = next;
        next += o.chunk;
        const r = { lo: [String(lo)], hi: [String(lo + o.chunk)] };
        await c.query('BEGIN');
        await c.query(`DELETE FROM public.orders WHERE id >= ${lo} AND id < ${lo + o.chunk}`);
        if (level === 0) {
          await copyPipe([
            a.query(copyTo(`COPY (SELECT * FROM public.orders WHERE id >= ${lo} AND id < ${lo + o.chunk}) TO STDOUT (FORMAT binary)`)),
            c.query(copyFrom(copyInSql(o.b))),
          ]);
        } else {
          await a.query(BEGIN_SNAPSHOT);
          const split = new TimedSplitter();
          await copyPipe([a.query(copyTo(copyOutHashedSql(o.b, r))), split, new CopyMeter(), c.query(copyFrom(copyInSql(o.b)))]);
          if (level >= 2) {
            const t = (await c.query(profileSql(o.b, 'target', r))).rows[0] as { n?: string; count?: string };
            if (!t) throw new Error('no profile');
          }
          if (level >= 3) await c.query(RECORD, [lo, String(lo), String(lo + o.chunk), String(split.rows), String(split.sum), JSON.stringify({ count: true })]);
          await a.query('COMMIT');
        }
        await c.query('COMMIT');
      }
    } finally {
      await Promise.all([a.end(), c.end()]);
    }
  };
  await Promise.all(Array.from({ length: o.inFlight }, lane));
  return { splitMs: TimedSplitter.cpuMs };
}

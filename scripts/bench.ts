// `npm run bench`: our verified backfill and our verify-only run against the physical floors,
// measured in the same run, on the same data, on two separate PostgreSQL servers:
//   - the bare binary COPY pipe (source COPY TO STDOUT -> target COPY FROM STDIN, one stream);
//   - the range copy floor: the same ranges copied by a plain loop (delete the range, COPY it, one
//     transaction each, the same number in flight), no checks, no Temporal;
//   - pgcopydb clone of the same table, when the pgcopydb binary is installed;
//   - the in-database hash floor: one full-table row-hash aggregate per side, both at once;
//   - the range scan floor: our per-range check query, range after range by a plain loop with the
//     same ranges in flight, no Temporal: what verify-only costs before any orchestration;
//   - orchestration overhead per range, on thousands of tiny ranges;
//   - the worker's peak memory: the worker runs as `backfill worker` in its own process, as users
//     run it, and the kernel's high-water mark of its resident set (VmHWM) is read at the end.
// Prints medians over --runs and their ratios, and writes the same as JSON (--out).
import { readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { startPostgres, type PostgresServer } from '../src/infra/postgres';
import { startDevServer } from '../src/infra/temporal';
import { spawnWorker } from '../test/helpers/temporal';
import { closePools } from '../src/db/pools';
import { checkTable } from '../src/plan/binding';
import { profileSql, rowHashExpr, type BoundTable } from '../src/db/sql';
import { abortSignal, progressQuery, reportQuery } from '../src/workflows/messages';
import { backfillMigration } from '../src/workflows/migration';
import { peerBench, printPeer, type PeerResults } from './bench-peer';
import { breakdown, printBreakdown } from './breakdown';
import { captureBench, printCapture, type CaptureResults } from './bench-capture';
import { printReverse, reverseBench, type ReverseResults } from './bench-reverse';
import { printWorkers, workersBench, type WorkersResult } from './bench-workers';
import { printTables, tablesBench, type TablesResult } from './bench-tables';
import { footprint, mb, type Footprint } from './bench-history';
import { LADDER, rangeLoop } from './bench-range-parts';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < 1) {
    console.error(`bench: --${name} must be a positive integer`);
    process.exit(2);
  }
  return v;
}
function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
/** --rows 1000000,10000000: each size measured in turn, in one run. */
const SIZES = (option('rows') ?? '1000000,10000000').split(',').map((x) => Number(x.trim()));
if (!SIZES.length || SIZES.some((x) => !Number.isInteger(x) || x < 1000)) {
  console.error('bench: --rows must be one or more row counts of at least 1000, separated by commas');
  process.exit(2);
}
/** --only orders | wide: one part of the bench (the orders table and its floors, or the wide table and the peer). */
const ONLY = option('only');
if (ONLY !== undefined && !['orders', 'wide', 'capture', 'reverse', 'workers', 'tables'].includes(ONLY)) {
  console.error('bench: --only must be "orders", "wide", "capture", "reverse", "workers" or "tables"');
  process.exit(2);
}
let ROWS = SIZES[0];
/** --capture-rows 200000,2000000: the sizes of the change-capture part (a writer through each migration). */
const CAPTURE_SIZES = (option('capture-rows') ?? '200000,2000000').split(',').map((x) => Number(x.trim()));
if (!CAPTURE_SIZES.length || CAPTURE_SIZES.some((x) => !Number.isInteger(x) || x < 1000)) {
  console.error('bench: --capture-rows must be one or more row counts of at least 1000, separated by commas');
  process.exit(2);
}
/** --pg 15 | 17: the servers' major version (17 embedded; 15 from Debian's packages). */
const PG = option('pg') ?? '17';
if (PG !== '15' && PG !== '17') {
  console.error('bench: --pg must be 15 or 17');
  process.exit(2);
}
const WRITES_PER_SECOND = arg('writes', 150);
const RUNS = arg('runs', 3);
const CHUNK = arg('chunk', 100_000);
const CONCURRENCY = arg('concurrency', 2);
const TINY_RANGES = arg('tiny-ranges', 1000);
/**
 * --lean: at each size only what every size needs (the COPY pipe, the backfill, the hash floor,
 * verify-only); the range copy and range scan floors, pgcopydb, the text hash floor, larger ranges
 * and the located faults are left out. For the largest sizes, where each full pass takes minutes.
 */
const LEAN = process.argv.includes('--lean');
/**
 * --parts: with the range copy floor, the same ranges by loops that add one by one what a verified
 * range adds (scripts/bench-range-parts.ts): where a range's time goes above the plain copy.
 */
const PARTS = process.argv.includes('--parts') && !LEAN;
/** --tables 2000: the tables of the many-tables part. */
const TABLES = arg('tables', 2000);
/** Ranges in flight in the workers part: enough for three workers to each have two. */
const CONCURRENCY_WORKERS = arg('workers-concurrency', 6);
const outIndex = process.argv.indexOf('--out');
const OUT = outIndex >= 0 ? process.argv[outIndex + 1] : 'bench-results.json';

const ORDERS = `(id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL, amount numeric(12,2) NOT NULL,
                 created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, note text)`;
const FILL = `INSERT INTO public.orders
  SELECT g, g % 100000, (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4], round((g % 100000) / 7.0, 2),
         timestamptz '2023-01-01 00:00:00+00' + g * interval '1.1 second', timestamptz '2024-01-01 00:00:00+00' + g * interval '0.9 second',
         CASE WHEN g % 5 = 0 THEN NULL ELSE 'order note ' || md5(g::text) END
    FROM generate_series(1, $1::bigint) g`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const secs = (ms: number) => (ms / 1000).toFixed(2);

/** The kernel's high-water mark of a process's resident set, in MB. */
function peakRssMB(pid: number): number {
  const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (!kb) throw new Error(`no VmHWM for process ${pid}`);
  return Number(kb) / 1024;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function copyPipe(src: PostgresServer, tgt: PostgresServer): Promise<void> {
  const a = new pg.Client({ connectionString: src.url('bench') });
  const b = new pg.Client({ connectionString: tgt.url('bench') });
  await Promise.all([a.connect(), b.connect()]);
  try {
    await b.query('BEGIN');
    await pipeline(a.query(copyTo('COPY public.orders TO STDOUT (FORMAT binary)')), b.query(copyFrom('COPY public.orders FROM STDIN (FORMAT binary)')));
    await b.query('COMMIT');
  } finally {
    await Promise.all([a.end(), b.end()]);
  }
}

/** Range by range: delete + binary COPY in one target transaction, `inFlight` at a time, nothing else. */
async function rangeCopyFloor(src: PostgresServer, tgt: PostgresServer, inFlight: number): Promise<void> {
  let next = 1;
  const lane = async () => {
    const a = new pg.Client({ connectionString: src.url('bench') });
    const b = new pg.Client({ connectionString: tgt.url('bench') });
    await Promise.all([a.connect(), b.connect()]);
    try {
      while (next <= ROWS) {
        const lo = next;
        next += CHUNK;
        await b.query('BEGIN');
        await b.query('DELETE FROM public.orders WHERE id >= $1 AND id < $2', [lo, lo + CHUNK]);
        await pipeline(
          a.query(copyTo(`COPY (SELECT * FROM public.orders WHERE id >= ${lo} AND id < ${lo + CHUNK}) TO STDOUT (FORMAT binary)`)),
          b.query(copyFrom('COPY public.orders FROM STDIN (FORMAT binary)')),
        );
        await b.query('COMMIT');
      }
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
}

/** One full-table row-hash aggregate per side, both at once, with the row hash our checks use. */
async function hashFloor(src: PostgresServer, tgt: PostgresServer, rowHash: string): Promise<void> {
  const q = `SELECT count(*), sum(${rowHash}) FROM public.orders`;
  await Promise.all([src.query('bench', q), tgt.query('bench', q)]);
}

/** Our per-range profile query on both sides, `inFlight` ranges at a time, by a plain loop. */
async function rangeFloor(src: PostgresServer, tgt: PostgresServer, b: BoundTable, inFlight: number): Promise<void> {
  const pools = [src, tgt].map((p) => new pg.Pool({ connectionString: p.url('bench'), max: inFlight }));
  try {
    let next = 1;
    const lane = async () => {
      while (next <= ROWS) {
        const lo = next;
        next += CHUNK;
        const r = { lo: [String(lo)], hi: [String(lo + CHUNK)] };
        await Promise.all([pools[0].query(profileSql(b, 'source', r)), pools[1].query(profileSql(b, 'target', r))]);
      }
    };
    await Promise.all(Array.from({ length: inFlight }, lane));
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
}

const TARGETS = { backfillOverCopyFloor: 1.3, verifyOnlyOverHashFloor: 1.3, reladiffOverOurs: 5, msPerRange: 25, workerPeakRssMB: 300 };
const targets = TARGETS;

/** The orders table at the current size: its floors, our backfill and verify-only, paired run by run. */
async function ordersBench(src: PostgresServer, tgt: PostgresServer, env: Awaited<ReturnType<typeof startDevServer>>) {
  // A worker of its own for each size: its peak memory is this size's.
  const worker = await spawnWorker(env.address, ORDERS_QUEUE);
  try {
    return await ordersAtSize(src, tgt, env, worker);
  } finally {
    await worker.stop();
  }
}

const ORDERS_QUEUE = 'bench-orders';

async function ordersAtSize(src: PostgresServer, tgt: PostgresServer, env: Awaited<ReturnType<typeof startDevServer>>, worker: { pid: number }) {
  for (const s of [src, tgt]) {
    await s.query('bench', 'DROP TABLE IF EXISTS public.orders');
    await s.query('bench', `CREATE TABLE public.orders ${ORDERS}`);
  }
  const fillMs = await timed(() => src.query('bench', FILL, [ROWS]));
  await src.query('bench', 'VACUUM ANALYZE public.orders');
  const size = (await src.query('bench', `SELECT pg_size_pretty(pg_total_relation_size('public.orders')) AS s`)).rows[0].s;
  console.log(`  orders: source filled in ${secs(fillMs)} s (${size})`);
  // The floor hashes rows exactly as our checks do (the binding picks the expression); the hash of
  // the whole row's text, which servers before 14 get, is measured too, for reference.
  const table = { source: 'public.orders', target: 'public.orders', key: ['id'], chunk: { column: 'id', size: CHUNK } };
  const bound = await checkTable({ sourceAlias: 'src', targetAlias: 'tgt', table, tableIndex: 0 });
  if (!bound.binding) throw new Error(bound.problems.join('\n'));
  const rowHash = rowHashExpr(bound.binding, 'target');
  const textRowHash = rowHashExpr({ ...bound.binding, hashAs: undefined }, 'target');
  const results: Record<string, number[]> = {
    copyFloor: [],
    rangeCopyFloor: [],
    pgcopydb: [],
    backfill: [],
    hashFloor: [],
    textHashFloor: [],
    rangeFloor: [],
    verifyOnly: [],
    verifyLargeRanges: [],
    verifyAndLocate: [],
  };
  let pgcopydbNote = 'not installed (apt-get install pgcopydb)';

  let n = 0;
  const lastBreakdown: Partial<Record<'copy' | 'verify', ReturnType<typeof breakdown>>> = {};
  let lastFootprint: Footprint | undefined;
  const migrate = async (mode: 'copy' | 'verify', chunk = CHUNK) => {
    const spec = {
      name: `bench-${mode}-${++n}`,
      taskQueue: ORDERS_QUEUE,
      source: 'src',
      target: 'tgt',
      mode,
      concurrency: CONCURRENCY,
      tables: [{ ...table, chunk: { column: 'id', size: chunk } }],
      cutover: { approval: 'auto' },
    };
    const h = await env.client.workflow.start(backfillMigration, { taskQueue: ORDERS_QUEUE, workflowId: spec.name, args: [spec] });
    const r = await h.result();
    if (r.phase !== 'completed') throw new Error(`${spec.name} ended ${r.phase}: ${r.reason ?? ''}`);
    if (chunk === CHUNK) lastBreakdown[mode] = breakdown(await h.fetchHistory());
    if (chunk === CHUNK && mode === 'copy') lastFootprint = await footprint(env.client, tgt, spec.name, h.firstExecutionRunId);
  };
  // pgcopydb drives pg_dump/pg_restore from PATH, which refuse a newer server than themselves.
  let pgcopydb = !LEAN && spawnSync('pgcopydb', ['--version'], { encoding: 'utf8' }).status === 0;
  if (pgcopydb) {
    const dump = /(\d+)\.\d+/.exec(spawnSync('pg_dump', ['--version'], { encoding: 'utf8' }).stdout ?? '')?.[1];
    const server = String((await src.query('bench', 'SHOW server_version_num')).rows[0].server_version_num).slice(0, -4);
    if (dump !== server) {
      pgcopydb = false;
      pgcopydbNote = `installed but not comparable here: its pg_dump is PostgreSQL ${dump ?? '?'}, the embedded servers are ${server}`;
      console.log(`bench: pgcopydb skipped: ${pgcopydbNote}`);
    } else pgcopydbNote = 'measured';
  }
  for (let run = 1; run <= RUNS; run++) {
    await tgt.query('bench', 'TRUNCATE public.orders');
    await tgt.query('bench', 'CHECKPOINT');
    results.copyFloor.push(await timed(() => copyPipe(src, tgt)));
    if (!LEAN) {
      await tgt.query('bench', 'TRUNCATE public.orders');
      await tgt.query('bench', 'CHECKPOINT');
      results.rangeCopyFloor.push(await timed(() => rangeCopyFloor(src, tgt, CONCURRENCY)));
    }
    for (const step of PARTS ? LADDER.slice(1) : []) {
      await tgt.query('bench', 'TRUNCATE public.orders');
      await tgt.query('bench', 'CHECKPOINT');
      const o = { name: `bench-parts-${ROWS}-${run}`, src, tgt, b: bound.binding, rows: ROWS, chunk: CHUNK, inFlight: CONCURRENCY };
      (results[`parts: ${step}`] ??= []).push(await timed(() => rangeLoop(o, step)));
    }
    if (pgcopydb) {
      await tgt.query('bench', 'DROP TABLE public.orders');
      results.pgcopydb.push(
        await timed(async () => {
          const r = spawnSync(
            'pgcopydb',
            [
              'clone',
              '--source',
              src.url('bench'),
              '--target',
              tgt.url('bench'),
              '--table-jobs',
              '2',
              '--index-jobs',
              '2',
              '--no-owner',
              '--no-acl',
              '--dir',
              `/tmp/pgcopydb-bench-${run}`,
            ],
            { encoding: 'utf8' },
          );
          if (r.status !== 0) throw new Error(`pgcopydb: ${r.stderr}`);
        }),
      );
    }
    await tgt.query('bench', 'DROP TABLE IF EXISTS public.orders');
    await tgt.query('bench', `CREATE TABLE public.orders ${ORDERS}`);
    await tgt.query('bench', 'CHECKPOINT');
    results.backfill.push(await timed(() => migrate('copy')));
    results.hashFloor.push(await timed(() => hashFloor(src, tgt, rowHash)));
    if (!LEAN) results.textHashFloor.push(await timed(() => hashFloor(src, tgt, textRowHash)));
    if (!LEAN) results.rangeFloor.push(await timed(() => rangeFloor(src, tgt, bound.binding!, CONCURRENCY)));
    results.verifyOnly.push(await timed(() => migrate('verify')));
    if (LEAN) {
      console.log(
        `  run ${run}: copy floor ${secs(results.copyFloor.at(-1)!)} s, backfill ${secs(results.backfill.at(-1)!)} s, hash floor ${secs(results.hashFloor.at(-1)!)} s, verify-only ${secs(results.verifyOnly.at(-1)!)} s`,
      );
      printBreakdown('backfill', lastBreakdown.copy!);
      printBreakdown('verify-only', lastBreakdown.verify!);
      continue;
    }
    results.verifyLargeRanges.push(await timed(() => migrate('verify', CHUNK * 5)));
    // A handful of faults, one per range in five ranges: verify, then locate each exact key.
    const faultIds = [1, 3, 5, 7, 9].map((k) => Math.floor((ROWS / 10) * k) + 7).filter((id) => id <= ROWS);
    await tgt.query('bench', 'UPDATE public.orders SET amount = amount + 1 WHERE id = ANY ($1::bigint[])', [faultIds]);
    results.verifyAndLocate.push(
      await timed(async () => {
        const spec = {
          name: `bench-locate-${run}`,
          taskQueue: ORDERS_QUEUE,
          source: 'src',
          target: 'tgt',
          mode: 'verify',
          concurrency: CONCURRENCY,
          retries: { rangeAttempts: 1 },
          tables: [{ source: 'public.orders', target: 'public.orders', key: ['id'], chunk: { column: 'id', size: CHUNK } }],
        };
        const h = await env.client.workflow.start(backfillMigration, { taskQueue: ORDERS_QUEUE, workflowId: spec.name, args: [spec] });
        for (;;) {
          const p = await h.query(progressQuery);
          if (p.phase === 'needs_attention') break;
          if (p.phase === 'failed' || p.phase === 'awaiting_approval') throw new Error(`locate run ended in ${p.phase}`);
          await new Promise((r) => setTimeout(r, 50));
        }
        const report = await h.query(reportQuery);
        const located = report.tables[0].ranges.reduce((a, r) => a + (r.changed ?? 0), 0);
        if (located !== faultIds.length) throw new Error(`located ${located} of ${faultIds.length} faults`);
        await h.signal(abortSignal, { reason: 'bench' });
      }),
    );
    await tgt.query('bench', 'UPDATE public.orders SET amount = amount - 1 WHERE id = ANY ($1::bigint[])', [faultIds]);
    console.log(
      `  run ${run}: copy floor ${secs(results.copyFloor.at(-1)!)} s, range copy floor ${secs(results.rangeCopyFloor.at(-1)!)} s${pgcopydb ? `, pgcopydb ${secs(results.pgcopydb.at(-1)!)} s` : ''}, backfill ${secs(results.backfill.at(-1)!)} s, hash floor ${secs(results.hashFloor.at(-1)!)} s (row text ${secs(results.textHashFloor.at(-1)!)} s), range scan floor ${secs(results.rangeFloor.at(-1)!)} s, verify-only ${secs(results.verifyOnly.at(-1)!)} s (ranges 5× as large ${secs(results.verifyLargeRanges.at(-1)!)} s), verify + locate 5 faults ${secs(results.verifyAndLocate.at(-1)!)} s`,
    );
    printBreakdown('backfill', lastBreakdown.copy!);
    printBreakdown('verify-only', lastBreakdown.verify!);
  }

  const m = Object.fromEntries(
    Object.entries(results)
      .filter(([, v]) => v.length)
      .map(([k, v]) => [k, median(v)]),
  );
  // Ratios are paired: each run's measure over the same run's floor, then the median of those,
  // so a slow moment of the machine weighs on both sides of a ratio.
  // (NaN where --lean left a measure out)
  const paired = (a: string, b: string) => median(results[a].map((x, i) => x / results[b][i])) ?? NaN;
  const ratios = {
    backfillOverCopyFloor: paired('backfill', 'copyFloor'),
    rangeCopyFloorOverCopyFloor: paired('rangeCopyFloor', 'copyFloor'),
    backfillOverRangeCopyFloor: paired('backfill', 'rangeCopyFloor'),
    verifyOnlyOverHashFloor: paired('verifyOnly', 'hashFloor'),
    verifyLargeRangesOverHashFloor: paired('verifyLargeRanges', 'hashFloor'),
    verifyAndLocateOverVerifyOnly: paired('verifyAndLocate', 'verifyOnly'),
    verifyOnlyOverTextHashFloor: paired('verifyOnly', 'textHashFloor'),
    rangeFloorOverHashFloor: paired('rangeFloor', 'hashFloor'),
    verifyOnlyOverRangeFloor: paired('verifyOnly', 'rangeFloor'),
    backfillOverCopyPlusHashFloors: median(results.backfill.map((x, i) => x / (results.copyFloor[i] + results.hashFloor[i]))),
    ...(m.pgcopydb ? { backfillOverPgcopydb: paired('backfill', 'pgcopydb') } : {}),
  };
  const ranges = Math.ceil(ROWS / CHUNK);
  const out = {
    rows: ROWS,
    runs: RUNS,
    chunk: CHUNK,
    ranges,
    // What a range costs above the bare COPY pipe (its checks, its own statements and the orchestration).
    msPerRangeOverCopyFloor: (m.backfill - m.copyFloor) / ranges,
    workerPeakRssMB: peakRssMB(worker.pid),
    footprint: lastFootprint!,
    concurrency: CONCURRENCY,
    tableSize: size,
    mediansMs: m,
    rowsPerSecond: { copyFloor: ROWS / (m.copyFloor / 1000), backfill: ROWS / (m.backfill / 1000), verifyOnly: ROWS / (m.verifyOnly / 1000) },
    ratios,
    targets,
    pgcopydb: pgcopydbNote,
    rowHash,
  };
  return out;
}

type OrdersResults = Awaited<ReturnType<typeof ordersBench>>;

function printOrders(o: OrdersResults): void {
  console.log(`| bare binary COPY pipe | ${secs(o.mediansMs.copyFloor)} s | floor |`);
  if (o.mediansMs.rangeCopyFloor !== undefined)
    console.log(
      `| (range copy floor: the same ranges by a plain loop, ${CONCURRENCY} in flight, no checks) | ${secs(o.mediansMs.rangeCopyFloor)} s = ${o.ratios.rangeCopyFloorOverCopyFloor.toFixed(2)}× the COPY pipe; backfill = ${o.ratios.backfillOverRangeCopyFloor.toFixed(2)}× it | |`,
    );
  if (o.mediansMs['parts: copyRange'] !== undefined) {
    // Each step's median over the range copy floor's, per range: what that step and those before it add.
    const per = (k: string) => `+${((o.mediansMs[k] - o.mediansMs.rangeCopyFloor) / o.ranges).toFixed(0)} ms`;
    const steps = LADDER.slice(1).map((step) => `${step} ${per(`parts: ${step}`)}`);
    console.log(`| (per range above the range copy floor, each step with those before it: ${steps.join('; ')}; the backfill ${per('backfill')}) | | |`);
  }
  if (o.mediansMs.pgcopydb) console.log(`| pgcopydb clone | ${secs(o.mediansMs.pgcopydb)} s | |`);
  console.log(
    `| verified backfill | ${secs(o.mediansMs.backfill)} s = ${o.ratios.backfillOverCopyFloor.toFixed(2)}× the COPY pipe | ≤ ${targets.backfillOverCopyFloor}× |`,
  );
  console.log(
    `| (copy floor + hash floor, one after the other) | ${secs(o.mediansMs.copyFloor + o.mediansMs.hashFloor)} s; backfill = ${o.ratios.backfillOverCopyPlusHashFloors.toFixed(2)}× that | |`,
  );
  console.log(`| hash floor (both sides at once) | ${secs(o.mediansMs.hashFloor)} s | floor |`);
  if (o.mediansMs.textHashFloor !== undefined)
    console.log(
      `| (hash floor over each row's text, as servers before 14 get) | ${secs(o.mediansMs.textHashFloor)} s; verify-only = ${o.ratios.verifyOnlyOverTextHashFloor.toFixed(2)}× that | |`,
    );
  if (o.mediansMs.rangeFloor !== undefined)
    console.log(
      `| (range scan floor: our check query per range, plain loop, ${CONCURRENCY} in flight) | ${secs(o.mediansMs.rangeFloor)} s = ${o.ratios.rangeFloorOverHashFloor.toFixed(2)}× the hash floor; verify-only = ${o.ratios.verifyOnlyOverRangeFloor.toFixed(2)}× it | |`,
    );
  console.log(
    `| verify-only | ${secs(o.mediansMs.verifyOnly)} s = ${o.ratios.verifyOnlyOverHashFloor.toFixed(2)}× the hash floor | ≤ ${targets.verifyOnlyOverHashFloor}× |`,
  );
  if (o.mediansMs.verifyLargeRanges !== undefined)
    console.log(
      `| (verify-only with ranges 5× as large: ${(CHUNK * 5).toLocaleString('en-US')} keys) | ${secs(o.mediansMs.verifyLargeRanges)} s = ${o.ratios.verifyLargeRangesOverHashFloor.toFixed(2)}× the hash floor | |`,
    );
  if (o.mediansMs.verifyAndLocate !== undefined)
    console.log(
      `| verify + locate 5 faults | ${secs(o.mediansMs.verifyAndLocate)} s = ${o.ratios.verifyAndLocateOverVerifyOnly.toFixed(2)}× verify-only | ≤ 2× |`,
    );
  console.log(`| backfill's cost per range above the COPY pipe (${o.ranges} ranges) | ${o.msPerRangeOverCopyFloor.toFixed(1)} ms | flat across sizes |`);
  console.log(`| worker peak memory at this size (VmHWM of its own worker) | ${o.workerPeakRssMB.toFixed(0)} MB | ≤ ${targets.workerPeakRssMB} MB |`);
  const f = o.footprint;
  console.log(`| backfill's history: runs, events in all, most in one run | ${f.runs}, ${f.events}, ${f.mostEventsInARun} | most ≤ 10,240 |`);
  console.log(`| backfill's report (query JSON) and ledger rows | ${mb(f.reportBytes)}B, ${mb(f.ledgerBytes)}B | |`);
}

/** Orchestration: thousands of tiny ranges, where the database work is negligible; and the worker's memory. */
async function onceBench(src: PostgresServer, tgt: PostgresServer, env: Awaited<ReturnType<typeof startDevServer>>, worker: { pid: number }) {
  let overheadMs = 0;
  let overheadNoEagerMs = 0;
  let workerPeakMB = 0;
  // Orchestration: thousands of tiny ranges, where the database work is negligible.
  await src.query('bench', 'DROP TABLE IF EXISTS public.tiny');
  await tgt.query('bench', 'DROP TABLE IF EXISTS public.tiny');
  await src.query('bench', 'CREATE TABLE public.tiny (id bigint PRIMARY KEY, v text)');
  await src.query('bench', `INSERT INTO public.tiny SELECT g, 'v' || g FROM generate_series(1, $1::bigint) g`, [TINY_RANGES * 5]);
  await tgt.query('bench', 'CREATE TABLE public.tiny (id bigint PRIMARY KEY, v text)');
  const tiny = {
    name: 'bench-tiny',
    taskQueue: 'bench',
    source: 'src',
    target: 'tgt',
    concurrency: 4,
    tables: [{ source: 'public.tiny', target: 'public.tiny', key: ['id'], chunk: { column: 'id', size: 5 } }],
    cutover: { approval: 'auto' },
  };
  const tinyRun = async (client: typeof env.client, label: string) =>
    (await timed(async () => {
      const h = await client.workflow.start(backfillMigration, { taskQueue: 'bench', workflowId: tiny.name, args: [tiny] });
      await h.result();
      printBreakdown(`${TINY_RANGES} tiny ranges, ${label}, the last run`, breakdown(await h.fetchHistory()));
    })) / TINY_RANGES;
  overheadMs = await tinyRun(env.client, 'eager activities');
  workerPeakMB = peakRssMB(worker.pid);
  // The same on a server without eager activity execution (a server of the user's own that
  // lacks the setting): every activity then waits in the task queue.
  await tgt.query('bench', 'TRUNCATE public.tiny');
  const plain = await startDevServer({ eagerActivities: false });
  const plainWorker = await spawnWorker(plain.address, 'bench');
  try {
    overheadNoEagerMs = await tinyRun(plain.client, 'no eager activities');
  } finally {
    await plainWorker.stop();
    await plain.teardown().catch(() => undefined);
  }
  return {
    msPerRange: overheadMs,
    msPerRangeWithoutEagerActivities: overheadNoEagerMs,
    tinyRanges: TINY_RANGES,
    workerPeakRssMB: workerPeakMB,
    harnessPeakRssMB: peakRssMB(process.pid),
  };
}

function printOnce(once: Awaited<ReturnType<typeof onceBench>>): void {
  console.log(`| orchestration per range (${TINY_RANGES} tiny ranges, 4 in flight) | ${once.msPerRange.toFixed(1)} ms | ≤ ${targets.msPerRange} ms |`);
  console.log(`| (the same on a server without eager activity execution) | ${once.msPerRangeWithoutEagerActivities.toFixed(1)} ms | |`);
  console.log(`| worker peak memory (VmHWM of the worker process) | ${once.workerPeakRssMB.toFixed(0)} MB | ≤ ${targets.workerPeakRssMB} MB |`);
  console.log(`| (this harness process, for reference) | ${once.harnessPeakRssMB.toFixed(0)} MB | |`);
}

async function main() {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  console.log(
    `bench: ${SIZES.map((x) => x.toLocaleString('en-US')).join(' and ')} rows, ${RUNS} run(s) each, ranges of ${CHUNK.toLocaleString('en-US')} keys (orders), ${CONCURRENCY} in flight${ONLY ? `, only ${ONLY}` : ''}`,
  );
  const pgOptions = PG === '15' ? { version: 15 } : {};
  const [src, tgt] = await Promise.all([startPostgres(pgOptions), startPostgres(pgOptions)]);
  const env = await startDevServer();
  try {
    await Promise.all([src.createDatabase('bench'), tgt.createDatabase('bench')]);
    process.env.BACKFILL_DB_SRC = src.url('bench');
    process.env.BACKFILL_DB_TGT = tgt.url('bench');
    const worker = await spawnWorker(env.address, 'bench');
    const sizes: { rows: number; orders?: OrdersResults; wide?: PeerResults }[] = [];
    let once: Awaited<ReturnType<typeof onceBench>> | undefined;
    const capture: CaptureResults[] = [];
    const reverse: ReverseResults[] = [];
    let workers: WorkersResult[] | undefined;
    let tables: TablesResult | undefined;
    try {
      for (const rows of ONLY === 'capture' || ONLY === 'reverse' || ONLY === 'workers' || ONLY === 'tables' ? [] : SIZES) {
        ROWS = rows;
        console.log(`\n${rows.toLocaleString('en-US')} rows`);
        const entry: (typeof sizes)[number] = { rows };
        if (ONLY !== 'wide') entry.orders = await ordersBench(src, tgt, env);
        if (ONLY !== 'orders') entry.wide = await peerBench({ src, tgt, client: env.client, taskQueue: 'bench', rows, runs: RUNS, concurrency: CONCURRENCY });
        sizes.push(entry);
      }
      if (ONLY === undefined || ONLY === 'orders') once = await onceBench(src, tgt, env, worker);
      if (ONLY === undefined || ONLY === 'workers') {
        console.log(`\nworkers: ${TINY_RANGES} tiny ranges, ${CONCURRENCY_WORKERS} in flight, served by one, two and three workers`);
        workers = await workersBench({ src, tgt, client: env.client, address: env.address, ranges: TINY_RANGES, runs: RUNS, concurrency: CONCURRENCY_WORKERS });
      }
      if (ONLY === undefined || ONLY === 'tables') {
        console.log(`\ntables: one migration of ${TABLES} small tables (a schema pattern), ${CONCURRENCY_WORKERS} ranges in flight`);
        tables = await tablesBench({ src, tgt, client: env.client, address: env.address, tables: TABLES, concurrency: CONCURRENCY_WORKERS, peakRssMB });
      }
      if (ONLY === undefined || ONLY === 'capture') {
        console.log(`\nchange capture (capture: logical), ${CAPTURE_SIZES.map((x) => x.toLocaleString('en-US')).join(' and ')} rows`);
        for (const rows of CAPTURE_SIZES)
          capture.push(
            await captureBench({ src, tgt, client: env.client, taskQueue: 'bench', rows, runs: RUNS, concurrency: CONCURRENCY, perSecond: WRITES_PER_SECOND }),
          );
      }
      if (ONLY === undefined || ONLY === 'reverse') {
        console.log(`\nthe way back (cutover.reverse), ${CAPTURE_SIZES.map((x) => x.toLocaleString('en-US')).join(' and ')} rows`);
        for (const rows of CAPTURE_SIZES)
          reverse.push(
            await reverseBench({ src, tgt, client: env.client, taskQueue: 'bench', rows, runs: RUNS, concurrency: CONCURRENCY, perSecond: WRITES_PER_SECOND }),
          );
      }
    } finally {
      await worker.stop();
    }
    for (const e of sizes) {
      console.log('');
      console.log(`| ${e.rows.toLocaleString('en-US')} rows: measure | median (ratio: median of per-run ratios) | target |`);
      console.log('|---|---|---|');
      if (e.orders) printOrders(e.orders);
      if (e.wide) printPeer(e.wide);
    }
    if (once) {
      console.log('');
      console.log('| once: measure | median | target |');
      console.log('|---|---|---|');
      printOnce(once);
    }
    if (workers) {
      console.log('');
      console.log('| workers: measure | median; shares | target |');
      console.log('|---|---|---|');
      printWorkers(workers);
    }
    if (tables) {
      console.log('');
      console.log('| tables: measure | value | target |');
      console.log('|---|---|---|');
      printTables(tables);
    }
    if (capture.length) {
      console.log('');
      console.log('| capture: measure | median | target |');
      console.log('|---|---|---|');
      printCapture(capture);
    }
    if (reverse.length) {
      console.log('');
      console.log('| the way back: measure | median | target |');
      console.log('|---|---|---|');
      printReverse(reverse);
    }
    writeFileSync(
      OUT,
      JSON.stringify(
        {
          runs: RUNS,
          concurrency: CONCURRENCY,
          targets,
          sizes,
          ...(once ?? {}),
          ...(workers ? { workers } : {}),
          ...(tables ? { tables } : {}),
          ...(capture.length ? { capture } : {}),
          ...(reverse.length ? { reverse } : {}),
        },
        null,
        2,
      ) + '\n',
    );
    console.log(`\nwritten to ${OUT}`);
  } finally {
    await closePools();
    await env.teardown().catch(() => undefined);
    await Promise.all([src.stop(), tgt.stop()]);
  }
}

main().catch((e) => {
  console.error(`bench: ${(e as Error).message}`);
  process.exit(1);
});

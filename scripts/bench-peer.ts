// The bench's second table and the peer users would pick instead. A table of ten mixed-type columns
// (uuid, unicode text with quotes, numeric, double, boolean, two timestamptz, jsonb, NULLs) on two
// PostgreSQL servers:
//   - verification: our verify mode against `reladiff` (the maintained fork of data-diff, from PyPI)
//     on the same tables, identical and with ten faults of the kinds that slip through loose checks
//     (rows missing and extra, 1e-4 on a numeric, a relative 1e-12 on a double, 1 µs on a
//     timestamptz, '' against NULL, a jsonb member); both must find exactly the ten;
//   - the copy path: our verified backfill of the table against the bare binary COPY pipe.
// Each measure is paired with its peer or floor in the same run, and the ratios are medians of
// those pairs.
import { spawn, spawnSync } from 'node:child_process';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { Client } from '@temporalio/client';
import type { PostgresServer } from '../src/infra/postgres';
import { abortSignal, progressQuery, reportQuery } from '../src/workflows/messages';
import { backfillMigration } from '../src/workflows/migration';
import { breakdown, printBreakdown } from './breakdown';
import { checkTable } from '../src/plan/binding';
import { rowHashExpr } from '../src/db/sql';

export const WIDE = `(id bigint PRIMARY KEY, u uuid NOT NULL, name text, amount numeric(14,4), ratio double precision,
                      flag boolean, created_at timestamptz NOT NULL, updated_at timestamptz, doc jsonb, note text)`;
const WIDE_COLUMNS = ['u', 'name', 'amount', 'ratio', 'flag', 'created_at', 'updated_at', 'doc', 'note'];
const FILL_WIDE = `INSERT INTO public.wide
  SELECT g, md5(g::text)::uuid,
         CASE WHEN g % 7 = 0 THEN NULL ELSE 'naïve "quoted" ' || g || ' café ☕ ' || repeat('x', (g % 13)::int) END,
         round(g * 1.2345, 4), g / 3.0::float8, g % 2 = 0,
         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
         CASE WHEN g % 9 = 0 THEN NULL ELSE timestamptz '2024-06-01 00:00:00+00' + g * interval '1.5 second' END,
         CASE WHEN g % 11 = 0 THEN NULL ELSE jsonb_build_object('k', g, 'tags', jsonb_build_array('a', g % 5)) END,
         CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || md5(g::text) END
    FROM generate_series(1, $1::bigint) g`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const secs = (ms: number) => (ms / 1000).toFixed(2);

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** The ten faults: each a statement on the target (and, for extra rows and '' vs NULL, on the source), and its undoing. */
function faults(rows: number) {
  const at = (k: number) => Math.floor((rows / 11) * k) + 3;
  const [m1, m2, m3, e1, e2, c1, c2, c3, c4, c5] = Array.from({ length: 10 }, (_, i) => at(i + 1));
  return {
    keys: { missing: [m1, m2, m3], extra: [e1, e2], changed: [c1, c2, c3, c4, c5] },
    apply: {
      source: [`DELETE FROM public.wide WHERE id IN (${e1}, ${e2})`, `UPDATE public.wide SET name = '' WHERE id = ${c4}`],
      target: [
        `DELETE FROM public.wide WHERE id IN (${m1}, ${m2}, ${m3})`,
        `UPDATE public.wide SET amount = amount + 0.0001 WHERE id = ${c1}`,
        `UPDATE public.wide SET ratio = ratio * (1 + 1e-12) WHERE id = ${c2}`,
        `UPDATE public.wide SET created_at = created_at + interval '1 microsecond' WHERE id = ${c3}`,
        `UPDATE public.wide SET name = NULL WHERE id = ${c4}`,
        `UPDATE public.wide SET doc = doc || '{"k2": 1}' WHERE id = ${c5}`,
      ],
    },
    /** back to identical: the source's rows as filled, the target a copy of them */
    undo: { ids: [m1, m2, m3, e1, e2, c1, c2, c3, c4, c5] },
  };
}

async function refill(server: PostgresServer, ids: number[]): Promise<void> {
  await server.query('bench', 'DELETE FROM public.wide WHERE id = ANY ($1::bigint[])', [ids]);
  for (const id of ids) await server.query('bench', `${FILL_WIDE.replace('generate_series(1, $1::bigint) g', `generate_series(${id}, ${id}) g`)}`);
}

async function copyWide(src: PostgresServer, tgt: PostgresServer, table: string): Promise<void> {
  const a = new pg.Client({ connectionString: src.url('bench') });
  const b = new pg.Client({ connectionString: tgt.url('bench') });
  await Promise.all([a.connect(), b.connect()]);
  try {
    await b.query('BEGIN');
    await pipeline(a.query(copyTo('COPY public.wide TO STDOUT (FORMAT binary)')), b.query(copyFrom(`COPY ${table} FROM STDIN (FORMAT binary)`)));
    await b.query('COMMIT');
  } finally {
    await Promise.all([a.end(), b.end()]);
  }
}

/** reladiff's version, or why it cannot run here. */
export function reladiffVersion(): { ok: true; version: string } | { ok: false; why: string } {
  const r = spawnSync('reladiff', ['--version'], { encoding: 'utf8' });
  if (r.status !== 0) return { ok: false, why: "not installed (pip install 'reladiff[postgresql]')" };
  return { ok: true, version: (r.stdout || r.stderr).trim().split('\n').pop() ?? '?' };
}

/** One reladiff run over the two tables: the distinct keys it reports as differing. */
async function reladiff(src: PostgresServer, tgt: PostgresServer, threads: number): Promise<Set<string>> {
  const url = (s: PostgresServer) => s.url('bench').replace(/^postgres(ql)?:/, 'postgresql:');
  const args = [
    url(src),
    'public.wide',
    url(tgt),
    'public.wide',
    '-k',
    'id',
    ...WIDE_COLUMNS.flatMap((c) => ['-c', c]),
    '--json',
    '--skip-sort-results',
    '-j',
    String(threads),
  ];
  // A wide COLUMNS keeps each --json line unbroken; --skip-sort-results: its sort fails on NULLs.
  const p = spawn('reladiff', args, { env: { ...process.env, COLUMNS: '100000' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number>((r) => p.on('close', (c) => r(c ?? -1)));
  if (code !== 0) throw new Error(`reladiff exited ${code}: ${err.trim().split('\n').slice(-3).join(' ')}`);
  const keys = new Set<string>();
  for (const line of out.split('\n')) {
    if (!line.trim()) continue;
    // Each line is ["-" or "+", [key, ...values]]: a row of one side that the other lacks or has otherwise.
    const d = JSON.parse(line) as [string, unknown[]];
    if (!Array.isArray(d) || !Array.isArray(d[1])) throw new Error(`reladiff printed a line this bench does not read: ${line.slice(0, 200)}`);
    keys.add(JSON.stringify(d[1][0]));
  }
  return keys;
}

export interface PeerOptions {
  src: PostgresServer;
  tgt: PostgresServer;
  client: Client;
  taskQueue: string;
  rows: number;
  runs: number;
  concurrency: number;
}

export interface PeerResults {
  rows: number;
  reladiff: string;
  mediansMs: Record<string, number>;
  ratios: Record<string, number>;
  /** keys each side reported in the faulty case (must be exactly the ten) */
  found: { ours: number; reladiff?: number };
}

let n = 0;

/** Our verify mode over public.wide: ms to a verdict; with faults, to needs_attention with all located. */
async function oursVerify(o: PeerOptions, expectFaults: number): Promise<{ ms: number; found: number }> {
  const spec = {
    name: `bench-wide-verify-${++n}`,
    taskQueue: o.taskQueue,
    source: 'src',
    target: 'tgt',
    mode: 'verify',
    concurrency: o.concurrency,
    tables: [{ source: 'public.wide', target: 'public.wide' }],
    cutover: { approval: 'auto' },
  };
  let found = 0;
  const ms = await timed(async () => {
    const h = await o.client.workflow.start(backfillMigration, { taskQueue: o.taskQueue, workflowId: spec.name, args: [spec] });
    if (!expectFaults) {
      const r = await h.result();
      if (r.phase !== 'completed') throw new Error(`${spec.name} ended ${r.phase}: ${r.reason ?? ''}`);
      printBreakdown('verify, identical', breakdown(await h.fetchHistory()));
      return;
    }
    for (;;) {
      const p = await h.query(progressQuery);
      if (p.phase === 'needs_attention') break;
      if (p.phase === 'failed' || p.phase === 'completed') throw new Error(`${spec.name} ended ${p.phase} with faults in the target`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const report = await h.query(reportQuery);
    printBreakdown('verify with faults, to needs_attention', breakdown(await h.fetchHistory()));
    const t = report.tables[0];
    found = t.ranges.reduce((a, r) => a + (r.missing ?? 0) + (r.extra ?? 0) + (r.changed ?? 0), 0) + Number(t.outside.count);
    await h.signal(abortSignal, { reason: 'bench' });
  });
  return { ms, found };
}

async function oursBackfill(o: PeerOptions): Promise<number> {
  const spec = {
    name: `bench-wide-copy-${++n}`,
    taskQueue: o.taskQueue,
    source: 'src',
    target: 'tgt',
    concurrency: o.concurrency,
    tables: [{ source: 'public.wide', target: 'public.wide_copy' }],
    cutover: { approval: 'auto' },
  };
  return timed(async () => {
    const h = await o.client.workflow.start(backfillMigration, { taskQueue: o.taskQueue, workflowId: spec.name, args: [spec] });
    const r = await h.result();
    if (r.phase !== 'completed') throw new Error(`${spec.name} ended ${r.phase}: ${r.reason ?? ''}`);
    printBreakdown('verified backfill', breakdown(await h.fetchHistory()));
  });
}

export async function peerBench(o: PeerOptions): Promise<PeerResults> {
  const { src, tgt, rows } = o;
  const peer = reladiffVersion();
  for (const s of [src, tgt]) {
    await s.query('bench', 'DROP TABLE IF EXISTS public.wide');
    await s.query('bench', `CREATE TABLE public.wide ${WIDE}`);
  }
  await tgt.query('bench', 'DROP TABLE IF EXISTS public.wide_copy');
  await tgt.query('bench', `CREATE TABLE public.wide_copy ${WIDE}`);
  await src.query('bench', FILL_WIDE, [rows]);
  await copyWide(src, tgt, 'public.wide');
  await Promise.all([src.query('bench', 'VACUUM ANALYZE public.wide'), tgt.query('bench', 'VACUUM ANALYZE public.wide')]);
  const size = (await src.query('bench', `SELECT pg_size_pretty(pg_total_relation_size('public.wide')) AS s`)).rows[0].s;
  console.log(`  wide table: ${rows.toLocaleString('en-US')} rows of ten mixed-type columns (${size}); reladiff: ${peer.ok ? peer.version : peer.why}`);

  const f = faults(rows);
  const r: Record<string, number[]> = {
    hashFloor: [],
    oursIdentical: [],
    reladiffIdentical: [],
    oursFaults: [],
    reladiffFaults: [],
    copyPipe: [],
    backfill: [],
  };
  // The floor under any exact verification of this table: one full-table aggregate of our row hash
  // per side, both at once (PostgreSQL's parallel scans).
  const bound = await checkTable({
    sourceAlias: 'src',
    targetAlias: 'tgt',
    table: { source: 'public.wide', target: 'public.wide', key: ['id'] },
    tableIndex: 0,
  });
  if (!bound.binding) throw new Error(bound.problems.join('\n'));
  const floorSql = (side: 'source' | 'target') => `SELECT count(*), sum(${rowHashExpr(bound.binding!, side)}) FROM public.wide`;
  const found: PeerResults['found'] = { ours: 0 };
  for (let run = 1; run <= o.runs; run++) {
    // Identical tables: each side's full verdict, and the hash floor.
    r.hashFloor.push(await timed(() => Promise.all([src.query('bench', floorSql('source')), tgt.query('bench', floorSql('target'))])));
    r.oursIdentical.push((await oursVerify(o, 0)).ms);
    if (peer.ok) {
      let keys = new Set<string>();
      r.reladiffIdentical.push(await timed(async () => (keys = await reladiff(src, tgt, o.concurrency))));
      if (keys.size) throw new Error(`reladiff reported ${keys.size} differences between identical tables`);
    }
    // Ten faults: each must be found, exactly.
    for (const sql of f.apply.source) await src.query('bench', sql);
    for (const sql of f.apply.target) await tgt.query('bench', sql);
    try {
      const ours = await oursVerify(o, 10);
      r.oursFaults.push(ours.ms);
      found.ours = ours.found;
      if (ours.found !== 10) throw new Error(`ours found ${ours.found} of the 10 faults`);
      if (peer.ok) {
        let keys = new Set<string>();
        r.reladiffFaults.push(await timed(async () => (keys = await reladiff(src, tgt, o.concurrency))));
        found.reladiff = keys.size;
      }
    } finally {
      await refill(src, f.undo.ids);
      await refill(tgt, f.undo.ids);
    }
    // The copy path on this table: bare COPY, then ours, into the same empty table.
    await tgt.query('bench', 'TRUNCATE public.wide_copy');
    await tgt.query('bench', 'CHECKPOINT');
    r.copyPipe.push(await timed(() => copyWide(src, tgt, 'public.wide_copy')));
    await tgt.query('bench', 'TRUNCATE public.wide_copy');
    await tgt.query('bench', 'CHECKPOINT');
    r.backfill.push(await oursBackfill(o));
    console.log(
      `  wide run ${run}: verify identical ours ${secs(r.oursIdentical.at(-1)!)} s${peer.ok ? `, reladiff ${secs(r.reladiffIdentical.at(-1)!)} s` : ''}; ` +
        `10 faults ours ${secs(r.oursFaults.at(-1)!)} s${peer.ok ? `, reladiff ${secs(r.reladiffFaults.at(-1)!)} s (found ${found.reladiff})` : ''}; ` +
        `copy pipe ${secs(r.copyPipe.at(-1)!)} s, verified backfill ${secs(r.backfill.at(-1)!)} s`,
    );
  }
  const paired = (a: string, b: string) => median(r[a].map((x, i) => x / r[b][i]));
  const m = Object.fromEntries(
    Object.entries(r)
      .filter(([, v]) => v.length)
      .map(([k, v]) => [k, median(v)]),
  );
  return {
    rows,
    reladiff: peer.ok ? peer.version : peer.why,
    mediansMs: m,
    ratios: {
      ...(peer.ok
        ? { reladiffOverOursIdentical: paired('reladiffIdentical', 'oursIdentical'), reladiffOverOursFaults: paired('reladiffFaults', 'oursFaults') }
        : {}),
      backfillOverCopyPipe: paired('backfill', 'copyPipe'),
      oursIdenticalOverHashFloor: paired('oursIdentical', 'hashFloor'),
      ...(peer.ok ? { reladiffIdenticalOverHashFloor: paired('reladiffIdentical', 'hashFloor') } : {}),
    },
    found,
  };
}

export function printPeer(p: PeerResults): void {
  const m = p.mediansMs;
  const x = (v: number | undefined) => (v === undefined ? '–' : `${v.toFixed(2)}×`);
  console.log(
    `| wide table, ${p.rows.toLocaleString('en-US')} rows: ours verify, identical | ${secs(m.oursIdentical)} s${m.reladiffIdentical ? `; reladiff ${secs(m.reladiffIdentical)} s: ours ${x(p.ratios.reladiffOverOursIdentical)} faster` : ` (reladiff ${p.reladiff})`} | ≥ 5× |`,
  );
  console.log(
    `| wide table: ours verify, 10 faults (found ${p.found.ours}${p.found.reladiff !== undefined ? `; reladiff found ${p.found.reladiff}` : ''}) | ${secs(m.oursFaults)} s${m.reladiffFaults ? `; reladiff ${secs(m.reladiffFaults)} s: ours ${x(p.ratios.reladiffOverOursFaults)} faster` : ''} | ≥ 5× |`,
  );
  console.log(
    `| wide table: hash floor (our row hash, full table, both sides at once) | ${secs(m.hashFloor)} s; ours identical = ${x(p.ratios.oursIdenticalOverHashFloor)} it${m.reladiffIdentical ? `, reladiff = ${x(p.ratios.reladiffIdenticalOverHashFloor)} it` : ''} | ≤ 1.3× |`,
  );
  console.log(`| wide table: verified backfill | ${secs(m.backfill)} s = ${x(p.ratios.backfillOverCopyPipe)} the COPY pipe (${secs(m.copyPipe)} s) | ≤ 1.3× |`);
}

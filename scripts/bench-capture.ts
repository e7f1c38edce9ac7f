// The change-capture part of `npm run bench` (`--only capture`): a migration with `capture: logical`
// on the writer's table (no change column), each size measured without writes and with a steady
// writer (~150 writes/s: updates, inserts, deletes) from before the start until after the switch:
//   - start to the gate, with the writer, against the same without writes (goal: at most 1.5x plus a few s);
//   - approval to completion (freeze, final window, switch) and the final check's own freeze-to-verdict
//     time (goal: at most 2 s at every size, 2M/200k at most 1.5);
//   - apply throughput: source transactions the stream applied per second against the writer's rate;
//   - the backfill without writes against the bare COPY pipe of the same table (goal: at most 1.3x).
// Every figure is a median over the runs; ratios are medians of per-run ratios.
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { PeerOptions } from './bench-peer';
import { startWriter, tableFingerprint } from '../src/infra/writer';
import { FILL_WRITER_TABLE, WRITER_TABLE } from '../src/db/demo';
import { approveCutoverUpdate, progressQuery, type Progress } from '../src/workflows/messages';
import { backfillMigration } from '../src/workflows/migration';
import { afterApproval } from './breakdown';

/** The peer bench's options (servers, client, sizes), and the writer's rate. */
export interface CaptureOptions extends PeerOptions {
  perSecond: number;
}

export interface CaptureResults {
  rows: number;
  perSecond: number;
  copyPipe: number[];
  /** start to every range copied (the backfill itself), without writes */
  copiedQuiet: number[];
  toGateQuiet: number[];
  toGateWriter: number[];
  approvalToDone: number[];
  freezeToVerdict: number[];
  finalWindowRows: number[];
  appliedPerSec: number[];
  writerPerSec: number[];
}

const TABLE = 'public.accounts';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** The 95th percentile, nearest rank: of ten runs, the slowest but none (the tenth, since 0.95 × 10 rounds up to 10). */
const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil(0.95 * xs.length) - 1)];

async function prepare(o: CaptureOptions): Promise<void> {
  await o.src.query('bench', `DROP TABLE IF EXISTS ${TABLE}`);
  await o.src.query('bench', `DO $$ BEGIN CREATE ROLE app LOGIN PASSWORD 'app'; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  await o.src.query('bench', WRITER_TABLE(TABLE));
  // A TOASTed text on one row in a thousand: the table stays mostly rows, not large texts.
  await o.src.query('bench', FILL_WRITER_TABLE(TABLE, o.rows, 1000));
  await o.src.query('bench', `GRANT SELECT, INSERT, UPDATE, DELETE ON ${TABLE} TO app`);
  await o.src.query('bench', `VACUUM ANALYZE ${TABLE}`);
  for (const t of [TABLE, 'public.accounts_pipe']) {
    await o.tgt.query('bench', `DROP TABLE IF EXISTS ${t}`);
    await o.tgt.query('bench', WRITER_TABLE(t));
  }
}

/** The bare binary COPY pipe of the whole table, one stream. */
async function copyPipeMs(o: CaptureOptions): Promise<number> {
  await o.tgt.query('bench', 'TRUNCATE public.accounts_pipe');
  const s = new pg.Client({ connectionString: o.src.url('bench') });
  const t = new pg.Client({ connectionString: o.tgt.url('bench') });
  await Promise.all([s.connect(), t.connect()]);
  try {
    const t0 = performance.now();
    await pipeline(s.query(copyTo(`COPY ${TABLE} TO STDOUT (FORMAT binary)`)), t.query(copyFrom('COPY public.accounts_pipe FROM STDIN (FORMAT binary)')));
    return performance.now() - t0;
  } finally {
    await Promise.all([s.end(), t.end()]);
  }
}

function spec(o: CaptureOptions, name: string) {
  return {
    name,
    source: 'src',
    target: 'tgt',
    taskQueue: o.taskQueue,
    concurrency: o.concurrency,
    capture: 'logical',
    catchUp: { maxLag: '3 seconds' },
    tables: [{ source: TABLE, target: TABLE, key: ['id'] }],
    cutover: {
      approval: 'required',
      freeze: { connection: 'src', sql: `REVOKE INSERT, UPDATE, DELETE ON ${TABLE} FROM app` },
      unfreeze: { connection: 'src', sql: `GRANT INSERT, UPDATE, DELETE ON ${TABLE} TO app` },
    },
  };
}

/** Polls to the gate; `copied`: when the ranges were all copied (the phase left planning and backfilling). */
async function gateOf(h: { query: (q: typeof progressQuery) => Promise<Progress> }, t0: number): Promise<{ gate: Progress; copied: number }> {
  let copied = 0;
  for (;;) {
    const p = await h.query(progressQuery);
    if (!copied && p.phase !== 'planning' && p.phase !== 'backfilling') copied = Date.now() - t0;
    if (p.phase === 'awaiting_approval') return { gate: p, copied };
    if (p.phase === 'needs_attention' || p.phase === 'failed') throw new Error(`capture bench: the migration stopped in ${p.phase}: ${p.detail}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One migration: start to gate, approval to completion, the final window; with a writer when `perSecond`. */
async function migrate(o: CaptureOptions, name: string, withWriter: boolean) {
  await o.tgt.query('bench', `TRUNCATE ${TABLE}`);
  await o.src.query('bench', `GRANT INSERT, UPDATE, DELETE ON ${TABLE} TO app`);
  const maxId = Number((await o.src.query('bench', `SELECT coalesce(max(id), 0)::bigint AS m FROM ${TABLE}`)).rows[0].m);
  const appUrl = o.src.url('bench').replace(/\/\/postgres:[^@]*@/, '//app:app@');
  const writer = withWriter ? await startWriter(appUrl, TABLE, { perSecond: o.perSecond, firstNewId: maxId + 1, maxId }) : undefined;
  try {
    const t0 = Date.now();
    const h = await o.client.workflow.start(backfillMigration, { taskQueue: o.taskQueue, workflowId: name, args: [spec(o, name)] });
    const { gate, copied } = await gateOf(h, t0);
    const toGate = Date.now() - t0;
    const written = writer?.total() ?? 0;
    const approvedAt = Date.now();
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'bench', digest: gate.digest! }] });
    const r = await h.result();
    const approvalToDone = Date.now() - approvedAt;
    if (r.phase !== 'completed') throw new Error(`capture bench: ${name} ended ${r.phase}: ${r.reason ?? ''}`);
    const done: Progress = await h.query(progressQuery).catch(() => gate);
    const timeline = withWriter ? afterApproval(await h.fetchHistory()) : '';
    const seconds = (Date.now() - t0) / 1000;
    const c = await writer?.stop();
    if (c && c.failed > 0) throw new Error(`capture bench: the writer failed ${c.failed} time(s): ${writer!.lastError()}`);
    const [s, t] = await Promise.all([tableFingerprint(o.src.url('bench'), TABLE), tableFingerprint(o.tgt.url('bench'), TABLE)]);
    if (s.rows !== t.rows || s.md5 !== t.md5) throw new Error(`capture bench: ${name}: the target differs from the source after the switch`);
    return {
      toGate,
      copied,
      approvalToDone,
      freezeToVerdict: r.finalWindow?.ms ?? 0,
      finalWindowRows: r.finalWindow?.rows ?? 0,
      proof: r.finalWindow?.proof ?? '',
      timeline,
      appliedPerSec: (done.capture?.transactions ?? gate.capture?.transactions ?? 0) / seconds,
      writerPerSec: written / (toGate / 1000),
    };
  } finally {
    await writer?.stop();
  }
}

export async function captureBench(o: CaptureOptions): Promise<CaptureResults> {
  await prepare(o);
  const size = (await o.src.query('bench', `SELECT pg_size_pretty(pg_total_relation_size('${TABLE}')) AS s`)).rows[0].s;
  console.log(`  capture: ${o.rows.toLocaleString('en-US')} rows of the writer's table (${size}), a writer at ${o.perSecond} writes/s`);
  const r: CaptureResults = {
    rows: o.rows,
    perSecond: o.perSecond,
    copyPipe: [],
    copiedQuiet: [],
    toGateQuiet: [],
    toGateWriter: [],
    approvalToDone: [],
    freezeToVerdict: [],
    finalWindowRows: [],
    appliedPerSec: [],
    writerPerSec: [],
  };
  for (let run = 1; run <= o.runs; run++) {
    r.copyPipe.push(await copyPipeMs(o));
    const quiet = await migrate(o, `capture-${o.rows}-${run}-quiet`, false);
    r.toGateQuiet.push(quiet.toGate);
    r.copiedQuiet.push(quiet.copied);
    const busy = await migrate(o, `capture-${o.rows}-${run}-writer`, true);
    r.toGateWriter.push(busy.toGate);
    r.approvalToDone.push(busy.approvalToDone);
    r.freezeToVerdict.push(busy.freezeToVerdict);
    r.finalWindowRows.push(busy.finalWindowRows);
    r.appliedPerSec.push(busy.appliedPerSec);
    r.writerPerSec.push(busy.writerPerSec);
    console.log(
      `    run ${run}: COPY ${(r.copyPipe.at(-1)! / 1000).toFixed(2)} s; to the gate ${(quiet.toGate / 1000).toFixed(2)} s quiet, ${(busy.toGate / 1000).toFixed(2)} s with the writer; ` +
        `approval to completion ${(busy.approvalToDone / 1000).toFixed(2)} s (freeze to verdict ${(busy.freezeToVerdict / 1000).toFixed(2)} s, ${busy.finalWindowRows} rows in the window)`,
    );
    if (busy.proof) console.log(`      the final window's proof: ${busy.proof}`);
    console.log(`      after the approval (s: scheduled/started–ended): ${busy.timeline}`);
  }
  return r;
}

const ratios = (a: number[], b: number[]) => a.map((x, i) => x / b[i]);

export function printCapture(all: CaptureResults[]): void {
  for (const r of all) {
    const n = r.rows.toLocaleString('en-US');
    console.log(
      `| ${n}: capture, start to the gate with the writer vs without | ${(median(r.toGateWriter) / 1000).toFixed(2)} s vs ${(median(r.toGateQuiet) / 1000).toFixed(2)} s (${median(ratios(r.toGateWriter, r.toGateQuiet)).toFixed(2)}×) | ≤ 1.5× + a few s |`,
    );
    console.log(
      `| ${n}: capture, approval to completion (freeze, final window, switch), median and 95th percentile of ${r.approvalToDone.length} | ${(median(r.approvalToDone) / 1000).toFixed(2)} s, p95 ${(p95(r.approvalToDone) / 1000).toFixed(2)} s | ≤ 1 s, p95 ≤ 2 s |`,
    );
    console.log(
      `| ${n}: capture, freeze to verdict (the final check) | ${(median(r.freezeToVerdict) / 1000).toFixed(2)} s (${median(r.finalWindowRows)} rows in the window) | |`,
    );
    console.log(
      `| ${n}: capture, transactions applied/s vs the writer's writes/s | ${median(r.appliedPerSec).toFixed(0)} vs ${median(r.writerPerSec).toFixed(0)} | keeps up |`,
    );
    console.log(
      `| ${n}: capture, the backfill (every range copied and proven at the snapshot, no writes) vs bare COPY | ${median(ratios(r.copiedQuiet, r.copyPipe)).toFixed(2)}× (${(median(r.copiedQuiet) / 1000).toFixed(2)} s vs ${(median(r.copyPipe) / 1000).toFixed(2)} s) | ≤ 1.3× |`,
    );
  }
  if (all.length >= 2) {
    const [small, large] = [all[0], all[all.length - 1]];
    console.log(
      `| capture, approval to completion ${large.rows.toLocaleString('en-US')} / ${small.rows.toLocaleString('en-US')} | ${(median(large.approvalToDone) / median(small.approvalToDone)).toFixed(2)} | ≤ 1.5 |`,
    );
  }
}

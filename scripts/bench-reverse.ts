// The way back's part of `npm run bench` (`--only reverse`): per size (`--capture-rows`), a captured
// migration with `cutover.reverse` switched (its approval automatic), then a writer on the target at
// ~150 writes/s (the application moved there), the stream back following it, and the switch back
// approved while the writer goes on: the time from that approval to completion (the target's
// freeze, the stream back to a fence, the final window of the way back, the switch back), median and
// 95th percentile over `--runs` (goal: at most 2 s at every size). The source must equal the target
// after each switch back (md5 of every row), or the bench stops.
import { startWriter, tableFingerprint } from '../src/infra/writer';
import { FILL_WRITER_TABLE, WRITER_TABLE } from '../src/db/demo';
import { progressQuery, switchBackUpdate, type Progress } from '../src/workflows/messages';
import { backfillMigration } from '../src/workflows/migration';
import type { CaptureOptions } from './bench-capture';

export interface ReverseResults {
  rows: number;
  perSecond: number;
  approvalToDone: number[];
  /** target transactions that went back to the source, per second of the writer's writing (the switch back included) */
  appliedPerSec: number[];
}

const TABLE = 'public.reversed';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil(0.95 * xs.length) - 1)];
/** How long the writer writes the target before the switch back is approved. */
const WRITES_BEFORE_MS = 5_000;

const writes = (db: string, verb: 'GRANT' | 'REVOKE') => ({
  connection: db,
  sql: `${verb} INSERT, UPDATE, DELETE ON ${TABLE} ${verb === 'GRANT' ? 'TO' : 'FROM'} app`,
});

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
      approval: 'auto',
      freeze: writes('src', 'REVOKE'),
      unfreeze: writes('src', 'GRANT'),
      switch: writes('tgt', 'GRANT'),
      reverse: { freeze: writes('tgt', 'REVOKE'), unfreeze: writes('tgt', 'GRANT'), switch: writes('src', 'GRANT') },
    },
  };
}

async function prepare(o: CaptureOptions): Promise<void> {
  // The application's role on both servers: it writes the source, then the target, then the source.
  for (const server of [o.src, o.tgt])
    await server.query('bench', `DO $$ BEGIN CREATE ROLE app LOGIN PASSWORD 'app'; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  await o.src.query('bench', `DROP TABLE IF EXISTS ${TABLE}`);
  await o.src.query('bench', WRITER_TABLE(TABLE));
  await o.src.query('bench', FILL_WRITER_TABLE(TABLE, o.rows, 1000));
  await o.src.query('bench', `VACUUM ANALYZE ${TABLE}`);
}

async function until(what: string, ok: () => Promise<boolean>, ms = 600_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`reverse bench: ${what} did not happen within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One run: to the switch, writes on the target, then the switch back under the writer. */
async function run(o: CaptureOptions, name: string): Promise<{ approvalToDone: number; appliedPerSec: number }> {
  // Each run starts where the source is the authority: the application writes it, not the target.
  await o.tgt.query('bench', `DROP TABLE IF EXISTS ${TABLE}`);
  await o.tgt.query('bench', WRITER_TABLE(TABLE));
  await o.tgt.query('bench', `GRANT SELECT ON ${TABLE} TO app`);
  await o.src.query('bench', `GRANT SELECT, INSERT, UPDATE, DELETE ON ${TABLE} TO app`);
  const h = await o.client.workflow.start(backfillMigration, { taskQueue: o.taskQueue, workflowId: name, args: [spec(o, name)] });
  await until('the switch', async () => {
    const p: Progress = await h.query(progressQuery);
    if (p.phase === 'failed' || p.phase === 'needs_attention' || p.phase === 'completed') throw new Error(`reverse bench: ${name} in ${p.phase}: ${p.detail}`);
    return p.phase === 'switched';
  });
  const maxId = Number((await o.tgt.query('bench', `SELECT coalesce(max(id), 0)::bigint AS m FROM ${TABLE}`)).rows[0].m);
  const appUrl = o.tgt.url('bench').replace(/\/\/postgres:[^@]*@/, '//app:app@');
  const writer = await startWriter(appUrl, TABLE, { perSecond: o.perSecond, firstNewId: maxId + 1, maxId });
  try {
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, WRITES_BEFORE_MS));
    const p: Progress = await h.query(progressQuery);
    const approvedAt = Date.now();
    await h.executeUpdate(switchBackUpdate, { args: [{ approver: 'bench', digest: p.reverse!.digest! }] });
    const r = await h.result();
    const approvalToDone = Date.now() - approvedAt;
    // Every target transaction that went back (the result counts them all), over the time the writer wrote.
    const appliedPerSec = (r.reverse?.transactions ?? 0) / ((Date.now() - t0) / 1000);
    if (r.phase !== 'completed' || !r.reverse?.switchedBackAt)
      throw new Error(`reverse bench: ${name} ended ${r.phase} without switching back: ${r.reason ?? ''}`);
    const c = await writer.stop();
    // Refused writes are the freeze of the target; any other failure is the bench's.
    if (c.failed > 0) throw new Error(`reverse bench: the writer failed ${c.failed} time(s): ${writer.lastError()}`);
    const [s, t] = await Promise.all([tableFingerprint(o.src.url('bench'), TABLE), tableFingerprint(o.tgt.url('bench'), TABLE)]);
    if (s.rows !== t.rows || s.md5 !== t.md5) throw new Error(`reverse bench: ${name}: the source differs from the target after the switch back`);
    return { approvalToDone, appliedPerSec };
  } finally {
    await writer.stop();
  }
}

export async function reverseBench(o: CaptureOptions): Promise<ReverseResults> {
  await prepare(o);
  console.log(`  the way back: ${o.rows.toLocaleString('en-US')} rows, a writer on the target at ${o.perSecond} writes/s after the switch`);
  const r: ReverseResults = { rows: o.rows, perSecond: o.perSecond, approvalToDone: [], appliedPerSec: [] };
  for (let i = 1; i <= o.runs; i++) {
    const x = await run(o, `reverse-${o.rows}-${i}`);
    r.approvalToDone.push(x.approvalToDone);
    r.appliedPerSec.push(x.appliedPerSec);
    console.log(
      `    run ${i}: approval of the switch back to completion ${(x.approvalToDone / 1000).toFixed(2)} s; ${x.appliedPerSec.toFixed(0)} target transactions/s went back`,
    );
  }
  return r;
}

export function printReverse(all: ReverseResults[]): void {
  for (const r of all) {
    const n = r.rows.toLocaleString('en-US');
    console.log(
      `| ${n}: the switch back under ${r.perSecond} writes/s on the target, approval to completion, median and 95th percentile of ${r.approvalToDone.length} | ${(median(r.approvalToDone) / 1000).toFixed(2)} s, p95 ${(p95(r.approvalToDone) / 1000).toFixed(2)} s | ≤ 2 s |`,
    );
    console.log(
      `| ${n}: target transactions that went back to the source per second, from the writer's start to the switch back | ${median(r.appliedPerSec).toFixed(0)} (the writer: ${r.perSecond} writes/s; an update or delete of a key that is gone commits no change) | keeps up |`,
    );
  }
}

// Faults injected for real: workers killed with SIGKILL mid-backfill and mid-switch, database
// sessions terminated mid-statement, a PostgreSQL restart; and a user error (a dropped column)
// that must fail the migration loudly instead of retrying forever. Pause and resume on the way.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPostgres, type PostgresServer } from '../src/infra/postgres';
import { closePools } from '../src/db/pools';
import { WorkflowFailedError } from '@temporalio/client';
import { approveCutoverUpdate, pauseSignal, progressQuery, reportQuery, resumeSignal, type MigrationResult } from '../src/workflows/messages';
import type { Report } from '../src/report/model';
import { fingerprint } from './helpers/sample';
import { spawnWorker, startTemporal, waitForPhase, type TemporalHarness, type WorkerProcess } from './helpers/temporal';
import { replayAndMaybeRecord } from './helpers/temporal';

const TASK_QUEUE = 'durability';
let pg: PostgresServer;
let temporal: TemporalHarness;
const workers: WorkerProcess[] = [];

const TABLE = '(id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, note text, at timestamptz NOT NULL)';
const FILL = (n: number) =>
  `INSERT INTO public.orders SELECT g, g / 7.0, 'note ' || md5(g::text), timestamptz '2024-01-01 00:00:00+00' + g * interval '1.5 second' FROM generate_series(1, ${n}) g`;

before(async () => {
  pg = await startPostgres();
  await pg.createDatabase('src');
  await pg.createDatabase('tgt');
  await pg.query('src', `CREATE TABLE public.orders ${TABLE}`);
  await pg.query('src', FILL(300_000));
  for (const t of ['orders_a', 'orders_b', 'orders_c', 'orders_d']) await pg.query('tgt', `CREATE TABLE public.${t} ${TABLE}`);
  await pg.query('tgt', 'CREATE TABLE public.cutover_log (migration text, at timestamptz DEFAULT now())');
  process.env.BACKFILL_DB_SRC = pg.url('src');
  process.env.BACKFILL_DB_TGT = pg.url('tgt');
  // Workers (child processes) inherit this: a copy whose connection died stops waiting quickly.
  process.env.BACKFILL_STALL_TIMEOUT = '5';
  temporal = await startTemporal(TASK_QUEUE, { worker: 'none' });
});

after(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await temporal?.stop();
  await closePools();
  await pg?.stop();
});

const spec = (name: string, target: string, extra: Record<string, unknown> = {}) => ({
  name,
  taskQueue: TASK_QUEUE,
  source: 'src',
  target: 'tgt',
  concurrency: 2,
  tables: [{ source: 'public.orders', target, key: ['id'], chunk: { column: 'id', size: 10_000 } }],
  cutover: { approval: 'required', switch: { connection: 'tgt', sql: `INSERT INTO public.cutover_log (migration) VALUES ('${name}')` } },
  ...extra,
});

async function worker(): Promise<WorkerProcess> {
  const w = await spawnWorker(temporal.address, TASK_QUEUE);
  workers.push(w);
  return w;
}

/** Polls `ok`; a query fails while no live worker has the workflow (right after a kill): poll on. */
const until = async (what: string, ok: () => Promise<boolean>, ms = 120_000) => {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      if (await ok()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
};

async function liveWorker(): Promise<void> {
  if (!workers.some((w) => w.alive())) await worker();
}

test('kill -9: workers killed mid-backfill and mid-switch; a new worker finishes, the target equals the source, the switch ran once', { timeout: 240_000 }, async () => {
  // A slow switch, so the kill lands inside its transaction.
  const s = spec('crash', 'public.orders_a', {
    cutover: { approval: 'required', switch: { connection: 'tgt', sql: `SELECT pg_sleep(3); INSERT INTO public.cutover_log (migration) VALUES ('crash')` } },
  });
  let w = await worker();
  const h = await temporal.env.client.workflow.start('backfillMigration', { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  const verified = async () => (await h.query(progressQuery)).tables[0]?.ranges.verified ?? 0;
  await until('a few ranges', async () => (await verified()) >= 3);
  await w.kill();
  w = await worker();
  let before = 0;
  await until('a query after the crash', async () => ((before = await verified()), true));
  await until('progress after the first crash', async () => (await verified()) >= before + 5);
  await w.kill();
  w = await worker();
  const gate = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(gate.phase, 'awaiting_approval', JSON.stringify(gate));
  assert.equal(gate.tables[0].ranges.verified, 30);
  const report: Report = await h.query(reportQuery);

  // Kill the worker as soon as the switch starts, then let a new one finish it.
  await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'ops', digest: report.digest }] });
  await until('the switch', async () => (await h.query(progressQuery)).phase === 'switching', 30_000);
  await new Promise((r) => setTimeout(r, 1500));
  await w.kill();
  await worker();
  const result = (await h.result()) as MigrationResult;
  assert.equal(result.phase, 'completed');
  assert.deepEqual(await fingerprint(pg, 'tgt', 'public.orders_a'), await fingerprint(pg, 'src', 'public.orders'));
  const log = await pg.query('tgt', `SELECT count(*)::int AS n FROM public.cutover_log WHERE migration = 'crash'`);
  assert.equal(log.rows[0].n, 1, 'the switch ran exactly once');
  const ranges = await pg.query('tgt', `SELECT count(*) FILTER (WHERE status = 'verified')::int AS ok, count(DISTINCT worker)::int AS workers FROM backfill.ranges WHERE migration = 'crash'`);
  assert.equal(ranges.rows[0].ok, 30);
  assert.ok(ranges.rows[0].workers >= 2, 'ranges were finished by more than one worker');
  await replayAndMaybeRecord(h, 'worker-killed-twice');
});

test('killed sessions and a PostgreSQL restart mid-backfill: activities retry, nothing is half-written', { timeout: 180_000 }, async () => {
  await liveWorker();
  const s = spec('sessions', 'public.orders_b', { cutover: { approval: 'auto' } });
  const h = await temporal.env.client.workflow.start('backfillMigration', { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  await until('backfilling', async () => (await h.query(progressQuery)).tables[0]?.ranges.verified >= 2);
  // Terminate every session of ours, on both databases, again and again for a few seconds.
  let terminated = 0;
  const end = Date.now() + 4000;
  while (Date.now() < end) {
    const r = await pg.query('postgres', `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'backfill'`);
    terminated += r.rows[0].n;
    await new Promise((r) => setTimeout(r, 150));
  }
  assert.ok(terminated > 0, 'no session was terminated: the fault was not injected');
  // Then restart the server under the migration.
  await pg.restart();
  const result = (await h.result()) as MigrationResult;
  assert.equal(result.phase, 'completed');
  assert.deepEqual(await fingerprint(pg, 'tgt', 'public.orders_b'), await fingerprint(pg, 'src', 'public.orders'));
  assert.ok(workers.some((w) => w.alive()), 'the worker survived the killed sessions and the restart');
});

test('a user error (a column dropped mid-migration) fails the migration loudly, at once, with the reason; pause and resume work', { timeout: 120_000 }, async () => {
  await liveWorker();
  await pg.query('src', 'CREATE TABLE public.doomed (id bigint PRIMARY KEY, v text)');
  await pg.query('src', `INSERT INTO public.doomed SELECT g, 'v' || g FROM generate_series(1, 50000) g`);
  await pg.query('tgt', 'CREATE TABLE public.doomed (id bigint PRIMARY KEY, v text)');
  const s = { ...spec('doomed', 'public.doomed'), tables: [{ source: 'public.doomed', target: 'public.doomed', key: ['id'], chunk: { column: 'id', size: 5000 } }] };
  const h = await temporal.env.client.workflow.start('backfillMigration', { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  await h.signal(pauseSignal);
  const paused = await waitForPhase(h, ['backfilling']);
  await new Promise((r) => setTimeout(r, 1500));
  const still = await h.query(progressQuery);
  assert.equal(still.paused, true);
  assert.equal(still.tables[0].ranges.verified + still.tables[0].ranges.inFlight, paused.tables[0].ranges.verified + paused.tables[0].ranges.inFlight, 'no range starts while paused');
  assert.equal(still.tables[0].ranges.verified, 0);

  await pg.query('src', 'ALTER TABLE public.doomed DROP COLUMN v');
  const t0 = Date.now();
  await h.signal(resumeSignal);
  await assert.rejects(h.result(), (e: unknown) => e instanceof WorkflowFailedError && /column "v" does not exist/.test(String(e.cause?.message)));
  assert.ok(Date.now() - t0 < 30_000, 'a user error must not be retried');
  const p = await h.query(progressQuery);
  assert.equal(p.phase, 'failed');
  assert.match(p.detail ?? '', /column "v" does not exist/);
});

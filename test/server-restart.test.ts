// The Temporal server itself restarts mid-migration (its state in a SQLite file): the worker
// reconnects by itself and the migration completes. And setConcurrency changes the window live.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { freePort, startPostgres, type PostgresServer } from '../src/infra/postgres';
import { startDevServer } from '../src/infra/temporal';
import { closePools } from '../src/db/pools';
import { progressQuery, setConcurrencySignal, type MigrationResult } from '../src/workflows/messages';
import { fingerprint } from './helpers/sample';
import { spawnWorker, temporalCli, type WorkerProcess } from './helpers/temporal';

const TASK_QUEUE = 'restart';
let pg: PostgresServer;
let env: TestWorkflowEnvironment;
let worker: WorkerProcess;
let port: number;
const dbFilename = join(mkdtempSync(join(tmpdir(), 'backfill-temporal-')), 'temporal.db');

before(async () => {
  temporalCli();
  pg = await startPostgres();
  await pg.createDatabase('src');
  await pg.createDatabase('tgt');
  await pg.query('src', 'CREATE TABLE public.t (id bigint PRIMARY KEY, v text, n numeric)');
  await pg.query('src', `INSERT INTO public.t SELECT g, md5(g::text), g / 3.0 FROM generate_series(1, 200000) g`);
  for (const x of ['a', 'b']) await pg.query('tgt', `CREATE TABLE public.t_${x} (id bigint PRIMARY KEY, v text, n numeric)`);
  process.env.BACKFILL_DB_SRC = pg.url('src');
  process.env.BACKFILL_DB_TGT = pg.url('tgt');
  port = await freePort();
  env = await startDevServer({ dbFilename, port });
  worker = await spawnWorker(env.address, TASK_QUEUE);
});

after(async () => {
  await worker?.stop();
  await env?.teardown().catch(() => undefined);
  await closePools();
  await pg?.stop();
});

const spec = (name: string, target: string, concurrency: number) => ({
  name,
  taskQueue: TASK_QUEUE,
  source: 'src',
  target: 'tgt',
  concurrency,
  tables: [{ source: 'public.t', target, key: ['id'], chunk: { column: 'id', size: 5000 } }],
  cutover: { approval: 'auto' },
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the Temporal server restarts mid-migration; the worker reconnects and the migration completes', { timeout: 240_000 }, async () => {
  const s = spec('survives-restart', 'public.t_a', 2);
  await env.client.workflow.start('backfillMigration', { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  for (let i = 0; i < 600; i++) {
    const p = await env.client.workflow.getHandle(s.name).query(progressQuery).catch(() => undefined);
    if (p && p.tables[0]?.ranges.verified >= 3) break;
    await sleep(100);
  }
  await env.teardown();
  await sleep(1500);
  env = await startDevServer({ dbFilename, port });
  const result = (await env.client.workflow.getHandle(s.name).result()) as MigrationResult;
  assert.equal(result.phase, 'completed');
  assert.deepEqual(await fingerprint(pg, 'tgt', 'public.t_a'), await fingerprint(pg, 'src', 'public.t'));
  assert.ok(worker.alive(), 'the same worker process carried on');
});

test('setConcurrency widens the window of a running migration, and the window is never exceeded', { timeout: 120_000 }, async () => {
  const s = spec('window', 'public.t_b', 1);
  const h = await env.client.workflow.start('backfillMigration', { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  let maxBefore = 0;
  let maxAfter = 0;
  let widened = false;
  for (let i = 0; i < 2000; i++) {
    const p = await h.query(progressQuery).catch(() => undefined);
    if (p?.phase === 'completed' || p?.phase === 'awaiting_approval') break;
    if (p && p.tables.length) {
      const inFlight = p.tables[0].ranges.inFlight;
      assert.ok(inFlight <= p.concurrency, `${inFlight} ranges in flight with a window of ${p.concurrency}`);
      if (!widened) maxBefore = Math.max(maxBefore, inFlight);
      else maxAfter = Math.max(maxAfter, inFlight);
      if (!widened && p.tables[0].ranges.verified >= 2) {
        await h.signal(setConcurrencySignal, { value: 3 });
        widened = true;
      }
    }
    await sleep(20);
  }
  const result = (await h.result()) as MigrationResult;
  assert.equal(result.phase, 'completed');
  assert.equal(maxBefore, 1);
  assert.ok(maxAfter >= 2, `after setConcurrency 3, at most ${maxAfter} range(s) were seen in flight`);
  assert.deepEqual(await fingerprint(pg, 'tgt', 'public.t_b'), await fingerprint(pg, 'src', 'public.t'));
});

// The Temporal server itself restarts mid-migration (its state in a SQLite file): the worker
// reconnects by itself and the migration completes. And setConcurrency changes the window live.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { freePort } from '../src/infra/postgres';
import { startDevServer } from '../src/infra/temporal';
import { progressQuery, setConcurrencySignal, type MigrationResult } from '../src/workflows/messages';
import { backfillMigration } from '../src/workflows/migration';
import { fingerprint } from './helpers/sample';
import { spawnWorker, temporalCli, type WorkerProcess } from './helpers/temporal';
import { onTeardown, setup, useDatabases } from './hooks';
import { specFor } from './helpers/spec';

const TASK_QUEUE = 'restart';
let env: TestWorkflowEnvironment;
let worker: WorkerProcess;
let port: number;
let dbFilename: string;

// The databases from the shared stack; the dev server is this file's own, on a port and a SQLite
// file (in the stack's temporary folder) it can be restarted on.
const dbs = useDatabases(async (db) => {
  await db.query('src', 'CREATE TABLE public.t (id bigint PRIMARY KEY, v text, n numeric)');
  await db.query('src', `INSERT INTO public.t SELECT g, md5(g::text), g / 3.0 FROM generate_series(1, 200000) g`);
  for (const x of ['a', 'b']) await db.query('tgt', `CREATE TABLE public.t_${x} (id bigint PRIMARY KEY, v text, n numeric)`);
});

setup(async () => {
  temporalCli();
  dbFilename = join(dbs.dir, 'temporal.db');
  port = await freePort();
  onTeardown(async () => {
    await worker?.stop();
    await env?.teardown().catch(() => undefined);
  });
  env = await startDevServer({ dbFilename, port });
  worker = await spawnWorker(env.address, TASK_QUEUE);
});

const spec = (name: string, target: string, concurrency: number) =>
  specFor(name, { source: 'public.t', target, chunk: { column: 'id', size: 5000 } }, { taskQueue: TASK_QUEUE, concurrency, cutover: { approval: 'auto' } });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the Temporal server restarts mid-migration; the worker reconnects and the migration completes', { timeout: 240_000 }, async () => {
  const s = spec('survives-restart', 'public.t_a', 2);
  await env.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  for (let i = 0; i < 600; i++) {
    const p = await env.client.workflow
      .getHandle(s.name)
      .query(progressQuery)
      .catch(() => undefined);
    if (p && p.tables[0]?.ranges.verified >= 3) break;
    await sleep(100);
  }
  await env.teardown();
  await sleep(1500);
  env = await startDevServer({ dbFilename, port });
  const result = (await env.client.workflow.getHandle(s.name).result()) as MigrationResult;
  assert.equal(result.phase, 'completed');
  assert.deepEqual(await fingerprint(dbs.pg, 'tgt', 'public.t_a'), await fingerprint(dbs.pg, 'src', 'public.t'));
  assert.ok(worker.alive(), 'the same worker process carried on');
});

test('setConcurrency widens the window of a running migration, and the window is never exceeded', { timeout: 120_000 }, async () => {
  const s = spec('window', 'public.t_b', 1);
  const h = await env.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
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
  const result = await h.result();
  assert.equal(result.phase, 'completed');
  assert.equal(maxBefore, 1);
  assert.ok(maxAfter >= 2, `after setConcurrency 3, at most ${maxAfter} range(s) were seen in flight`);
  assert.deepEqual(await fingerprint(dbs.pg, 'tgt', 'public.t_b'), await fingerprint(dbs.pg, 'src', 'public.t'));
});

// The Temporal server itself restarts mid-migration (its state in a SQLite file), with copies held in
// flight across it (test/helpers/fault-points.ts): the worker reconnects by itself, those copies
// complete after it, and the migration completes. And setConcurrency changes the window live.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createServer } from 'node:net';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowHandle } from '@temporalio/client';
import { freePort } from '../src/infra/postgres';
import { startDevServer } from '../src/infra/temporal';
import { progressQuery, setConcurrencySignal, type MigrationResult } from '../src/workflows/messages';
import { backfillMigration } from '../src/workflows/migration';
import { fingerprint } from './helpers/sample';
import { spawnWorker, temporalCli, type WorkerProcess } from './helpers/temporal';
import { onTeardown, setup, useDatabases } from './hooks';
import { specFor } from './helpers/spec';
import { activityRuns, holdEvery, tableGate, until } from './helpers/fault-points';

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

/** Nothing listens on `port` (127.0.0.1) any more. */
const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });

test(
  'the Temporal server restarts with copies in flight (held across it); the worker reconnects, those copies complete after it and the migration completes',
  { timeout: 240_000 },
  async () => {
    const s = spec('survives-restart', 'public.t_a', 2);
    let h: WorkflowHandle = await env.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
    await until('a few ranges verified', async () => (await h.query(progressQuery)).tables[0]?.ranges.verified >= 3);
    // The copies in flight held at a gate on the target table: they started before the restart and
    // cannot finish until the gate opens, after it.
    const gate = await tableGate(dbs.pg, 'tgt', 'public.t_a');
    const held = await holdEvery(h, gate, 'copyRange');
    const before = (await h.query(progressQuery)).tables[0].ranges;
    await env.teardown();
    await until('the server stopped (its port free)', () => portFree(port), 30_000);
    env = await startDevServer({ dbFilename, port });
    h = env.client.workflow.getHandle(s.name);
    await gate.open();
    const result = (await h.result()) as MigrationResult;
    assert.equal(result.phase, 'completed');
    assert.deepEqual(await fingerprint(dbs.pg, 'tgt', 'public.t_a'), await fingerprint(dbs.pg, 'src', 'public.t'));
    assert.ok(worker.alive(), 'the same worker process carried on');
    // Work in flight across the restart: ranges verified before it and after it, and the copies held
    // across it completed (the history the restarted server kept has their completion).
    assert.ok(before.verified >= 3 && before.verified + held.length <= before.total, JSON.stringify(before));
    assert.equal((await h.query(progressQuery)).tables[0].ranges.verified, before.total);
    const runs = new Map((await activityRuns(h)).map((r) => [r.id, r]));
    for (const r of held)
      assert.ok(runs.get(r.id)?.completed, `the copy ${r.id} (range ${String(r.input.rangeIndex)}) held across the restart completed after it`);
  },
);

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

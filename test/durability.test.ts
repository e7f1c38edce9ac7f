// Faults injected for real: workers killed with SIGKILL mid-backfill, mid-switch, and while
// verifying, locating and reconciling; database sessions terminated mid-statement, a PostgreSQL
// restart; and a user error (a dropped column) that must fail the migration loudly instead of
// retrying forever. Pause and resume on the way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backfillMigration } from '../src/workflows/migration';
import { WorkflowFailedError } from '@temporalio/client';
import { abortSignal, approveCutoverUpdate, pauseSignal, progressQuery, reportQuery, resumeSignal } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { fingerprint } from './helpers/sample';
import { waitForPhase } from './helpers/temporal';
import { endingOf, replayAndMaybeRecord } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';
import { assertRetried, holdActivity, tableGate, until } from './helpers/fault-points';

const TASK_QUEUE = 'durability';

const TABLE = '(id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, note text, at timestamptz NOT NULL)';
const FILL = (n: number) =>
  `INSERT INTO public.orders SELECT g, g / 7.0, 'note ' || md5(g::text), timestamptz '2024-01-01 00:00:00+00' + g * interval '1.5 second' FROM generate_series(1, ${n}) g`;

const stack = useStack(
  TASK_QUEUE,
  async (db) => {
    await db.query('src', `CREATE TABLE public.orders ${TABLE}`);
    await db.query('src', FILL(300_000));
    for (const t of ['orders_a', 'orders_b', 'orders_c', 'orders_d', 'orders_e']) await db.query('tgt', `CREATE TABLE public.${t} ${TABLE}`);
    await db.query('tgt', 'CREATE TABLE public.cutover_log (migration text, at timestamptz DEFAULT now())');
  },
  // Workers (child processes) inherit BACKFILL_STALL_TIMEOUT: a copy whose connection died stops waiting quickly.
  { worker: 'none', env: { BACKFILL_STALL_TIMEOUT: '5' } },
);

const spec = (name: string, target: string, extra: Record<string, unknown> = {}) =>
  specFor(
    name,
    { source: 'public.orders', target, chunk: { column: 'id', size: 10_000 } },
    {
      taskQueue: TASK_QUEUE,
      concurrency: 2,
      cutover: { approval: 'required', switch: { connection: 'tgt', sql: `INSERT INTO public.cutover_log (migration) VALUES ('${name}')` } },
      ...extra,
    },
  );

const worker = () => stack.spawnWorker();

async function liveWorker(): Promise<void> {
  if (!stack.workers.some((w) => w.alive())) await worker();
}

test(
  'kill -9: workers killed mid-backfill and mid-switch; a new worker finishes, the target equals the source, the switch ran once',
  { timeout: 240_000 },
  async () => {
    // A slow switch, so the kill lands inside its transaction.
    const s = spec('crash', 'public.orders_a', {
      cutover: { approval: 'required', switch: { connection: 'tgt', sql: `SELECT pg_sleep(3); INSERT INTO public.cutover_log (migration) VALUES ('crash')` } },
    });
    let w = await worker();
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
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
    const result = await h.result();
    assert.equal(result.phase, 'completed');
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'public.orders_a'), await fingerprint(stack.pg, 'src', 'public.orders'));
    const log = await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM public.cutover_log WHERE migration = 'crash'`);
    assert.equal(log.rows[0].n, 1, 'the switch ran exactly once');
    const ranges = await stack.pg.query(
      'tgt',
      `SELECT count(*) FILTER (WHERE status = 'verified')::int AS ok, count(DISTINCT worker)::int AS workers FROM backfill.ranges WHERE migration = 'crash'`,
    );
    assert.equal(ranges.rows[0].ok, 30);
    assert.ok(ranges.rows[0].workers >= 2, 'ranges were finished by more than one worker');
    await replayAndMaybeRecord(h, 'worker-killed-twice');
  },
);

test(
  'kill -9 while verifying, locating and reconciling (verify mode): new workers finish; each fault is located once, exactly',
  { timeout: 300_000 },
  async () => {
    // A target loaded by hand, with one changed row in each of three ranges.
    await stack.pg.query('tgt', FILL(300_000).replace('public.orders', 'public.orders_e'));
    const faults = ['45005', '155005', '255005'];
    await stack.pg.query('tgt', 'UPDATE public.orders_e SET amount = amount + 1 WHERE id = ANY ($1::bigint[])', [faults]);
    const s = { ...spec('verify-crash', 'public.orders_e'), mode: 'verify', retries: { rangeAttempts: 1 } };
    await Promise.all(stack.workers.map((w) => w.stop()));
    let w = await worker();
    // Each kill lands while an activity of that kind is in flight, stopped at the gate mid-statement.
    const gate = await tableGate(stack.pg, 'tgt', 'public.orders_e');
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
    const killed: string[] = [];
    for (const type of ['verifyRange', 'locateRange', 'reconcileTable']) {
      await holdActivity(h, gate, type);
      await w.kill();
      killed.push(type);
      w = await worker();
    }
    await gate.open();

    const p = await waitForPhase(h, ['needs_attention', 'awaiting_approval', 'failed']);
    assert.equal(p.phase, 'needs_attention', JSON.stringify(p));
    const report: Report = await h.query(reportQuery);
    const t = report.tables[0];
    const red = t.ranges.filter((r) => r.status !== 'verified');
    assert.deepEqual(
      red.map((r) => r.index),
      [4, 15, 25],
    );
    assert.deepEqual(
      red.flatMap((r) => r.keys.changed.map((k) => k[0])),
      faults,
    );
    assert.deepEqual(
      red.map((r) => r.changedColumns),
      [{ amount: 1 }, { amount: 1 }, { amount: 1 }],
    );
    assert.ok(
      red.every((r) => r.missing === 0 && r.extra === 0 && r.changed === 1),
      JSON.stringify(red),
    );
    const diff = await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM backfill.differences WHERE migration = 'verify-crash'`);
    assert.equal(diff.rows[0].n, 3, 'each difference is stored once, however often its range was located');
    const ledger = await stack.pg.query(
      'tgt',
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'verified')::int AS ok FROM backfill.ranges WHERE migration = 'verify-crash'`,
    );
    assert.deepEqual(ledger.rows[0], { n: 30, ok: 27 });

    // Proof the kills interrupted each kind: a later attempt of it completed.
    await assertRetried(h, killed);
    await h.signal(abortSignal, { reason: 'the test is done' });
    assert.equal((await endingOf(h)).phase, 'aborted');
    await replayAndMaybeRecord(h, 'verify-killed-verifying-locating-reconciling');
  },
);

test('killed sessions and a PostgreSQL restart mid-backfill: activities retry, nothing is half-written', { timeout: 180_000 }, async () => {
  await liveWorker();
  const s = spec('sessions', 'public.orders_b', { cutover: { approval: 'auto' } });
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  await until('backfilling', async () => (await h.query(progressQuery)).tables[0]?.ranges.verified >= 2);
  // Terminate every session of ours, on both databases, again and again for a few seconds.
  let terminated = 0;
  const end = Date.now() + 4000;
  while (Date.now() < end) {
    const r = await stack.pg.query('postgres', `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'backfill'`);
    terminated += r.rows[0].n;
    await new Promise((r) => setTimeout(r, 150));
  }
  assert.ok(terminated > 0, 'no session was terminated: the fault was not injected');
  // Then restart the server under the migration.
  await stack.pg.restart();
  const result = await h.result();
  assert.equal(result.phase, 'completed');
  assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'public.orders_b'), await fingerprint(stack.pg, 'src', 'public.orders'));
  assert.ok(
    stack.workers.some((w) => w.alive()),
    'the worker survived the killed sessions and the restart',
  );
});

test(
  'a user error (a column dropped mid-migration) fails the migration loudly, at once, with the reason; pause and resume work',
  { timeout: 120_000 },
  async () => {
    await liveWorker();
    await stack.pg.query('src', 'CREATE TABLE public.doomed (id bigint PRIMARY KEY, v text)');
    await stack.pg.query('src', `INSERT INTO public.doomed SELECT g, 'v' || g FROM generate_series(1, 50000) g`);
    await stack.pg.query('tgt', 'CREATE TABLE public.doomed (id bigint PRIMARY KEY, v text)');
    const s = {
      ...spec('doomed', 'public.doomed'),
      tables: [{ source: 'public.doomed', target: 'public.doomed', key: ['id'], chunk: { column: 'id', size: 5000 } }],
    };
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
    await h.signal(pauseSignal);
    const paused = await waitForPhase(h, ['backfilling']);
    await new Promise((r) => setTimeout(r, 1500));
    const still = await h.query(progressQuery);
    assert.equal(still.paused, true);
    assert.equal(
      still.tables[0].ranges.verified + still.tables[0].ranges.inFlight,
      paused.tables[0].ranges.verified + paused.tables[0].ranges.inFlight,
      'no range starts while paused',
    );
    assert.equal(still.tables[0].ranges.verified, 0);

    await stack.pg.query('src', 'ALTER TABLE public.doomed DROP COLUMN v');
    const t0 = Date.now();
    await h.signal(resumeSignal);
    await assert.rejects(h.result(), (e: unknown) => e instanceof WorkflowFailedError && /column "v" does not exist/.test(String(e.cause?.message)));
    assert.ok(Date.now() - t0 < 30_000, 'a user error must not be retried');
    const p = await h.query(progressQuery);
    assert.equal(p.phase, 'failed');
    assert.match(p.detail ?? '', /column "v" does not exist/);
    // The ledger keeps it, beyond Temporal's retention: on the range that hit it.
    const kept = await stack.pg.query('tgt', `SELECT status, last_error FROM backfill.ranges WHERE migration = $1 AND last_error IS NOT NULL`, [s.name]);
    assert.ok(kept.rows.length >= 1, 'the failure is on a range row');
    assert.match(String(kept.rows[0].last_error), /column "v" does not exist/);
  },
);

// Faults injected for real: workers killed with SIGKILL mid-backfill, mid-switch, and while
// verifying, locating and reconciling; database sessions terminated mid-statement, a PostgreSQL
// restart; and a user error (a dropped column) that must fail the migration loudly instead of
// retrying forever. Pause and resume on the way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pgLib from 'pg';
import type { WorkflowHandle } from '@temporalio/client';
import { backfillMigration } from '../src/workflows/migration';
import { WorkflowFailedError } from '@temporalio/client';
import { abortSignal, approveCutoverUpdate, pauseSignal, progressQuery, reportQuery, resumeSignal } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { fingerprint } from './helpers/sample';
import { waitForPhase } from './helpers/temporal';
import { endingOf, replayAndMaybeRecord } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';

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

/**
 * Stops every statement on a target table at a moment the test chooses: an ACCESS EXCLUSIVE lock
 * held in an open transaction. `step` lets each statement already waiting run (a new lock is queued
 * behind them first), so a multi-statement activity advances one statement at a time.
 */
async function tableGate(db: string, table: string) {
  const open = async () => {
    const c = new pgLib.Client({ connectionString: stack.pg.url(db) });
    await c.connect();
    await c.query('BEGIN');
    return c;
  };
  let holder = await open();
  await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  let since = String((await holder.query('SELECT clock_timestamp()::text AS t')).rows[0].t);
  return {
    /** our sessions waiting on the gate that started after the last step (not a killed worker's) */
    async waiting(): Promise<number> {
      const r = await stack.pg.query(
        'postgres',
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'backfill' AND wait_event_type = 'Lock' AND query_start > $1::timestamptz`,
        [since],
      );
      return r.rows[0].n;
    },
    async step(): Promise<void> {
      const next = await open();
      since = String((await next.query('SELECT clock_timestamp()::text AS t')).rows[0].t);
      const granted = next.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      // Queued behind the waiting statements before the old lock goes.
      await until(
        'the next lock queued',
        async () =>
          (
            await stack.pg.query('postgres', `SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1 AND NOT granted`, [
              (next as unknown as { processID: number }).processID,
            ])
          ).rows[0].n > 0,
        10_000,
      );
      await holder.query('COMMIT');
      await holder.end();
      await granted;
      holder = next;
    },
    async open(): Promise<void> {
      await holder.query('COMMIT');
      await holder.end();
    },
  };
}

/** The activities of a type the server sees started and not yet finished. */
async function started(h: WorkflowHandle, type: string): Promise<number> {
  const d = await h.describe();
  return (d.raw.pendingActivities ?? []).filter((a) => a.activityType?.name === type && Number(a.state) === 2).length;
}

/** Steps the gate until an activity of `type` is started while a statement waits at the gate. */
async function stepUntilBlocked(h: WorkflowHandle, gate: Awaited<ReturnType<typeof tableGate>>, type: string): Promise<void> {
  const end = Date.now() + 120_000;
  for (;;) {
    assert.ok(Date.now() < end, `no ${type} activity was stopped by the gate`);
    // Whatever runs now waits at the gate within a moment (a retry after a kill within the heartbeat timeout).
    await until('a statement waiting at the gate', async () => (await gate.waiting()) > 0, 30_000);
    if ((await started(h, type)) > 0) return;
    await gate.step();
  }
}

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
    const gate = await tableGate('tgt', 'public.orders_e');
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
    const killed: string[] = [];
    for (const type of ['verifyRange', 'locateRange', 'reconcileTable']) {
      await stepUntilBlocked(h, gate, type);
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
    const history = await h.fetchHistory();
    const scheduled = new Map<string, string>();
    const retried = new Set<string>();
    for (const e of history.events ?? []) {
      const a = e.activityTaskScheduledEventAttributes;
      if (a) scheduled.set(String(e.eventId), a.activityType?.name ?? '');
      const st = e.activityTaskStartedEventAttributes;
      if (st && (st.attempt ?? 1) > 1) retried.add(scheduled.get(String(st.scheduledEventId)) ?? '');
    }
    for (const type of killed) assert.ok(retried.has(type), `no ${type} was retried after the kill: ${[...retried].join(', ')}`);
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

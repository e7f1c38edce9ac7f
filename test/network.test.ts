// Network faults between the worker and PostgreSQL, injected for real while a migration runs: a TCP
// proxy in front of each database (the worker only knows the proxies) adds latency, resets every
// connection, goes silent for longer than the stall guard and the silence deadline (a blackhole:
// connections neither answer nor close), and cuts connections mid-COPY. After healing, each migration completes green,
// the target equals the source row for row, every range in the ledger is proven, and Temporal's
// history shows the attempts that failed on the network and were retried.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { WorkflowHandle, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { poolFor } from '../src/db/pools';
import { backfillMigration } from '../src/workflows/migration';
import { progressQuery, type MigrationResult } from '../src/workflows/messages';
import { fingerprint } from './helpers/sample';
import { startProxy, type FaultProxy } from './helpers/proxy';
import { onTeardown, setup, useStack } from './hooks';
import { specFor } from './helpers/spec';

const TASK_QUEUE = 'network';
const ROWS = 250_000;
const CHUNK = 10_000;
const RANGES = ROWS / CHUNK;
// The worker's guards, short for the test: a COPY with no byte for 5 s is abandoned; a plain query
// unanswered for statement_timeout + 5 s (10 s) means a dead connection (src/db/pools.ts).
const STALL_S = 5;
const STATEMENT_TIMEOUT_S = 5;
const SILENCE_MS = STATEMENT_TIMEOUT_S * 1000 + 5000;
// Longer than both guards: they must fire while the network is still down.
const BLACKHOLE_MS = SILENCE_MS + 4000;

let src: FaultProxy;
let tgt: FaultProxy;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const TABLE = '(id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, note text, at timestamptz NOT NULL)';

const stack = useStack(
  TASK_QUEUE,
  async (server) => {
    await server.query('src', `CREATE TABLE public.orders ${TABLE}`);
    await server.query(
      'src',
      `INSERT INTO public.orders SELECT g, g / 7.0, CASE WHEN g % 11 = 0 THEN NULL ELSE 'note ' || md5(g::text) END,
                timestamptz '2024-01-01 00:00:00+00' + g * interval '1.5 second' FROM generate_series(1, ${ROWS}) g`,
    );
    for (const t of ['latency', 'resets', 'blackhole', 'capped']) await server.query('tgt', `CREATE TABLE public.orders_${t} ${TABLE}`);
    src = await startProxy({ port: server.port });
    tgt = await startProxy({ port: server.port });
  },
  // The worker (a child process) inherits BACKFILL_DB_*: it reaches the databases only through the proxies.
  {
    urlFor: (alias, url) => (alias === 'src' ? src : tgt).url(url),
    worker: 'none',
    env: { BACKFILL_STALL_TIMEOUT: String(STALL_S), BACKFILL_STATEMENT_TIMEOUT: `${STATEMENT_TIMEOUT_S}s` },
  },
);

setup(async () => {
  // Closing the proxies resets every connection through them: after a failed test, whatever still
  // hangs on one (a query, a worker's activity) fails now instead of hanging the clean-up too. So
  // they close first, then the worker stops (killed if it cannot), then the stack.
  onTeardown(async () => {
    await src?.close();
    await tgt?.close();
  });
  await stack.spawnWorker();
});

function start(name: string, target: string): Promise<WorkflowHandleWithFirstExecutionRunId> {
  const spec = specFor(
    name,
    { source: 'public.orders', target, chunk: { column: 'id', size: CHUNK } },
    { taskQueue: TASK_QUEUE, mode: 'copy', concurrency: 2, cutover: { approval: 'auto' } },
  );
  return stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: name, args: [spec] });
}

async function verified(h: WorkflowHandle): Promise<number> {
  const p = await h.query(progressQuery).catch(() => undefined);
  return p?.tables[0]?.ranges.verified ?? 0;
}

async function untilVerified(h: WorkflowHandle, n: number, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while ((await verified(h)) < n) {
    if (Date.now() > end) throw new Error(`fewer than ${n} ranges verified after ${ms} ms`);
    await sleep(100);
  }
}

/**
 * Every activity attempt after the first, with the failure that caused it: Temporal records the
 * attempt number and the previous attempt's failure on the started event of the attempt that
 * finished. Walks the whole chain of runs (the workflow may continue as new).
 */
async function retries(h: WorkflowHandleWithFirstExecutionRunId): Promise<string[]> {
  const out: string[] = [];
  let runId: string | undefined = h.firstExecutionRunId;
  while (runId) {
    const history: Awaited<ReturnType<WorkflowHandle['fetchHistory']>> = await stack.client.workflow.getHandle(h.workflowId, runId).fetchHistory();
    const events = history.events ?? [];
    for (const e of events) {
      const s = e.activityTaskStartedEventAttributes;
      if (s && (s.attempt ?? 1) > 1) out.push(`attempt ${s.attempt}: ${s.lastFailure?.message}`);
    }
    const next: string | null | undefined = events[events.length - 1]?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
    runId = next ?? undefined;
  }
  console.log(`# ${h.workflowId}: ${out.length} attempt(s) retried${out.length ? `: ${[...new Set(out)].join(' | ')}` : ''}`);
  return out;
}

/** Completed, green, the target equal to the source (an md5 per row, summed), every range proven in the ledger. */
async function assertComplete(h: WorkflowHandle, target: string): Promise<void> {
  const result = (await h.result()) as MigrationResult;
  assert.equal(result.phase, 'completed', JSON.stringify(result));
  assert.equal(result.verdict, 'green', JSON.stringify(result));
  assert.deepEqual(await fingerprint(stack.pg, 'tgt', target), await fingerprint(stack.pg, 'src', 'public.orders'));
  const ledger = await stack.pg.query(
    'tgt',
    `SELECT count(*)::int AS ranges,
            count(*) FILTER (WHERE status = 'verified' AND source_count = target_count AND source_checksum = target_checksum)::int AS proven,
            sum(target_count)::int AS rows
       FROM backfill.ranges WHERE migration = $1`,
    [h.workflowId],
  );
  assert.deepEqual(ledger.rows[0], { ranges: RANGES, proven: RANGES, rows: ROWS });
}

/** One `SELECT 1` through a proxy on a fresh connection, timed (the connection set-up is not). */
async function roundTrip(p: FaultProxy, database: string): Promise<number> {
  const c = new pg.Client({ connectionString: p.url(stack.pg.url(database)) });
  await c.connect();
  try {
    const t0 = Date.now();
    await c.query('SELECT 1');
    return Date.now() - t0;
  } finally {
    await c.end();
  }
}

test('50 ms of latency each way mid-backfill: slower, but nothing fails and nothing is retried', { timeout: 120_000 }, async () => {
  const h = await start('latency', 'public.orders_latency');
  await untilVerified(h, 3);
  src.latency(50);
  tgt.latency(50);
  const rtt = await roundTrip(src, 'src');
  // A range started and verified while the latency holds (its first statement after it was set).
  await untilVerified(h, (await verified(h)) + 2);
  src.heal();
  tgt.heal();
  assert.ok(rtt >= 100, `a round trip took ${rtt} ms: the latency was not injected`);
  await assertComplete(h, 'public.orders_latency');
  assert.deepEqual(await retries(h), [], 'latency must not be mistaken for a dead connection');
});

test('every connection reset (RST) again and again mid-backfill: activities retry on new connections', { timeout: 120_000 }, async () => {
  const h = await start('resets', 'public.orders_resets');
  await untilVerified(h, 3);
  const accepted = src.stats().accepted + tgt.stats().accepted;
  let killed = 0;
  for (let i = 0; i < 6; i++) {
    killed += src.reset() + tgt.reset();
    await sleep(500);
  }
  assert.ok(killed >= 6, `only ${killed} connections were reset`);
  await assertComplete(h, 'public.orders_resets');
  assert.ok(src.stats().accepted + tgt.stats().accepted > accepted, 'no new connection after the resets');
  const retried = await retries(h);
  assert.ok(
    retried.some((r) => /ECONNRESET|Connection terminated|reset/i.test(r)),
    `no attempt retried after a reset: ${JSON.stringify(retried)}`,
  );
});

test('a blackhole longer than the stall guard mid-backfill: silent connections are given up while it lasts, none hangs', { timeout: 120_000 }, async () => {
  const h = await start('blackhole', 'public.orders_blackhole');
  // A pool of this process, through the same proxy, with a connection open before the blackhole:
  // its plain query must fail on the client's silence deadline, not wait forever.
  const probePool = poolFor('src', 'read');
  await probePool.query('SELECT 1');
  await untilVerified(h, 3);
  const t0 = Date.now();
  src.blackhole(true);
  tgt.blackhole(true);
  const probe = probePool.query('SELECT 1').then(
    () => ({ ok: true, ms: Date.now() - t0, message: '' }),
    (e: Error) => ({ ok: false, ms: Date.now() - t0, message: e.message }),
  );
  const before = await verified(h);
  // Still dark, past the stall guard and the silence deadline: every range in flight has given up
  // on its connection by itself (nothing from the network told it) and is being retried.
  await sleep(SILENCE_MS + 2500);
  const pending = ((await h.describe()).raw.pendingActivities ?? []).map((a) => ({
    activity: a.activityType?.name,
    attempt: a.attempt ?? 1,
    failure: a.lastFailure?.message,
  }));
  await sleep(BLACKHOLE_MS - (Date.now() - t0));
  const caught = src.stats().stale + tgt.stats().stale;
  const stuck = (await verified(h)) - before;
  src.heal();
  tgt.heal();
  const healedAt = Date.now() - t0;

  // Every connection the blackhole left half-open is dropped by its client: a COPY by the stall
  // guard, a query by the silence deadline, a connection opened in the dark by the connect timeout.
  while (src.stats().staleOpen + tgt.stats().staleOpen > 0) await sleep(100);
  const noticed = Date.now() - t0;
  await untilVerified(h, (await verified(h)) + 1);
  const resumed = Date.now() - t0;
  console.log(`# blackhole ${healedAt} ms; in flight at ${SILENCE_MS + 2500} ms: ${JSON.stringify(pending)}`);
  console.log(`# every half-open connection dropped at ${noticed} ms; a range verified again at ${resumed} ms`);

  const p = await probe;
  assert.equal(p.ok, false, 'a query through the blackhole succeeded');
  assert.match(p.message, /presumed dead/);
  assert.ok(p.ms >= SILENCE_MS - 500, `the probe query gave up after ${p.ms} ms, before its deadline of ${SILENCE_MS} ms`);
  assert.ok(caught > 0, 'the blackhole caught no live connection');
  assert.ok(stuck <= 2, `${stuck} ranges completed during the blackhole`);
  assert.ok(pending.length >= 1, 'no activity in flight during the blackhole');
  for (const a of pending) assert.ok(a.attempt >= 2, `still on its first attempt ${SILENCE_MS + 2500} ms into the blackhole: ${JSON.stringify(a)}`);
  await assertComplete(h, 'public.orders_blackhole');
  const retried = await retries(h);
  assert.ok(
    retried.some((r) => /stalled|presumed dead|timeout/i.test(r)),
    `no attempt retried after the blackhole: ${JSON.stringify(retried)}`,
  );
});

test('connections cut by a byte cap mid-COPY: the cut ranges are copied again, nothing half-written', { timeout: 120_000 }, async () => {
  const h = await start('capped', 'public.orders_capped');
  await untilVerified(h, 3);
  // A range's COPY out of the source is about 0.8 MB: each source connection is cut during its
  // second COPY (only a COPY sends this much from the server).
  src.byteCap(1_000_000);
  const t0 = Date.now();
  while (src.stats().capped < 3 && Date.now() - t0 < 20_000) await sleep(100);
  src.heal();
  assert.ok(src.stats().capped >= 1, 'no connection was cut by the byte cap');
  await assertComplete(h, 'public.orders_capped');
  const retried = await retries(h);
  assert.ok(
    retried.some((r) => /ECONNRESET|Connection terminated|reset/i.test(r)),
    `no attempt retried after a cut: ${JSON.stringify(retried)}`,
  );
});

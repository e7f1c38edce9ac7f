// Prometheus metrics, scraped over HTTP from a real worker (`backfill worker` in its own process,
// with BACKFILL_METRICS_ADDRESS; the SDK's runtime can be installed once per process) while real
// migrations run: a static one and a live one, paused in the middle of its backfill and written to
// while paused so that catch-up has rows to apply. What the endpoint says must be what the
// migrations did: rows copied and verified, ranges by status, the phase, catch-up, durations; a copy
// that fails once (its target raises a serialization failure, for real) shows as a failed and a
// retried copyRange, and runs without a failure show none. The Temporal SDK's own runtime metrics
// are on the same endpoint, and ours follow Prometheus's naming and label as the SDK's do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { ActivityCancellationDetails, ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { backfillMigration } from '../src/workflows/migration';
import { approveCutoverUpdate, finishUpdate, pauseSignal, progressQuery, resumeSignal, type Progress } from '../src/workflows/messages';
import { PHASES } from '../src/domain/phases';
import { DURATION_BUCKETS, METRIC_DEFS, METRICS, PHASE_CODES, RANGE_STATUSES, SDK_LABELS } from '../src/metrics/catalog';
import { METRICS_ADDRESS_ENV, metricsAddress } from '../src/metrics/runtime';
import { errorTypeOf } from '../src/metrics/attempts';
import { envNameForAlias } from '../src/spec/aliases';
import { spawnWorker, type WorkerProcess } from './helpers/temporal';
import { setup, useStack } from './hooks';
import { specFor } from './helpers/spec';
import { dashboardQueries, metricNamesIn, namingProblems, parseScrape, select, SNAKE_CASE, total, type Scrape } from './helpers/prometheus';

const TASK_QUEUE = 'metrics';
const ROWS = 30_000;
const CHUNK = 1_000;
const RANGES = ROWS / CHUNK;
const TABLE = '(id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, note text, updated_at timestamptz NOT NULL)';
const FLAKY_ROWS = 3 * CHUNK;
/** The target refuses the first copy of row 1500 with a transient error (the sequence outlives the rollback). */
const FAIL_ONCE = `
CREATE SEQUENCE public.flaky_failures;
CREATE FUNCTION public.fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id = 1500 AND nextval('public.flaky_failures') = 1 THEN
    RAISE EXCEPTION 'could not serialize access (injected by the test)' USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER fail_once BEFORE INSERT ON public.flaky FOR EACH ROW EXECUTE FUNCTION public.fail_once();`;

let worker: WorkerProcess;
let address: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A port nobody listens on now (the kernel picks it; the worker binds it right after). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function scrape(): Promise<Scrape> {
  const res = await fetch(`http://${address}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  return parseScrape(await res.text());
}

/** Scrapes until `ok` holds (a workflow's gauges land with its next activation's completion). */
async function scrapeUntil(ok: (s: Scrape) => boolean, what: string, ms = 15_000): Promise<Scrape> {
  const end = Date.now() + ms;
  let last = await scrape();
  while (!ok(last)) {
    if (Date.now() > end)
      throw new Error(
        `the scrape never showed ${what}:\n${last.text
          .split('\n')
          .filter((l) => l.startsWith('backfill_'))
          .join('\n')}`,
      );
    await sleep(200);
    last = await scrape();
  }
  return last;
}

const stack = useStack(
  TASK_QUEUE,
  async (server) => {
    for (const t of ['orders', 'events', 'followed']) {
      await server.query('src', `CREATE TABLE public.${t} ${TABLE}`);
      await server.query(
        'src',
        `INSERT INTO public.${t} SELECT g, g / 7.0, CASE WHEN g % 11 = 0 THEN NULL ELSE 'note ' || md5(g::text) END,
                  now() - interval '1 day' FROM generate_series(1, ${ROWS}) g`,
      );
      await server.query('tgt', `CREATE TABLE public.${t} ${TABLE}`);
    }
    await server.query('src', 'CREATE INDEX ON public.events (updated_at)');
    await server.query('src', `CREATE TABLE public.flaky ${TABLE}`);
    await server.query('src', `INSERT INTO public.flaky SELECT g, g, NULL, now() FROM generate_series(1, ${FLAKY_ROWS}) g`);
    await server.query('tgt', `CREATE TABLE public.flaky ${TABLE}`);
    await server.query('tgt', FAIL_ONCE);
  },
  { worker: 'none' },
);

setup(async () => {
  address = `127.0.0.1:${await freePort()}`;
  process.env[METRICS_ADDRESS_ENV] = address;
  worker = await stack.spawnWorker();
  delete process.env[METRICS_ADDRESS_ENV];
});

const migration = (name: string, table: string, over: Record<string, unknown> = {}) =>
  specFor(
    name,
    { source: `public.${table}`, target: `public.${table}`, chunk: { column: 'id', size: CHUNK }, ...over },
    { taskQueue: TASK_QUEUE, concurrency: 2, cutover: { approval: 'auto' } },
  );

function assertPhase(s: Scrape, name: string, phase: (typeof PHASES)[number]): void {
  for (const p of PHASES) assert.equal(total(s, METRICS.phase.name, { migration: name, phase: p }), p === phase ? 1 : 0, `${METRICS.phase.name}{phase="${p}"}`);
  assert.equal(total(s, METRICS.phaseCode.name, { migration: name }), PHASE_CODES[phase]);
}

function assertRanges(s: Scrape, name: string, table: string, want: Record<(typeof RANGE_STATUSES)[number], number>): void {
  for (const status of RANGE_STATUSES)
    assert.equal(total(s, METRICS.ranges.name, { migration: name, table, status }), want[status], `${METRICS.ranges.name}{status="${status}"}`);
}

/** A run without a failure: no activity attempt failed, none was retried (the counters are absent or 0). */
function assertNoFailure(s: Scrape): void {
  const failed = select(s, METRICS.activityFailures.name).filter((x) => x.value > 0);
  assert.deepEqual(failed, [], 'failed activity attempts in a run without a failure');
  assert.equal(total(s, METRICS.activityRetries.name), 0, 'retried activities in a run without a failure');
}

test('the worker says where it serves metrics, and the SDK runtime metrics are there before any migration', async () => {
  assert.match(worker.log(), new RegExp(`Prometheus metrics on http://${address.replace(/\./g, '\\.')}/metrics`));
  const s = await scrapeUntil((x) => x.types.has('temporal_num_pollers'), 'the SDK poller gauge');
  assert.ok(select(s, 'temporal_num_pollers', { task_queue: TASK_QUEUE }).length > 0, 'the SDK labels its metrics with the task queue');
});

test('a static migration: rows copied and verified equal the table, every planned range verified, the phase completed', async () => {
  const name = 'orders-metrics';
  const started = Date.now();
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: name, args: [migration(name, 'orders')] });
  const result = await h.result();
  assert.equal(result.phase, 'completed', JSON.stringify(result));
  const seconds = (Date.now() - started) / 1000;

  const s = await scrapeUntil((x) => total(x, METRICS.phase.name, { migration: name, phase: 'completed' }) === 1, 'the completed phase');
  const at = { migration: name, table: 'public.orders' };
  assertPhase(s, name, 'completed');
  assertRanges(s, name, 'public.orders', { pending: 0, in_flight: 0, verified: RANGES, failed: 0 });
  assert.equal(total(s, METRICS.rowsCopied.name, at), ROWS);
  assert.equal(total(s, METRICS.rowsVerified.name, at), ROWS);
  assert.equal(total(s, METRICS.rangeAttempts.name, { ...at, mode: 'copy', outcome: 'verified' }), RANGES);
  assert.equal(total(s, METRICS.rangeAttempts.name, at), RANGES, 'no attempt other than the verified ones');
  // Binary COPY: at least 2 bytes of field count, 4 of length and 8 of value (the bigint id) per row.
  const bytes = total(s, METRICS.bytesCopied.name, at);
  assert.ok(bytes >= ROWS * 14, `bytes copied: ${bytes}`);
  // The rows were counted where they were copied: by the copyRange activity of this task queue,
  // labelled as the SDK labels its own metrics.
  const rows = select(s, METRICS.rowsCopied.name, at);
  assert.deepEqual(
    rows.map((r) => [r.labels.activity_type, r.labels.task_queue, r.labels.namespace]),
    [['copyRange', TASK_QUEUE, 'default']],
  );
  assert.deepEqual(
    select(s, METRICS.phaseCode.name, { migration: name }).map((r) => [r.labels.workflow_type, r.labels.task_queue, r.labels.namespace]),
    [['backfillMigration', TASK_QUEUE, 'default']],
  );
  assertNoFailure(s);

  // Histograms in seconds, with our buckets: one observation per range, each within the run.
  for (const h of [METRICS.copyDuration, METRICS.verifyDuration]) {
    const match = h === METRICS.verifyDuration ? { ...at, mode: 'copy' } : at;
    assert.equal(s.types.get(h.name), 'histogram');
    assert.equal(total(s, `${h.name}_count`, match), RANGES, `${h.name}_count`);
    const sum = total(s, `${h.name}_sum`, match);
    assert.ok(sum > 0 && sum < seconds * 2, `${h.name}_sum ${sum} for a run of ${seconds} s`);
    const les = select(s, `${h.name}_bucket`, match).map((b) => b.labels.le);
    assert.deepEqual(les, [...DURATION_BUCKETS.map(String), '+Inf']);
    assert.equal(total(s, `${h.name}_bucket`, { ...match, le: '+Inf' }), RANGES);
  }
  // The SDK's runtime metrics, durations in seconds as ours.
  for (const sdk of ['temporal_workflow_completed', 'temporal_activity_execution_latency', 'temporal_workflow_task_execution_latency', 'temporal_request']) {
    assert.ok(s.types.has(sdk), `SDK metric ${sdk} missing`);
  }
  assert.ok(total(s, 'temporal_workflow_completed', { workflow_type: 'backfillMigration' }) >= 1);
  const latency = total(s, 'temporal_activity_execution_latency_sum', { activity_type: 'copyRange' });
  assert.ok(latency > 0 && latency < seconds * 4, `activity latency sum ${latency}: seconds, not milliseconds`);
});

test('a live migration: the gauges match the progress query while paused, and catch-up applies what was written meanwhile', async () => {
  const name = 'events-metrics';
  const spec = {
    ...migration(name, 'events', { delta: { column: 'updated_at', overlap: '1 second' } }),
    concurrency: 1,
    catchUp: { interval: '1 second', remaining: 100 },
  };
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: name, args: [spec] });
  // Paused after its first ranges: what is copied by then is stale once every source row is updated.
  let p: Progress | undefined;
  for (const end = Date.now() + 60_000; !(p && p.tables[0]?.ranges.verified >= 1); await sleep(20)) {
    if (Date.now() > end) throw new Error('no range verified within 60 s');
    p = await h.query(progressQuery).catch(() => undefined);
  }
  await h.signal(pauseSignal);
  for (const end = Date.now() + 60_000; p.tables[0].ranges.inFlight > 0 || !p.paused; await sleep(50)) {
    if (Date.now() > end) throw new Error('the ranges in flight did not land');
    p = await h.query(progressQuery);
  }
  const r = p.tables[0].ranges;
  assert.equal(p.phase, 'backfilling');
  assert.ok(r.verified < RANGES, 'paused before the last range');

  const mid = await scrapeUntil(
    (x) =>
      total(x, METRICS.ranges.name, { migration: name, status: 'verified' }) === r.verified &&
      total(x, METRICS.ranges.name, { migration: name, status: 'in_flight' }) === 0,
    `${r.verified} verified ranges`,
  );
  assertPhase(mid, name, 'backfilling');
  assertRanges(mid, name, 'public.events', { pending: r.pending, in_flight: 0, verified: r.verified, failed: 0 });
  assert.equal(r.pending, RANGES - r.verified);
  assert.equal(total(mid, METRICS.rowsCopied.name, { migration: name }), r.verified * CHUNK);

  await stack.pg.query('src', `UPDATE public.events SET amount = amount + 1, updated_at = now()`);
  await h.signal(resumeSignal);
  const result = await h.result();
  assert.equal(result.phase, 'completed', JSON.stringify(result));
  const end = await h.query(progressQuery);

  const s = await scrapeUntil((x) => total(x, METRICS.phase.name, { migration: name, phase: 'completed' }) === 1, 'the completed phase');
  assertPhase(s, name, 'completed');
  assertRanges(s, name, 'public.events', { pending: 0, in_flight: 0, verified: RANGES, failed: 0 });
  // The ranges copied before the update are applied again by catch-up; the others were copied updated.
  assert.equal(end.delta?.rowsApplied, r.verified * CHUNK);
  assert.equal(total(s, METRICS.catchupRows.name, { migration: name, table: 'public.events' }), end.delta?.rowsApplied);
  assert.equal(total(s, METRICS.rowsCopied.name, { migration: name }), ROWS, 'the sweep found nothing to copy again');
  assert.equal(total(s, METRICS.catchupRemaining.name, { migration: name }), end.delta?.remaining);
  const mark = total(s, METRICS.catchupWatermark.name, { migration: name });
  assert.ok(Math.abs(mark - Date.parse(end.delta.watermark!) / 1000) < 0.01, `watermark ${mark} vs ${end.delta?.watermark}`);
  const lag = total(s, METRICS.catchupLag.name, { migration: name });
  assert.ok(lag >= 0 && lag < 60, `catch-up lag ${lag} s`);
  // A sweep's checks are attempts too (verify mode within the sweep activity), all verified.
  assert.equal(total(s, METRICS.rangeAttempts.name, { migration: name, outcome: 'mismatch' }), 0);
  assert.ok(total(s, METRICS.rangeAttempts.name, { migration: name, mode: 'verify', outcome: 'verified' }) >= RANGES);
  assertNoFailure(s);
});

test('an activity that fails once: the failed attempt by activity and error type, its retry, and the SDK counts the same failure', async () => {
  const name = 'flaky-metrics';
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: name, args: [migration(name, 'flaky')] });
  const result = await h.result();
  assert.equal(result.phase, 'completed', JSON.stringify(result));

  const s = await scrapeUntil((x) => total(x, METRICS.phase.name, { migration: name, phase: 'completed' }) === 1, 'the completed phase');
  const failures = select(s, METRICS.activityFailures.name).filter((x) => x.value > 0);
  assert.deepEqual(
    failures.map((x) => ({ ...x.labels, value: x.value })),
    [{ namespace: 'default', task_queue: TASK_QUEUE, activity_type: 'copyRange', error_type: 'PG40001', value: 1 }],
  );
  assert.deepEqual(
    select(s, METRICS.activityRetries.name).map((x) => ({ ...x.labels, value: x.value })),
    [{ namespace: 'default', task_queue: TASK_QUEUE, activity_type: 'copyRange', value: 1 }],
  );
  // The failed attempt rolled back: the rows were copied once, by the retry; the attempt is an error.
  const at = { migration: name, table: 'public.flaky' };
  assert.equal(total(s, METRICS.rowsCopied.name, at), FLAKY_ROWS);
  assert.equal(total(s, METRICS.rangeAttempts.name, { ...at, outcome: 'error' }), 1);
  assert.equal(total(s, METRICS.rangeAttempts.name, { ...at, outcome: 'verified' }), FLAKY_ROWS / CHUNK);
  assert.equal(total(s, 'temporal_activity_execution_failed', { activity_type: 'copyRange' }), 1, "the SDK's own count of failed executions");
});

test('naming: the convention check flags a name or label that breaks it', () => {
  const ok = { name: 'backfill_copied_bytes_total', kind: 'counter', unit: 'By', labels: ['migration', 'table'] };
  assert.deepEqual(namingProblems(ok, SDK_LABELS.activity), []);
  const bad: [Partial<typeof ok>, RegExp][] = [
    [{ name: 'backfill_bytes_copied_total' }, /the unit bytes goes last, before _total/],
    [{ name: 'backfill_copied_bytes' }, /a counter ends in _total/],
    [{ name: 'backfill_copied_bytes_total', kind: 'gauge' }, /only a counter ends in _total/],
    [{ name: 'backfill_copied_bytes_total', unit: undefined }, /names bytes but does not declare unit By/],
    [{ name: 'backfill_copy_ms_total', unit: undefined }, /"ms" is not a base unit/],
    [{ name: 'backfillCopiedBytes_total' }, /not snake_case/],
    [{ name: 'copied_bytes_total' }, /not prefixed backfill_/],
    [{ labels: ['migration', 'taskQueue'] }, /label taskQueue is not snake_case/],
    [{ labels: ['activity_type'] }, /label activity_type is added by the worker/],
    [{ labels: ['le'] }, /label le is reserved/],
  ];
  for (const [change, problem] of bad) assert.match(namingProblems({ ...ok, ...change }, SDK_LABELS.activity).join('\n'), problem, JSON.stringify(change));
});

test("error_type: the failure's type, the timeout or shutdown that cut an attempt short; an attempt cancelled on purpose is no failure", () => {
  const db = ApplicationFailure.create({ type: 'PG40001', message: 'could not serialize access' });
  assert.equal(errorTypeOf(db, undefined), 'PG40001');
  assert.equal(errorTypeOf(new TypeError('x is undefined'), undefined), 'TypeError');
  assert.equal(errorTypeOf('a string', undefined), 'Unknown');
  assert.equal(errorTypeOf(ApplicationFailure.create({ type: 'X'.repeat(200) }), undefined), 'X'.repeat(64));
  const cancelled = (o: ConstructorParameters<typeof ActivityCancellationDetails>[0]) => new ActivityCancellationDetails(o);
  assert.equal(errorTypeOf(new CancelledFailure('TIMED_OUT'), cancelled({ timedOut: true })), 'TimedOut');
  assert.equal(errorTypeOf(new CancelledFailure('WORKER_SHUTDOWN'), cancelled({ workerShutdown: true })), 'WorkerShutdown');
  for (const why of ['cancelRequested', 'paused', 'reset'] as const)
    assert.equal(errorTypeOf(new CancelledFailure(why), cancelled({ [why]: true })), undefined, why);
});

test("change capture's lag, forward and on the way back (phase switched): seconds and bytes, as the progress query has them", async () => {
  const name = 'followed-metrics';
  const noop = (connection: string) => ({ connection, sql: 'SELECT 1' });
  const spec = {
    ...migration(name, 'followed'),
    capture: 'logical',
    cutover: { approval: 'required', freeze: noop('src'), switch: noop('tgt'), reverse: { freeze: noop('tgt'), switch: noop('src') } },
  };
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: name, args: [spec] });
  let p: Progress = await h.query(progressQuery);
  for (const end = Date.now() + 120_000; p.phase !== 'awaiting_approval'; await sleep(200)) {
    assert.ok(Date.now() < end && !['failed', 'needs_attention'].includes(p.phase), `the gate: ${p.phase} ${p.detail ?? ''}`);
    p = await h.query(progressQuery);
  }
  const forward = await scrapeUntil((x) => select(x, METRICS.captureLag.name).some((m) => m.labels.migration === name), 'the forward lag');
  assert.ok(total(forward, METRICS.captureLag.name, { migration: name, direction: 'forward' }) >= 0);
  assert.ok(select(forward, METRICS.captureLagBytes.name).some((m) => m.labels.migration === name && m.labels.direction === 'forward'));
  await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'ops', digest: p.digest! }] });
  await stack.pg.query('tgt', 'UPDATE public.followed SET amount = amount + 1 WHERE id <= 10');
  // A call of the stream back ends (10 s at most) and the gauge of the way back is set.
  const back = await scrapeUntil(
    (x) => select(x, METRICS.captureLag.name).some((m) => m.labels.migration === name && m.labels.direction === 'back'),
    'the lag of the way back',
    40_000,
  );
  const q = (await h.query(progressQuery)).reverse!;
  assert.ok(total(back, METRICS.captureLag.name, { migration: name, direction: 'back' }) >= 0);
  assert.ok(Number(q.lagBytes) >= 0);
  await h.executeUpdate(finishUpdate, { args: [{ actor: 'ops' }] });
  assert.equal((await h.result()).phase, 'completed');
});

test('every metric of the catalog follows Prometheus naming and is exported with its type and exactly its labels, named as the SDK names its own; the dashboard queries only exported metrics; no secret is in a label', async () => {
  const s = await scrape();
  for (const d of METRIC_DEFS) assert.deepEqual(namingProblems(d, SDK_LABELS[d.from]), [], d.name);
  for (const d of METRIC_DEFS) {
    assert.equal(s.types.get(d.name), d.kind, `${d.name} is a ${d.kind}`);
    const family = select(s, d.kind === 'histogram' ? `${d.name}_count` : d.name);
    assert.ok(family.length > 0, `${d.name} has samples`);
    const want = [...d.labels, ...SDK_LABELS[d.from]].sort();
    for (const x of family) assert.deepEqual(Object.keys(x.labels).sort(), want, `${d.name}'s labels`);
  }
  // What the endpoint serves, ours and the SDK's: only snake_case labels; ours of the catalog only.
  const ours = new Set(METRIC_DEFS.map((d) => d.name));
  for (const x of s.samples) {
    for (const l of Object.keys(x.labels)) assert.match(l, SNAKE_CASE, `${x.name} has label ${l}`);
    if (x.name.startsWith('backfill_')) assert.ok(ours.has(x.name.replace(/_(bucket|sum|count)$/, '')), `${x.name} is not in the catalog`);
  }
  // The SDK's own metrics carry the labels ours share with them.
  assert.deepEqual(
    Object.keys(select(s, 'temporal_workflow_completed')[0].labels)
      .filter((l) => (SDK_LABELS.workflow as readonly string[]).includes(l))
      .sort(),
    [...SDK_LABELS.workflow].sort(),
  );
  assert.deepEqual(
    Object.keys(select(s, 'temporal_activity_execution_latency_count')[0].labels)
      .filter((l) => (SDK_LABELS.activity as readonly string[]).includes(l))
      .sort(),
    [...SDK_LABELS.activity].sort(),
  );
  for (const q of dashboardQueries())
    for (const n of metricNamesIn(q.expr)) assert.ok(s.types.has(n), `dashboard panel "${q.panel}" queries ${n}, which the worker does not export`);
  for (const alias of ['src', 'tgt']) {
    const url = process.env[envNameForAlias(alias)]!;
    assert.ok(!s.text.includes(url) && !s.text.includes(new URL(url).password || '\u0000'), 'a connection string in the metrics');
  }
  assert.doesNotMatch(s.text, /postgres(ql)?:\/\//);
});

test('BACKFILL_METRICS_ADDRESS: host:port, a bare :port binds every interface; anything else stops the worker with a clear message', async () => {
  assert.equal(metricsAddress({}), undefined);
  assert.equal(metricsAddress({ [METRICS_ADDRESS_ENV]: ' ' }), undefined);
  assert.equal(metricsAddress({ [METRICS_ADDRESS_ENV]: '0.0.0.0:9464' }), '0.0.0.0:9464');
  assert.equal(metricsAddress({ [METRICS_ADDRESS_ENV]: ':9464' }), '0.0.0.0:9464');
  assert.equal(metricsAddress({ [METRICS_ADDRESS_ENV]: '[::]:9464' }), '[::]:9464');
  for (const bad of ['9464', 'localhost', 'host:0', 'host:65536', 'http://host:9464'])
    assert.throws(() => metricsAddress({ [METRICS_ADDRESS_ENV]: bad }), /must be host:port/, bad);
  process.env[METRICS_ADDRESS_ENV] = 'nowhere';
  try {
    await assert.rejects(spawnWorker(stack.temporal.address, 'metrics-bad'), /backfill worker exited: .*BACKFILL_METRICS_ADDRESS must be host:port/s);
  } finally {
    delete process.env[METRICS_ADDRESS_ENV];
  }
});

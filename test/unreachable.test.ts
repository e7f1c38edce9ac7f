// A database that cannot be reached (a closed port) is said at once where the operator looks: the
// progress query, the UI's current details and `backfill status`, with the alias, host, error, the
// tries and the next one; after `retries.unreachable` the migration waits in needs_attention, and
// `resume` tries again once the database is back. `abort` and Temporal's cancellation end it within
// seconds while it waits. No failure a person sees carries a stack trace or a source path. `status`
// without a worker says that no worker polls the task queue.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { WorkflowHandle } from '@temporalio/client';
import { freePort } from '../src/infra/postgres';
import { backfillMigration } from '../src/workflows/migration';
import { progressQuery, type Progress } from '../src/workflows/messages';
import { CLI, backfill, run } from './helpers/cli';
import { endingOf, replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { setup, useStack } from './hooks';
import { specFor } from './helpers/spec';
import { FILL_WRITER_TABLE, WRITER_TABLE } from '../src/db/demo';

const TASK_QUEUE = 'unreachable';
/** The port the source alias points at: closed until a test opens a gate to the real server on it. */
let port: number;

// Before the stack starts: its urlFor reads it.
setup(async () => {
  port = await freePort();
});

const stack = useStack(
  TASK_QUEUE,
  async (db) => {
    await db.query('src', 'CREATE TABLE public.items (id bigint PRIMARY KEY, qty int NOT NULL)');
    await db.query('src', 'INSERT INTO public.items SELECT g, g % 7 FROM generate_series(1, 3000) g');
    for (const t of ['items_a', 'items_b', 'items_c', 'items_d']) await db.query('tgt', `CREATE TABLE public.${t} (id bigint PRIMARY KEY, qty int NOT NULL)`);
    await db.query('src', WRITER_TABLE('public.accounts'));
    await db.query('src', FILL_WRITER_TABLE('public.accounts', 6000));
    await db.query('tgt', WRITER_TABLE('public.accounts'));
  },
  // The worker reaches the source through a port where, for now, nothing listens.
  { urlFor: (alias, url) => (alias === 'src' ? url.replace(/:(\d+)\//, `:${port}/`) : url) },
);

/** The real source server, served on the closed port from now on (the database comes back). */
function openGate(): Promise<{ close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(stack.pg.port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  return new Promise((resolve) =>
    server.listen(port, '127.0.0.1', () =>
      resolve({
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      }),
    ),
  );
}

const cli = () => ({ TEMPORAL_ADDRESS: stack.temporal.address });

const itemsSpec = (name: string, target: string, unreachable?: string) =>
  specFor(
    name,
    { source: 'public.items', target, chunk: { column: 'id', size: 1000 } },
    {
      taskQueue: TASK_QUEUE,
      concurrency: 2,
      cutover: { approval: 'required' },
      ...(unreachable ? { retries: { rangeAttempts: 3, unreachable } } : {}),
    },
  );

async function waitUntil(h: WorkflowHandle, ok: (p: Progress) => boolean, timeoutMs: number): Promise<{ p: Progress; ms: number }> {
  const t0 = Date.now();
  let last: Progress | undefined;
  while (Date.now() - t0 < timeoutMs) {
    try {
      last = await h.query(progressQuery);
      if (ok(last)) return { p: last, ms: Date.now() - t0 };
    } catch {
      /* the first workflow task may not have run yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms; last progress: ${JSON.stringify(last)}`);
}

/** The attempt on which each activity that failed as DatabaseUnreachable ran: 1 when Temporal retried none out of sight. */
async function unreachableAttempts(h: WorkflowHandle): Promise<number[]> {
  const started = new Map<string, number>();
  const attempts: number[] = [];
  for (const e of (await h.fetchHistory()).events ?? []) {
    const st = e.activityTaskStartedEventAttributes;
    if (st) started.set(String(st.scheduledEventId), st.attempt ?? 1);
    const f = e.activityTaskFailedEventAttributes;
    if (f?.failure?.applicationFailureInfo?.type === 'DatabaseUnreachable') attempts.push(started.get(String(f.scheduledEventId)) ?? 0);
  }
  return attempts;
}

/** Timers that fired after the abort signal: a migration that ends at once waits out none. */
async function timersFiredAfterAbort(h: WorkflowHandle): Promise<number> {
  const events = (await h.fetchHistory()).events ?? [];
  const at = events.findIndex((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'abort');
  assert.ok(at >= 0, 'no abort signal in the history');
  return events.slice(at).filter((e) => e.timerFiredEventAttributes).length;
}

/** Every failure in the history, as a person would read it in the UI: no stack trace, no worker path. */
async function failuresAreReadable(h: WorkflowHandle): Promise<number> {
  const history = await h.fetchHistory();
  let failures = 0;
  for (const e of history.events ?? []) {
    const f = e.activityTaskFailedEventAttributes?.failure;
    if (!f) continue;
    failures++;
    for (let c: typeof f | null | undefined = f; c; c = c.cause) {
      assert.equal(c.stackTrace ?? '', '', `a stack trace in the history: ${c.stackTrace}`);
      assert.doesNotMatch(c.message ?? '', /dist\/|src\/|\.js:\d+/, c.message ?? '');
    }
  }
  const pending = (await h.describe()).raw.pendingActivities ?? [];
  for (const a of pending) assert.equal(a.lastFailure?.stackTrace ?? '', '', `a stack trace under Pending Activities: ${a.lastFailure?.stackTrace}`);
  return failures;
}

test(
  'a source on a closed port is said at once with alias, host and error; after retries.unreachable it waits in needs_attention; resume goes on once it is back',
  { timeout: 90_000 },
  async () => {
    const spec = itemsSpec('unreachable-resumed', 'public.items_a', '4 seconds');
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
    const seen = await waitUntil(h, (p) => (p.waiting ?? []).length > 0, 10_000);
    const w = seen.p.waiting![0];
    assert.equal(w.what, `src (127.0.0.1:${port})`);
    assert.match(w.error, /cannot be reached: .*ECONNREFUSED/);
    assert.ok(w.nextTryAt, 'the next try is shown');
    // Said after the activity's first failed try: Temporal retried none of them out of sight.
    const attempts = await unreachableAttempts(h);
    assert.ok(attempts.length >= 1 && attempts.every((a) => a === 1), `DatabaseUnreachable on attempts ${JSON.stringify(attempts)}`);
    assert.equal(seen.p.phase, 'planning');
    // The UI's current details say it too.
    const meta = await h.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    assert.match(meta.currentDetails ?? '', new RegExp(`\\*\\*Waiting:\\*\\* src \\(127\\.0\\.0\\.1:${port}\\) cannot be reached: .*ECONNREFUSED`));

    // `status` says it, with the next try.
    const status = await backfill(['status', spec.name], cli());
    assert.match(
      status.stdout,
      new RegExp(`waiting: src \\(127\\.0\\.0\\.1:${port}\\) cannot be reached: .*ECONNREFUSED.*failed tr(y|ies) since .*next try at`),
      status.stdout,
    );
    assert.doesNotMatch(status.stdout + status.stderr, /dist\/|\.js:\d+|\n\s+at /);
    // So does `status --watch` (off a terminal: a block per change), watched for 3 s.
    const watched = await run(process.execPath, [CLI, 'status', spec.name, '--watch', '--interval', '0.2'], cli(), 3000);
    assert.match(watched.stderr, new RegExp(`waiting: src \\(127\\.0\\.0\\.1:${port}\\) cannot be reached: .*ECONNREFUSED`), watched.stderr);

    // Past retries.unreachable: it waits for a person, and says how to go on.
    const stranded = await waitUntil(h, (p) => p.phase === 'needs_attention', 20_000);
    assert.match(
      stranded.p.detail ?? '',
      new RegExp(`src \\(127\\.0\\.0\\.1:${port}\\) cannot be reached: .*ECONNREFUSED.*backfill resume unreachable-resumed`),
    );
    assert.equal(stranded.p.waiting?.[0].nextTryAt, undefined);
    assert.ok((await failuresAreReadable(h)) >= 2, 'the failed tries are in the history');
    const tries = stranded.p.waiting![0].tries;
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await h.query(progressQuery)).waiting?.[0].tries, tries, 'no try while it waits for a person');

    // The database is back; resume tries again and the migration goes on from where it waited.
    const gate = await openGate();
    try {
      const resumed = await backfill(['resume', spec.name], cli());
      assert.equal(resumed.code, 0, resumed.stderr);
      const p = await waitForPhase(h, ['awaiting_approval', 'failed', 'aborted'], 60_000);
      assert.equal(p.phase, 'awaiting_approval', JSON.stringify(p));
      assert.equal(p.waiting, undefined, 'nothing is waited for any more');
      await h.signal('abort', { reason: 'test done' });
      assert.equal((await endingOf(h)).phase, 'aborted');
      await replayAndMaybeRecord(h, 'unreachable-stranded-resumed-aborted');
    } finally {
      await gate.close();
    }
  },
);

test('abort while a database cannot be reached ends the migration within seconds, as aborted', { timeout: 90_000 }, async () => {
  const spec = itemsSpec('unreachable-aborted', 'public.items_b');
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  await waitUntil(h, (p) => (p.waiting ?? []).length > 0, 10_000);
  const t0 = Date.now();
  const r = await backfill(['abort', spec.name, '--reason', 'source is gone'], cli());
  assert.equal(r.code, 0, r.stderr);
  const end = await endingOf(h);
  const ms = Date.now() - t0;
  assert.equal(end.phase, 'aborted');
  assert.match(end.reason ?? '', /source is gone/);
  assert.ok(ms < 10_000, `ended ${ms} ms after the abort`);
  await failuresAreReadable(h);
});

test("Temporal's cancellation while a database cannot be reached ends the migration within seconds, as aborted", { timeout: 90_000 }, async () => {
  const spec = itemsSpec('unreachable-cancelled', 'public.items_c');
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  await waitUntil(h, (p) => (p.waiting ?? []).length > 0, 10_000);
  const t0 = Date.now();
  await h.cancel();
  const end = await endingOf(h);
  const ms = Date.now() - t0;
  assert.equal(end.phase, 'aborted');
  assert.ok(ms < 10_000, `ended ${ms} ms after the cancellation`);
});

test('a source that goes away mid-backfill: the range waits in sight, and abort ends the migration within seconds', { timeout: 90_000 }, async () => {
  const gate = await openGate();
  let open = true;
  try {
    // 30 small ranges, one at a time: the pause lands with most of them still to copy.
    const base = itemsSpec('unreachable-mid-backfill', 'public.items_c');
    const spec = { ...base, concurrency: 1, tables: [{ ...base.tables[0], chunk: { column: 'id', size: 100 } }] };
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
    await waitUntil(h, (p) => p.phase === 'backfilling' && p.tables[0].ranges.verified >= 1, 30_000);
    await h.signal('pause');
    await waitUntil(h, (p) => p.tables[0].ranges.inFlight === 0, 30_000);
    const before = (await h.query(progressQuery)).tables[0].ranges;
    assert.ok(before.pending > 0, 'ranges are left to copy');
    // The source goes away (its open connections die with it), then the window goes on.
    await gate.close();
    open = false;
    await h.signal('resume');
    const seen = await waitUntil(h, (p) => (p.waiting ?? []).length > 0, 15_000);
    assert.equal(seen.p.phase, 'backfilling');
    assert.match(seen.p.waiting![0].error, /cannot be reached/);
    assert.equal(seen.p.tables[0].ranges.failed, 0, 'a range waiting for its database is not failed');
    await h.signal('abort', { reason: 'source is gone' });
    const end = await endingOf(h);
    assert.equal(end.phase, 'aborted');
    assert.equal(await timersFiredAfterAbort(h), 0, 'the migration waited out a timer after the abort');
  } finally {
    if (open) await gate.close();
  }
});

test(
  'under change capture, a source that goes away mid-backfill is waited for in sight; once it is back the migration goes on by itself to the gate',
  { timeout: 120_000 },
  async () => {
    let gate = await openGate();
    let open = true;
    try {
      const spec = specFor(
        'unreachable-captured',
        { source: 'public.accounts', target: 'public.accounts', chunk: { column: 'id', size: 1000 } },
        {
          taskQueue: TASK_QUEUE,
          concurrency: 1,
          capture: 'logical',
          catchUp: { maxLag: '3 seconds' },
          cutover: { approval: 'required' },
        },
      );
      const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
      await waitUntil(h, (p) => p.phase === 'backfilling' && p.tables.length > 0 && p.tables[0].ranges.verified >= 1, 60_000);
      await h.signal('pause');
      await waitUntil(h, (p) => p.tables[0].ranges.inFlight === 0, 30_000);
      // The source goes away: the snapshot's holder, the ranges' sessions, all of it.
      await gate.close();
      open = false;
      await h.signal('resume');
      const seen = await waitUntil(h, (p) => (p.waiting ?? []).length > 0, 30_000);
      assert.match(seen.p.waiting![0].error, /cannot be reached/);
      assert.notEqual(seen.p.phase, 'failed');
      // Back: the next try finds it, and the migration goes on without a person.
      gate = await openGate();
      open = true;
      const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed', 'aborted'], 90_000);
      assert.equal(p.phase, 'awaiting_approval', JSON.stringify(p));
      assert.equal(p.waiting, undefined, 'nothing is waited for any more');
      await h.signal('abort', { reason: 'test done' });
      assert.equal((await endingOf(h)).phase, 'aborted');
      await replayAndMaybeRecord(h, 'unreachable-captured-came-back-aborted');
    } finally {
      if (open) await gate.close();
    }
  },
);

test('status says that no worker polls the task queue, with the last phase Temporal knows', { timeout: 90_000 }, async () => {
  const spec = { ...itemsSpec('no-worker', 'public.items_d'), taskQueue: 'nobody-polls-this' };
  await stack.client.workflow.start(backfillMigration, { taskQueue: 'nobody-polls-this', workflowId: spec.name, args: [spec] });
  const r = await backfill(['status', spec.name], cli());
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /no worker polls its task queue "nobody-polls-this"/);
  assert.match(r.stdout, /backfill worker/);
  assert.doesNotMatch(r.stdout + r.stderr, /Failed to query/);
  await stack.client.workflow.getHandle(spec.name).terminate('test done');
});

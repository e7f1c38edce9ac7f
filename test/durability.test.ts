// Faults injected for real, each where the test's name says (an activity held at a gate the test
// closes, the fault landing while it waits, the history showing that very activity ran again):
// workers killed with SIGKILL inside copies, inside the switch, and while verifying, locating and
// reconciling; a copy killed inside its target transaction, observed to have written nothing;
// database sessions terminated and a PostgreSQL restart under held copies; and a user error (a
// dropped column) that must fail the migration loudly instead of retrying forever. Pause and resume on the way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backfillMigration } from '../src/workflows/migration';
import { WorkflowFailedError } from '@temporalio/client';
import { abortSignal, approveCutoverUpdate, pauseSignal, progressQuery, reportQuery, resumeSignal } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { fingerprint } from './helpers/sample';
import { waitForPhase } from './helpers/temporal';
import { endingOf, KILLED_WORKER_ENV, replayAndMaybeRecord } from './helpers/temporal';
import { useStack } from './hooks';
import { KILLED_WORKER_HEARTBEAT, specFor } from './helpers/spec';
import {
  advisoryGate,
  assertRanAgain,
  assertRetried,
  heldRuns,
  holdActivity,
  holdEvery,
  retriedActivities,
  runningActivityRuns,
  tableGate,
  type ActivityRun,
  type AdvisoryGate,
  until,
} from './helpers/fault-points';

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
  { worker: 'none', env: { BACKFILL_STALL_TIMEOUT: '5', ...KILLED_WORKER_ENV } },
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

/** Advisory gates (see advisoryGate): a statement-level one before a copy's delete, a row-level one before a chosen row is written. */
const STATEMENT_GATE = 2501;
const ROW_GATE = 2502;
const HOLD_FUNCTIONS = `
CREATE OR REPLACE FUNCTION public.hold_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_xact_lock_shared(TG_ARGV[0]::bigint); RETURN NULL; END $$;
CREATE OR REPLACE FUNCTION public.hold_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.id = TG_ARGV[1]::bigint THEN PERFORM pg_advisory_xact_lock_shared(TG_ARGV[0]::bigint); END IF; RETURN NEW; END $$;`;

async function liveWorker(): Promise<void> {
  if (!stack.workers.some((w) => w.alive())) await worker();
}

test(
  'kill -9: workers killed inside a copyRange (twice) and inside the switch; a new worker finishes, the target equals the source, the switch ran once',
  { timeout: 240_000 },
  async () => {
    const s = spec('crash', 'public.orders_a', { retries: { heartbeat: KILLED_WORKER_HEARTBEAT } });
    let w = await worker();
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
    const verified = async () => (await h.query(progressQuery)).tables[0]?.ranges.verified ?? 0;
    // Twice mid-backfill: the copies in flight held at a gate on the target table (their delete, copy
    // or measurement waiting there), the worker killed while they wait, a new one started.
    const killed: ActivityRun[] = [];
    for (const after of [3, 10]) {
      await until(`${after} ranges verified`, async () => (await verified()) >= after);
      const gate = await tableGate(stack.pg, 'tgt', 'public.orders_a');
      killed.push(...(await holdEvery(h, gate, 'copyRange')));
      await w.kill();
      w = await worker();
      await gate.open();
    }
    const gate = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
    assert.equal(gate.phase, 'awaiting_approval', JSON.stringify(gate));
    assert.equal(gate.tables[0].ranges.verified, 30);
    const report: Report = await h.query(reportQuery);

    // The switch held inside its transaction (its SQL waits at a gate on the table it writes), the
    // worker killed there; a new worker runs it again.
    const log = await tableGate(stack.pg, 'tgt', 'public.cutover_log');
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'ops', digest: report.digest }] });
    const inSwitch = await holdEvery(h, log, 'runSwitch');
    assert.equal((await h.query(progressQuery)).phase, 'switching');
    await w.kill();
    await worker();
    await log.open();
    const result = await h.result();
    assert.equal(result.phase, 'completed');
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'public.orders_a'), await fingerprint(stack.pg, 'src', 'public.orders'));
    const ran = await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM public.cutover_log WHERE migration = 'crash'`);
    assert.equal(ran.rows[0].n, 1, 'the switch ran exactly once');
    const ranges = await stack.pg.query(
      'tgt',
      `SELECT count(*) FILTER (WHERE status = 'verified')::int AS ok, count(DISTINCT worker)::int AS workers FROM backfill.ranges WHERE migration = 'crash'`,
    );
    assert.equal(ranges.rows[0].ok, 30);
    assert.ok(ranges.rows[0].workers >= 2, 'ranges were finished by more than one worker');
    // Proof the kills landed inside them: each held copyRange, and the switch, completed on a later attempt.
    await assertRetried(h, ['copyRange', 'runSwitch']);
    await assertRanAgain(h, [...killed, ...inSwitch]);
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
    const s = { ...spec('verify-crash', 'public.orders_e'), mode: 'verify', retries: { rangeAttempts: 1, heartbeat: KILLED_WORKER_HEARTBEAT } };
    await Promise.all(stack.workers.map((w) => w.stop()));
    let w = await worker();
    // Each kill lands while an activity of that kind is in flight, stopped at the gate mid-statement.
    const gate = await tableGate(stack.pg, 'tgt', 'public.orders_e');
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
    const killed: string[] = [];
    for (const type of ['verifyRange', 'locateRange', 'reconcileTables']) {
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

test(
  'nothing half-written, observed: a copy killed inside its target transaction, rows already written, leaves its range as it was; it runs again and the target equals the source',
  { timeout: 180_000 },
  async () => {
    // The range of ids 40001..50000 (range 4) holds rows of an earlier load: every other id, stale.
    const RANGE = '(SELECT * FROM public.orders_c WHERE id BETWEEN 40001 AND 50000)';
    await stack.pg.query('tgt', `INSERT INTO public.orders_c SELECT g, -1, 'stale', timestamptz '2000-01-01' FROM generate_series(40002, 50000, 2) g`);
    const previous = await fingerprint(stack.pg, 'tgt', RANGE);
    assert.equal(previous.count, '5000');
    // Inserting row 45005 waits at a gate the test holds: the copy of range 4 stops inside its target
    // transaction, with its delete done and the rows before 45005 written.
    await stack.pg.query('tgt', HOLD_FUNCTIONS);
    await stack.pg.query(
      'tgt',
      `CREATE TRIGGER hold_row BEFORE INSERT ON public.orders_c FOR EACH ROW EXECUTE FUNCTION public.hold_row('${ROW_GATE}', '45005')`,
    );
    const gate = await advisoryGate(stack.pg, 'tgt', ROW_GATE);
    await Promise.all(stack.workers.map((w) => w.stop()));
    // A copy that waits does not stall out (BACKFILL_STALL_TIMEOUT) before the kill: the kill is the fault.
    process.env.BACKFILL_STALL_TIMEOUT = '600';
    const w = await worker().finally(() => {
      process.env.BACKFILL_STALL_TIMEOUT = '5';
    });
    const s = spec('half-written', 'public.orders_c', { cutover: { approval: 'auto' }, retries: { heartbeat: KILLED_WORKER_HEARTBEAT } });
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });

    await until('the copy of range 4 waiting at row 45005', async () => (await gate.waiting()) === 1);
    const [pid] = await gate.pids();
    const copying = await stack.pg.query('tgt', 'SELECT relid::regclass::text AS rel, tuples_processed::int AS n FROM pg_stat_progress_copy WHERE pid = $1', [
      pid,
    ]);
    assert.equal(copying.rows[0]?.rel, 'orders_c');
    assert.ok(copying.rows[0].n > 0, `rows of the range are written in its transaction: ${JSON.stringify(copying.rows[0])}`);
    const held = (await runningActivityRuns(h, 'copyRange')).filter((r) => r.input.rangeIndex === 4);
    assert.equal(held.length, 1, 'the copyRange of range 4 is the one held');
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', RANGE), previous, 'another session sees the range as it was, mid-copy');

    await w.kill();
    // No worker runs: nothing can retry. The killed copy's transaction ends once its session, let
    // past the gate, finds its client gone.
    await gate.open();
    await until(
      "the killed copy's session ended",
      async () => (await stack.pg.query('postgres', 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0].n === 0,
    );
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', RANGE), previous, 'after the kill, before any retry: exactly the previous rows');
    const ledger = await stack.pg.query('tgt', `SELECT status FROM backfill.ranges WHERE migration = 'half-written' AND range_index = 4`);
    assert.ok(
      ledger.rows.every((r) => r.status !== 'verified'),
      JSON.stringify(ledger.rows),
    );

    await worker();
    const result = await h.result();
    assert.equal(result.phase, 'completed');
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'public.orders_c'), await fingerprint(stack.pg, 'src', 'public.orders'));
    await assertRanAgain(h, held);
    await stack.pg.query('tgt', 'DROP TRIGGER hold_row ON public.orders_c');
  },
);

test(
  'killed sessions and a PostgreSQL restart mid-backfill, each landing in held copies: the copies run again, the migration completes equal',
  { timeout: 180_000 },
  async () => {
    await liveWorker();
    // A copy's delete waits at a gate the test holds while it is closed (a trigger on the target table).
    await stack.pg.query('tgt', HOLD_FUNCTIONS);
    await stack.pg.query(
      'tgt',
      `CREATE TRIGGER hold_delete BEFORE DELETE ON public.orders_b FOR EACH STATEMENT EXECUTE FUNCTION public.hold_statement('${STATEMENT_GATE}')`,
    );
    const s = spec('sessions', 'public.orders_b', { cutover: { approval: 'auto' } });
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
    const verified = async () => (await h.query(progressQuery)).tables[0]?.ranges.verified ?? 0;
    /** Closes the gate and waits until every copy in flight waits there. */
    const holdCopies = async (): Promise<{ gate: AdvisoryGate; held: ActivityRun[] }> => {
      const gate = await advisoryGate(stack.pg, 'tgt', STATEMENT_GATE);
      let held: ActivityRun[] | undefined;
      await until('every copy in flight held at the gate', async () => (held = await heldRuns(h, () => gate.waiting(), 'copyRange')) !== undefined);
      return { gate, held: held! };
    };

    await until('backfilling', async () => (await verified()) >= 2);
    // Every session of ours terminated, on both databases, while the copies wait in theirs.
    const first = await holdCopies();
    const waiting = await first.gate.pids();
    const ended = await stack.pg.query('postgres', `SELECT pid, pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'backfill'`);
    const terminated = ended.rows.filter((r) => r.ok).map((r) => Number(r.pid));
    assert.ok(
      waiting.every((p) => terminated.includes(p)),
      `the held copies' sessions were terminated: ${JSON.stringify({ waiting, terminated })}`,
    );
    await first.gate.open();

    // Then the server restarted under the migration, with the copies in flight held again.
    const at = await verified();
    await until('progress after the terminated sessions', async () => (await verified()) >= at + 2);
    const second = await holdCopies();
    const before = await h.query(progressQuery);
    assert.equal(before.phase, 'backfilling');
    assert.ok(before.tables[0].ranges.verified < 30, 'the restart lands mid-migration');
    await stack.pg.restart();
    await second.gate.open();
    const result = await h.result();
    assert.equal(result.phase, 'completed');
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'public.orders_b'), await fingerprint(stack.pg, 'src', 'public.orders'));
    // The copies each fault interrupted ran again and completed.
    await assertRanAgain(h, first.held);
    await assertRanAgain(h, second.held);
    assert.ok(
      stack.workers.some((w) => w.alive()),
      'the worker survived the killed sessions and the restart',
    );
    await stack.pg.query('tgt', 'DROP TRIGGER hold_delete ON public.orders_b');
  },
);

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
    await h.signal(resumeSignal);
    await assert.rejects(h.result(), (e: unknown) => e instanceof WorkflowFailedError && /column "v" does not exist/.test(String(e.cause?.message)));
    assert.deepEqual([...(await retriedActivities(h)).values()], [], 'a user error must not be retried');
    const p = await h.query(progressQuery);
    assert.equal(p.phase, 'failed');
    assert.match(p.detail ?? '', /column "v" does not exist/);
    // The ledger keeps it, beyond Temporal's retention: on the range that hit it.
    const kept = await stack.pg.query('tgt', `SELECT status, last_error FROM backfill.ranges WHERE migration = $1 AND last_error IS NOT NULL`, [s.name]);
    assert.ok(kept.rows.length >= 1, 'the failure is on a range row');
    assert.match(String(kept.rows[0].last_error), /column "v" does not exist/);
  },
);

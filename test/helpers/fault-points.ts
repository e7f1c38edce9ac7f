// Deterministic fault points: a fault lands where the test's name says, and the test proves it.
//
// - `tableGate` stops every statement on a table at a moment the test chooses (an ACCESS EXCLUSIVE
//   lock held in an open transaction the test owns); `step` lets the statements already waiting
//   run, one at a time, so a multi-statement activity advances statement by statement.
// - `rowGate` stops only the statements that need what one statement of the test's takes (a row it
//   locks, a key it inserts), held in an open transaction: an activity that writes that row or key
//   waits there, in the middle of its own transaction, while everything else runs on.
// - `holdActivity` steps a gate until an activity of the named type is the one waiting at it: the
//   kill or restart that follows lands inside that very activity.
// - `assertRetried` reads the workflow's history afterwards: each named activity type had an
//   attempt after the first (the one the fault interrupted ran again and completed); `since` (what
//   `retriedActivities` said before the fault) counts only activities retried after it, and
//   `untilRetried` waits for one.
import assert from 'node:assert/strict';
import pgLib from 'pg';
import type { WorkflowHandle } from '@temporalio/client';
import { progressQuery, type Progress } from '../../src/workflows/messages';
import type { PostgresServer } from '../../src/infra/postgres';

/** Polls `ok`; an error (a query while no live worker has the workflow, right after a kill) polls on. */
export async function until(what: string, ok: () => Promise<boolean>, ms = 120_000): Promise<void> {
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
}

export interface Gate {
  /** the product's sessions (application_name `backfill`) waiting at the gate, started since the last step */
  waiting(): Promise<number>;
  /** lets the statements waiting now run; the gate closes again behind them */
  step(): Promise<void>;
  /** opens the gate for good */
  open(): Promise<void>;
}

/** Closes a gate on `table` of database `db` on `server` (a name as SQL reads it, e.g. `public.orders`). */
export async function tableGate(server: PostgresServer, db: string, table: string): Promise<Gate> {
  const connect = async () => {
    const c = new pgLib.Client({ connectionString: server.url(db) });
    await c.connect();
    await c.query('BEGIN');
    return c;
  };
  const now = async (c: pgLib.Client) => String((await c.query('SELECT clock_timestamp()::text AS t')).rows[0].t);
  let holder = await connect();
  await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  let since = await now(holder);
  return {
    async waiting() {
      const r = await server.query(
        'postgres',
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'backfill' AND wait_event_type = 'Lock' AND query_start > $1::timestamptz`,
        [since],
      );
      return r.rows[0].n;
    },
    async step() {
      const next = await connect();
      since = await now(next);
      const granted = next.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      // Queued behind the waiting statements before the old lock goes.
      const pid = (next as unknown as { processID: number }).processID;
      await until(
        'the next lock queued',
        async () => (await server.query('postgres', 'SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1 AND NOT granted', [pid])).rows[0].n > 0,
        10_000,
      );
      await holder.query('COMMIT');
      await holder.end();
      await granted;
      holder = next;
    },
    async open() {
      await holder.query('COMMIT');
      await holder.end();
    },
  };
}

/**
 * Closes a gate on whatever `sql` (run with `values` on database `db` of `server`, in a transaction
 * the test keeps open) takes: e.g. an INSERT of a key, which stops the product's insert of the same
 * key until the gate opens (the test's row is rolled back then). It holds once: it cannot step. A
 * gate whose server stopped under it (a restart) is open already.
 */
export async function rowGate(server: PostgresServer, db: string, sql: string, values: unknown[] = []): Promise<Gate> {
  const holder = new pgLib.Client({ connectionString: server.url(db) });
  // The server may go away under the gate (a restart): its session ends, which opens it.
  holder.on('error', () => undefined);
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query(sql, values);
  const pid = (holder as unknown as { processID: number }).processID;
  return {
    async waiting() {
      const r = await server.query(
        'postgres',
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'backfill' AND $1::int = ANY (pg_blocking_pids(pid))`,
        [pid],
      );
      return r.rows[0].n;
    },
    async step() {
      throw new Error('a row gate holds one statement: it opens, it does not step');
    },
    async open() {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end().catch(() => undefined);
    },
  };
}

/** Activities of `type` started and not yet finished (the worker runs them now). */
export async function runningActivities(h: WorkflowHandle, type: string): Promise<number> {
  const d = await h.describe();
  return (d.raw.pendingActivities ?? []).filter((a) => a.activityType?.name === type && Number(a.state) === 2).length;
}

/**
 * Steps `gate` until an activity of `type` runs while a statement waits at the gate: the activity is
 * held there, mid-statement, until the gate opens or steps again.
 */
export async function holdActivity(h: WorkflowHandle, gate: Gate, type: string, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    assert.ok(Date.now() < end, `no ${type} activity was stopped by the gate`);
    // Whatever runs next waits at the gate (a retry after a kill within the heartbeat timeout; the next phase's first statement).
    await until(`a statement waiting at the gate (for ${type})`, async () => (await gate.waiting()) > 0, Math.max(1, end - Date.now()));
    if ((await runningActivities(h, type)) > 0) return;
    await gate.step();
  }
}

/**
 * The activities of the history that ran on an attempt after the first (retried after a fault), by
 * the id of the event that scheduled each: its type. (The history has an attempt once it ended.)
 */
export async function retriedActivities(h: WorkflowHandle): Promise<Map<string, string>> {
  const history = await h.fetchHistory();
  const scheduled = new Map<string, string>();
  const retried = new Map<string, string>();
  for (const e of history.events ?? []) {
    const a = e.activityTaskScheduledEventAttributes;
    if (a) scheduled.set(String(e.eventId), a.activityType?.name ?? '');
    const st = e.activityTaskStartedEventAttributes;
    if (st && (st.attempt ?? 1) > 1) retried.set(String(st.scheduledEventId), scheduled.get(String(st.scheduledEventId)) ?? '');
  }
  return retried;
}

/** The types retried among the activities `since` (retriedActivities before the fault) did not list. */
async function retriedSince(h: WorkflowHandle, since?: Map<string, string>): Promise<Set<string>> {
  const retried = await retriedActivities(h);
  return new Set([...retried].filter(([id]) => !since?.has(id)).map(([, type]) => type));
}

/**
 * Each of `types` ran again after the fault that interrupted it (its history shows a later attempt);
 * with `since`, an activity of that type that was not retried before the fault.
 */
export async function assertRetried(h: WorkflowHandle, types: string[], o: { since?: Map<string, string> } = {}): Promise<void> {
  const retried = await retriedSince(h, o.since);
  for (const type of types) assert.ok(retried.has(type), `no ${type} was retried after the fault: retried were ${[...retried].join(', ') || 'none'}`);
}

/** Waits until an activity of `type` that `since` did not list ran again (its later attempt ended). */
export async function untilRetried(h: WorkflowHandle, type: string, since: Map<string, string>, ms = 120_000): Promise<void> {
  await until(`a ${type} retried after the fault`, async () => (await retriedSince(h, since)).has(type), ms);
}

/** An activity of a workflow: its id, type, the first argument it was scheduled with, and its attempt (the latest known). */
export interface ActivityRun {
  id: string;
  type: string;
  input: Record<string, unknown>;
  attempt: number;
  /** the history has its completion */
  completed: boolean;
}

/** The first argument of a scheduled activity, as the default data converter wrote it (JSON). */
function firstArgument(payloads: { data?: Uint8Array | null }[] | null | undefined): Record<string, unknown> {
  const data = payloads?.[0]?.data;
  return data ? JSON.parse(Buffer.from(data).toString('utf8')) : {};
}

/** Every activity the workflow's history has scheduled, with its input, its last started attempt and whether it completed. */
export async function activityRuns(h: WorkflowHandle): Promise<ActivityRun[]> {
  const history = await h.fetchHistory();
  const byEvent = new Map<string, ActivityRun>();
  for (const e of history.events ?? []) {
    const a = e.activityTaskScheduledEventAttributes;
    if (a)
      byEvent.set(String(e.eventId), {
        id: a.activityId ?? '',
        type: a.activityType?.name ?? '',
        input: firstArgument(a.input?.payloads),
        attempt: 1,
        completed: false,
      });
    const st = e.activityTaskStartedEventAttributes;
    const started = st && byEvent.get(String(st.scheduledEventId));
    if (started) started.attempt = st.attempt ?? 1;
    const done = e.activityTaskCompletedEventAttributes;
    const completed = done && byEvent.get(String(done.scheduledEventId));
    if (completed) completed.completed = true;
  }
  return [...byEvent.values()];
}

/** The activities of `type` running now (started, not finished, as Temporal sees them): the ones a fault that lands now interrupts. */
export async function runningActivityRuns(h: WorkflowHandle, type: string): Promise<ActivityRun[]> {
  const d = await h.describe();
  const running = (d.raw.pendingActivities ?? []).filter((a) => a.activityType?.name === type && Number(a.state) === 2);
  const scheduled = new Map((await activityRuns(h)).map((r) => [r.id, r]));
  return running.map((a) => ({ ...scheduled.get(a.activityId ?? '')!, attempt: a.attempt ?? 1 }));
}

/**
 * The activities of `type` held at a gate: `waiting` (statements waiting there) is read first, then
 * the running activities. Each waiting statement's activity runs, and cannot finish, so when there
 * are at least as many waiting statements as running activities, the running ones are exactly those
 * held, none of them about to finish: for activities that wait with one statement at a time (a copy's
 * target connection, a catch-up round, the switch), or a single one (a sweep measures ranges side by
 * side). Undefined while that is not so.
 */
export async function heldRuns(h: WorkflowHandle, waiting: () => Promise<number>, type: string): Promise<ActivityRun[] | undefined> {
  const n = await waiting();
  const running = await runningActivityRuns(h, type);
  return running.length > 0 && n >= running.length ? running : undefined;
}

/** holdActivity, then waits until every running activity of `type` waits at the gate (heldRuns), and returns them: a fault now lands inside each. */
export async function holdEvery(h: WorkflowHandle, gate: Gate, type: string): Promise<ActivityRun[]> {
  await holdActivity(h, gate, type);
  let held: ActivityRun[] | undefined;
  await until(`every running ${type} waiting at the gate`, async () => (held = await heldRuns(h, () => gate.waiting(), type)) !== undefined);
  return held!;
}

/**
 * Each of `runs`, interrupted by a fault, ran again and completed: the same activity on a later
 * attempt (Temporal's retry), or a later activity of the same type and input (the migration's own
 * retry, after a failure it handles itself: a database that cannot be reached). One that completed
 * on the very attempt the fault should have interrupted fails it: the fault missed it.
 */
export async function assertRanAgain(h: WorkflowHandle, runs: ActivityRun[]): Promise<void> {
  assert.ok(runs.length > 0, 'no activity was held when the fault landed');
  const all = await activityRuns(h);
  const byId = new Map(all.map((r) => [r.id, r]));
  const work = (r: ActivityRun) => `${r.type} ${JSON.stringify(r.input)}`;
  for (const r of runs) {
    const mine = byId.get(r.id);
    assert.ok(
      !(mine?.completed && mine.attempt === r.attempt),
      `${r.type} ${r.id} completed on attempt ${r.attempt}, the one the fault should have interrupted`,
    );
    const again = mine?.completed && mine.attempt > r.attempt ? mine : all.find((x) => x.completed && Number(x.id) > Number(r.id) && work(x) === work(r));
    assert.ok(again, `${r.type} ${r.id} (attempt ${r.attempt}) did not run again`);
  }
}

/** A gate on an advisory lock the test holds: SQL that takes the same lock shared (in a trigger the test puts on a table) waits at it. */
export interface AdvisoryGate {
  /** the product's sessions (application_name `backfill`) waiting at the gate */
  pids(): Promise<number[]>;
  waiting(): Promise<number>;
  /** opens it for good; a gate whose session a server restart ended is open already */
  open(): Promise<void>;
}

/**
 * Closes an advisory gate `key` (a positive int) on database `db`: a statement that runs
 * `pg_advisory_xact_lock_shared(key)` (the test's trigger: before a DELETE, before inserting a
 * chosen row) waits until open(). The holding session may be ended by a server restart: that opens it.
 */
export async function advisoryGate(server: PostgresServer, db: string, key: number): Promise<AdvisoryGate> {
  const holder = new pgLib.Client({ connectionString: server.url(db) });
  holder.on('error', () => undefined);
  await holder.connect();
  await holder.query('SELECT pg_advisory_lock($1::bigint)', [key]);
  const pids = async () =>
    (
      await server.query(
        'postgres',
        `SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid = 0 AND l.objid = $1 AND l.objsubid = 1 AND a.application_name = 'backfill'`,
        [key],
      )
    ).rows.map((r) => Number(r.pid));
  return {
    pids,
    waiting: async () => (await pids()).length,
    async open() {
      await holder.end().catch(() => undefined);
    },
  };
}

/** Polls the progress until `ok`; a query fails while no live worker has the workflow: poll on. */
export async function progressUntil(h: WorkflowHandle, what: string, ok: (p: Progress) => boolean, ms = 150_000): Promise<Progress> {
  let last: Progress | undefined;
  await until(
    what,
    async () => {
      last = await h.query(progressQuery);
      return ok(last);
    },
    ms,
  ).catch((e: Error) => {
    throw new Error(`${e.message}; last: ${JSON.stringify(last)}`);
  });
  return last!;
}

/** Runs `sql` in one transaction on `db`; returns its transaction id as a stream (and the capture log) carries it. */
export async function transactionOn(server: PostgresServer, db: string, sql: string): Promise<string> {
  const c = new pgLib.Client({ connectionString: server.url(db) });
  await c.connect();
  try {
    await c.query('BEGIN');
    await c.query(sql);
    const xid = String((await c.query(`SELECT (pg_current_xact_id()::text::bigint % 4294967296)::text AS xid`)).rows[0].xid);
    await c.query('COMMIT');
    return xid;
  } finally {
    await c.end();
  }
}

/** How often the capture log on `db` has transaction `xid` of `migration`'s stream, and the rows logged for it. */
export async function loggedOn(server: PostgresServer, db: string, migration: string, xid: string): Promise<{ times: number; rows: number }> {
  const r = await server.query(
    db,
    `SELECT count(*)::int AS times, coalesce(sum(rows), 0)::int AS rows FROM backfill.capture_log WHERE migration = $1 AND xid = $2::bigint`,
    [migration, xid],
  );
  return r.rows[0] as { times: number; rows: number };
}

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

// Deterministic fault points: a fault lands where the test's name says, and the test proves it.
//
// - `tableGate` stops every statement on a table at a moment the test chooses (an ACCESS EXCLUSIVE
//   lock held in an open transaction the test owns); `step` lets the statements already waiting
//   run, one at a time, so a multi-statement activity advances statement by statement.
// - `holdActivity` steps a gate until an activity of the named type is the one waiting at it: the
//   kill or restart that follows lands inside that very activity.
// - `assertRetried` reads the workflow's history afterwards: each named activity type had an
//   attempt after the first (the one the fault interrupted ran again and completed).
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

export interface TableGate {
  /** the product's sessions (application_name `backfill`) waiting at the gate, started since the last step */
  waiting(): Promise<number>;
  /** lets the statements waiting now run; the gate closes again behind them */
  step(): Promise<void>;
  /** opens the gate for good */
  open(): Promise<void>;
}

/** Closes a gate on `table` of database `db` on `server` (a name as SQL reads it, e.g. `public.orders`). */
export async function tableGate(server: PostgresServer, db: string, table: string): Promise<TableGate> {
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

/** Activities of `type` started and not yet finished (the worker runs them now). */
export async function runningActivities(h: WorkflowHandle, type: string): Promise<number> {
  const d = await h.describe();
  return (d.raw.pendingActivities ?? []).filter((a) => a.activityType?.name === type && Number(a.state) === 2).length;
}

/**
 * Steps `gate` until an activity of `type` runs while a statement waits at the gate: the activity is
 * held there, mid-statement, until the gate opens or steps again.
 */
export async function holdActivity(h: WorkflowHandle, gate: TableGate, type: string, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    assert.ok(Date.now() < end, `no ${type} activity was stopped by the gate`);
    // Whatever runs now waits at the gate within a moment (a retry after a kill within the heartbeat timeout).
    await until('a statement waiting at the gate', async () => (await gate.waiting()) > 0, 30_000);
    if ((await runningActivities(h, type)) > 0) return;
    await gate.step();
  }
}

/** The activity types of the history that completed on an attempt after the first (retried after a fault). */
export async function retriedActivityTypes(h: WorkflowHandle): Promise<Set<string>> {
  const history = await h.fetchHistory();
  const scheduled = new Map<string, string>();
  const retried = new Set<string>();
  for (const e of history.events ?? []) {
    const a = e.activityTaskScheduledEventAttributes;
    if (a) scheduled.set(String(e.eventId), a.activityType?.name ?? '');
    const st = e.activityTaskStartedEventAttributes;
    if (st && (st.attempt ?? 1) > 1) retried.add(scheduled.get(String(st.scheduledEventId)) ?? '');
  }
  return retried;
}

/** Each of `types` ran again after the fault that interrupted it (its history shows a later attempt). */
export async function assertRetried(h: WorkflowHandle, types: string[]): Promise<void> {
  const retried = await retriedActivityTypes(h);
  for (const type of types) assert.ok(retried.has(type), `no ${type} was retried after the fault: retried were ${[...retried].join(', ') || 'none'}`);
}

// A cap on our sessions per database, across every worker: BACKFILL_SESSIONS (or, for one alias,
// BACKFILL_SESSIONS_<ALIAS>) allows at most K of them open at once on a database, however many workers
// run. Each session we open takes one of K slots, a session-level advisory lock in that database,
// right after it connects; when none is free it is closed at once and opened again a little later, so
// a session waiting for its turn holds nothing on the server. The slot goes when the session ends
// (the lock is the session's, so a killed worker's slots go with its connections), and a capped pool
// closes its idle sessions within a second, so that one worker's idle sessions do not keep another
// worker's ranges waiting.
import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';
import { setting } from '../settings';
import { sessionCapFor } from '../spec/aliases';

/** The advisory lock class of the slots (two-int form: the slot is the second key). */
export const SESSION_SLOT_CLASS = 0x62667373; // "bfss"

/** How long a new session may wait for a free slot before the activity fails (and is tried again). */
const WAIT_BOUND_MS = 60_000;

/** The first free slot, taken: exactly one lock, or none (Limit stops the scan at the first taken). */
const TAKE_SLOT = `SELECT s FROM generate_series(0, $2::int - 1) AS s WHERE pg_try_advisory_lock($1::int, s) LIMIT 1`;

/** Every slot was taken: the session is closed and opened again later. */
class NoSessionFree extends Error {
  constructor(
    readonly alias: string,
    readonly cap: number,
  ) {
    super(`all ${cap} sessions allowed on "${alias}" are in use (BACKFILL_SESSIONS)`);
    this.name = 'NoSessionFree';
  }
}

/** The cap on our sessions on the database of `alias`, or undefined: none. */
export function sessionCap(alias: string, env: NodeJS.ProcessEnv = process.env): number | undefined {
  return sessionCapFor(alias, env) ?? setting('sessions', env);
}

/** The caps on the aliases of a migration, by alias (empty: none capped). */
export function sessionCaps(aliases: (string | undefined)[], env: NodeJS.ProcessEnv = process.env): Record<string, number> {
  const caps: Record<string, number> = {};
  for (const a of aliases) {
    const cap = a === undefined ? undefined : sessionCap(a, env);
    if (a !== undefined && cap !== undefined) caps[a] = cap;
  }
  return caps;
}

/** The pool's onConnect: the new session takes a slot, or is refused (the pool then closes it). */
export function takeSlot(alias: string, cap: number): (c: pg.ClientBase) => Promise<void> {
  return async (c) => {
    const r = await c.query<{ s: number }>(TAKE_SLOT, [SESSION_SLOT_CLASS, cap]);
    if (r.rows.length === 0) throw new NoSessionFree(alias, cap);
  };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `connect` again while every slot is taken, with a growing pause (20 ms to 1 s, jittered), for at
 * most a minute; then the last refusal stands, naming the alias and its cap.
 */
export async function untilSlotFree<T>(connect: () => Promise<T>): Promise<T> {
  const started = Date.now();
  let refused = false;
  try {
    for (let pauseMs = 20; ; pauseMs = Math.min(1000, pauseMs * 2)) {
      try {
        return await connect();
      } catch (e) {
        if (!(e instanceof NoSessionFree) || Date.now() - started > WAIT_BOUND_MS) throw e;
        refused = true;
        await pause(pauseMs / 2 + Math.random() * pauseMs);
      }
    }
  } finally {
    const w = waits.getStore();
    if (w && refused) w.ms += Date.now() - started;
  }
}

const waits = new AsyncLocalStorage<{ ms: number }>();

/** Runs `fn`, and tells how long its sessions waited for a slot (ms; waits in parallel add up). */
export async function timingSessionWaits<T>(fn: () => Promise<T>): Promise<{ out: T; waitedMs: number }> {
  const w = { ms: 0 };
  const out = await waits.run(w, fn);
  return { out, waitedMs: w.ms };
}

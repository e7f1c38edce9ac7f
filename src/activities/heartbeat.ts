// Liveness: every activity heartbeats while it runs, so a worker killed mid-activity is noticed
// within the heartbeat timeout and the activity retried elsewhere (not after its start-to-close).
import { hostname } from 'node:os';
import { Context } from '@temporalio/activity';

const HEARTBEAT_EVERY_MS = 3000;

/** How often a running activity beats: every 3 s, or three times within a shorter heartbeat timeout (`retries.heartbeat`). */
function beatEveryMs(ctx: Context): number {
  const timeout = ctx.info.heartbeatTimeoutMs;
  return timeout ? Math.min(HEARTBEAT_EVERY_MS, Math.floor(timeout / 3)) : HEARTBEAT_EVERY_MS;
}

/** Who ran a range: recorded in the ledger, so shared work is visible. */
export const WORKER_ID = `${hostname()}:${process.pid}`;

/** The details an activity reported last: liveness beats repeat them instead of erasing them. */
const latest = new WeakMap<Context, Record<string, unknown>>();

/** Heartbeats `details` merged into what this activity reported before (a sweep's cursor, a copy's bytes). */
export function heartbeat(details: Record<string, unknown>): void {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return; // not inside an activity (direct calls from tests and the CLI)
  }
  const merged = { ...(latest.get(ctx) ?? {}), ...details };
  latest.set(ctx, merged);
  ctx.heartbeat(merged);
}

/** What the previous attempt of this activity reported last (to resume from), if anything. */
export function previousDetails(): Record<string, unknown> {
  try {
    const d = Context.current().info.heartbeatDetails as unknown;
    return d && typeof d === 'object' ? (d as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

async function keepAlive<T>(fn: () => Promise<T>): Promise<T> {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return fn(); // called directly (tests, the CLI's validate)
  }
  const timer = setInterval(() => ctx.heartbeat(latest.get(ctx)), beatEveryMs(ctx));
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

export function alive<A extends unknown[], R>(fn: (...a: A) => Promise<R>): (...a: A) => Promise<R> {
  return (...a: A) => keepAlive(() => fn(...a));
}

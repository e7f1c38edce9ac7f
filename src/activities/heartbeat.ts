// Liveness: every activity heartbeats while it runs, so a worker killed mid-activity is noticed
// within the heartbeat timeout and the activity retried elsewhere (not after its start-to-close).
import { hostname } from 'node:os';
import { Context } from '@temporalio/activity';

export const HEARTBEAT_EVERY_MS = 3000;

/** Who ran a range: recorded in the ledger, so shared work is visible. */
export const WORKER_ID = `${hostname()}:${process.pid}`;

export async function keepAlive<T>(fn: () => Promise<T>): Promise<T> {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return fn(); // called directly (tests, the CLI's validate)
  }
  const timer = setInterval(() => ctx.heartbeat(), HEARTBEAT_EVERY_MS);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

export function alive<A extends unknown[], R>(fn: (...a: A) => Promise<R>): (...a: A) => Promise<R> {
  return (...a: A) => keepAlive(() => fn(...a));
}

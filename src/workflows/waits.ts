// Waiting in sight. An activity that cannot reach a database fails at once (DatabaseUnreachable, not
// retried by Temporal out of sight), and one whose quick retries ran out fails too; the migration
// then says what it waits for in the progress, the UI's current details and `status`, tries again
// with a growing pause on a workflow timer (which an abort or a cancellation ends at once), and
// after `retries.unreachable` waits in needs_attention for a person: resume tries again, abort ends.
// Every other failure goes to its caller unchanged.
import { ActivityFailure, ApplicationFailure, CancelledFailure, condition, patched } from '@temporalio/workflow';
import { isFailure } from '../domain/failures';
import { pauseAfter, strandedWhy } from '../domain/waits';
import { waitBound } from '../spec/schema';
import type { MigrationState } from './state';

/** The migration whose activities wait in sight (one per workflow execution: modules are per execution). */
let owner: MigrationState | undefined;

export function waitInSight(s: MigrationState): void {
  owner = s;
}

interface Trouble {
  /** a database that cannot be reached, or an activity whose quick retries ran out */
  kind: 'unreachable' | 'failing';
  key: string;
  what: string;
  error: string;
}

/** What a failed activity waits for, or undefined when its failure goes to the caller. */
function troubleOf(e: unknown, activity: string): Trouble | undefined {
  if (!(e instanceof ActivityFailure)) return undefined;
  const cause = e.cause;
  if (cause instanceof ApplicationFailure && isFailure(cause, 'DatabaseUnreachable')) {
    const d = (cause.details?.[0] ?? {}) as { alias?: string; host?: string; error?: string };
    const alias = d.alias ?? 'a database';
    return {
      kind: 'unreachable',
      key: `database ${alias}`,
      what: `${alias}${d.host ? ` (${d.host})` : ''}`,
      error: `cannot be reached: ${d.error ?? cause.message}`,
    };
  }
  // Quick retries that ran out on something retryable (a refusal, a snapshot gone, are the caller's).
  if (e.retryState !== 'MAXIMUM_ATTEMPTS_REACHED') return undefined;
  if (cause instanceof CancelledFailure) return undefined;
  if (cause instanceof ApplicationFailure && (cause.nonRetryable || isFailure(cause, 'SnapshotGone'))) return undefined;
  return { kind: 'failing', key: `activity ${activity}`, what: `the activity ${activity}`, error: `keeps failing: ${cause?.message ?? e.message}` };
}

/** Ends a wait when the migration is aborted: the caller sees a cancellation, and the abort is what ends it. */
function abortedWhileWaiting(s: MigrationState, t: Trouble): CancelledFailure {
  return new CancelledFailure(`aborted while waiting for ${t.what}: ${s.control.aborted}`);
}

async function waitOut(s: MigrationState, t: Trouble, attempt: number): Promise<void> {
  const w = s.waits.failedTry(t.key, t.what, t.error);
  const bound = waitBound(s.spec);
  if (Date.now() - Date.parse(w.since) < bound.ms) {
    const ms = pauseAfter(attempt);
    s.waits.nextTry(t.key, new Date(Date.now() + ms).toISOString());
    s.touch();
    if (await condition(() => s.control.aborted !== undefined, ms)) throw abortedWhileWaiting(s, t);
    return;
  }
  s.waits.nextTry(t.key, undefined);
  s.strand(strandedWhy(w, s.name, bound.text));
  const resumes = s.waits.resumeSignals;
  await condition(() => s.control.aborted !== undefined || s.waits.resumeSignals !== resumes);
  if (s.control.aborted !== undefined) throw abortedWhileWaiting(s, t);
  s.unstrand();
}

async function inSight<R>(activity: string, run: () => Promise<R>): Promise<R> {
  let seen: Trouble | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      const out = await run();
      if (seen) owner?.reached(seen.key);
      return out;
    } catch (e) {
      const s = owner;
      // An abort asked for: nothing more is waited for (cleanup calls fail as they are).
      const trouble = s && s.spec && s.control.aborted === undefined ? troubleOf(e, activity) : undefined;
      // (Patched: migrations started before this let Temporal retry out of sight.)
      if (!s || !trouble || !patched('waits-in-sight')) {
        // It failed otherwise after a wait: what it waited for answered (the caller has the rest).
        if (seen && (!trouble || trouble.key !== seen.key)) s?.reached(seen.key);
        throw e;
      }
      seen = trouble;
      await waitOut(s, trouble, attempt);
    }
  }
}

/**
 * For a failure that did not come through `waitingInSight` (the snapshot holder, which the caller
 * starts again itself): waits in sight when it says a database cannot be reached, then returns true
 * (try again); false when it is anything else, or before this was patched.
 */
export async function waitedInSight(e: unknown, activity: string, attempt: number): Promise<boolean> {
  const s = owner;
  const trouble = s && s.spec && s.control.aborted === undefined ? troubleOf(e, activity) : undefined;
  if (!s || !trouble || trouble.kind !== 'unreachable' || !patched('waits-in-sight')) return false;
  await waitOut(s, trouble, attempt);
  return true;
}

/** It answered: whatever `waitedInSight` waited for is no longer waited for. */
export function reachedAgain(e: unknown, activity: string): void {
  const trouble = troubleOf(e, activity);
  if (trouble) owner?.reached(trouble.key);
}

/** The same activities, each waiting in sight for what it cannot reach. */
export function waitingInSight<T extends object>(activities: T): T {
  return new Proxy(activities, {
    get(target, prop) {
      const fn = (target as Record<string | symbol, unknown>)[prop];
      if (typeof fn !== 'function') return fn;
      return (...args: unknown[]) => inSight(String(prop), () => (fn as (...a: unknown[]) => Promise<unknown>)(...args));
    },
  });
}

// Waiting in sight: when a database cannot be reached, or an activity's quick retries ran out, the
// migration says what it waits for (which connection, where, why, since when, the next try) where
// the operator looks, tries again with a growing pause, and after a bounded time waits for a person
// in needs_attention. Pure: the workflow keeps the waits, the renderers print them.

/** How long the migration tries again by itself before it waits for a person (`retries.unreachable`). */
export const DEFAULT_WAIT_BOUND = '5 minutes';

/** What one thing the migration waits for looks like to a person. */
export interface Waiting {
  /** `source (db.example.com:5432)`, or an activity whose retries ran out */
  what: string;
  /** the last error, in the driver's or the server's words */
  error: string;
  /** when it was first seen (ISO) */
  since: string;
  /** tries that failed so far */
  tries: number;
  /** when the next try is due (ISO); absent while it waits for a person */
  nextTryAt?: string;
}

/** The pause before try `attempt + 1` of one call: 1 s, 2 s, 4 s … at most 30 s. */
export function pauseAfter(attempt: number): number {
  return Math.min(1000 * 2 ** Math.max(0, attempt - 1), 30_000);
}

const seconds = (ms: number) => `${Math.max(0, Math.round(ms / 1000))} s`;
/** 10:01:02Z of an ISO time (UTC). */
const clock = (iso: string) => iso.replace(/^.*T/, '').replace(/\.\d+Z$/, 'Z');

/** `source (h:5432) cannot be reached: connect ECONNREFUSED …; 3 failed tries since 10:01:02Z, next try at 10:01:10Z (in 4 s)`. */
export function waitingLine(w: Waiting, nowMs: number): string {
  const since = clock(w.since);
  const next = w.nextTryAt ? `next try at ${clock(w.nextTryAt)} (in ${seconds(Date.parse(w.nextTryAt) - nowMs)})` : 'waiting for a person (resume or abort)';
  return `${w.what} ${w.error}; ${w.tries} failed ${w.tries === 1 ? 'try' : 'tries'} since ${since}, ${next}`;
}

/** Why the migration waits for a person after trying for `boundText`. */
export function strandedWhy(w: Waiting, migration: string, boundText: string): string {
  return `${w.what} ${w.error} (${w.tries} failed tries over ${boundText}); fix it, then \`backfill resume ${migration}\` to try again, or \`backfill abort ${migration}\``;
}

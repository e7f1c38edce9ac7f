// Sharing the ranges among workers. A Temporal server with eager activity execution hands an activity
// the workflow schedules straight back to the worker that ran the workflow task, when that worker has
// a free slot: no trip through the task queue, about half the cost per range. But then that one worker
// proves nearly every range, however many others poll the queue. So a range goes eagerly only while
// the ranges proven lately were all proven by one worker, and even then every PROBE_EVERY-th range goes
// through the task queue, where an idle worker can take it. Once a second worker proves a range, every
// range goes through the task queue (which spreads them over every worker polling it) until the
// recent ranges are one worker's again (the others stopped). Decided from activity results only, so a
// replay decides alike.

/** How many of the latest proven ranges say who is working. */
export const RECENT_RANGES = 16;
/** With one worker in sight, one range in this many still goes through the task queue. */
export const PROBE_EVERY = 4;

export interface Sharing {
  /** the workers that proved the latest ranges, oldest first (at most RECENT_RANGES) */
  recent: string[];
  /** ranges dispatched so far in this run */
  dispatched: number;
}

export const noSharing = (): Sharing => ({ recent: [], dispatched: 0 });

/** The workers in sight: those that proved one of the latest ranges. */
export function workersInSight(s: Sharing): number {
  return new Set(s.recent).size;
}

/** Whether the next range may go to the scheduling worker itself; the count moves on either way. */
export function dispatchNext(s: Sharing): { eager: boolean; next: Sharing } {
  const dispatched = s.dispatched + 1;
  const eager = workersInSight(s) <= 1 && dispatched % PROBE_EVERY !== 0;
  return { eager, next: { ...s, dispatched } };
}

/** A range proven by `worker` (results from before workers were named leave it as it was). */
export function provenBy(s: Sharing, worker: string | undefined): Sharing {
  if (!worker) return s;
  return { ...s, recent: [...s.recent, worker].slice(-RECENT_RANGES) };
}

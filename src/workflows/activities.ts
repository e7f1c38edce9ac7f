// The activities as the workflow calls them: explicit timeouts, the heartbeat timeout from the spec.
import { ActivityCancellationType, proxyActivities, type ActivityOptions } from '@temporalio/workflow';
import type * as activities from '../activities';
import { DEFAULT_HEARTBEAT, durationMs, type MigrationSpec } from '../spec/schema';
import { waitingInSight } from './waits';

// A few quick tries here (a blip, a worker that died); beyond them the migration waits in sight
// (waits.ts): it says what fails, tries again on its own timer, and asks a person after a while.
const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 };

// Every activity heartbeats while it runs: the heartbeat timeout is what notices a dead worker, so
// the start-to-close timeout can leave room for a range, a plan or a reconciliation of any size.
const OPTIONS = { startToCloseTimeout: '24 hours', retry } as const;

/** The heartbeat timeout of every activity scheduled (one per workflow execution: modules are per execution). */
let heartbeatTimeout: ActivityOptions['heartbeatTimeout'] = DEFAULT_HEARTBEAT;

/** From here on, activities are scheduled with the spec's `retries.heartbeat` (without it, as before it existed). */
export function heartbeatFrom(spec: MigrationSpec): void {
  heartbeatTimeout = spec.retries.heartbeat === undefined ? DEFAULT_HEARTBEAT : durationMs(spec.retries.heartbeat);
}

type Activities = ReturnType<typeof proxyActivities<typeof activities>>;

/** The activities, each scheduled with `options` and the heartbeat timeout as it is when it is called. */
function scheduled(options: ActivityOptions): Activities {
  return new Proxy({} as Activities, {
    get: (_, name) => proxyActivities<typeof activities>({ ...options, heartbeatTimeout })[name as keyof Activities],
  });
}

export const acts = waitingInSight(scheduled(OPTIONS));

/**
 * The same activities, each scheduled with a one-line summary the Temporal UI shows on its bar.
 * `eager: false`: not handed back to this worker by eager execution, but queued for any worker
 * (domain/sharing.ts decides for the ranges).
 */
export function summarised(summary: string, o: { eager?: boolean } = {}): typeof acts {
  return waitingInSight(scheduled({ ...OPTIONS, summary, ...(o.eager === false ? { allowEagerDispatch: false } : {}) }));
}

/** For cleanup on the way out of a failed migration: a few tries, then the failure stands. */
export const lastTries = scheduled({
  startToCloseTimeout: '1 hour',
  retry: { ...retry, maximumAttempts: 3 },
});

/**
 * The holder of a change-capture snapshot: it runs until cancelled, and is not retried (a new
 * snapshot is a new epoch, which the workflow opens itself). The workflow lets go without waiting.
 */
export const holders = scheduled({
  startToCloseTimeout: '30 days',
  retry: { maximumAttempts: 1 },
  cancellationType: ActivityCancellationType.TRY_CANCEL,
  summary: 'hold the snapshot the ranges are copied at',
});

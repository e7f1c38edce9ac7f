// The activities as the workflow calls them: one proxy, explicit timeouts.
import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type * as activities from '../activities';
import { waitingInSight } from './waits';

// A few quick tries here (a blip, a worker that died); beyond them the migration waits in sight
// (waits.ts): it says what fails, tries again on its own timer, and asks a person after a while.
const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 };

// Every activity heartbeats while it runs: the heartbeat timeout is what notices a dead worker, so
// the start-to-close timeout can leave room for a range, a plan or a reconciliation of any size.
const OPTIONS = { startToCloseTimeout: '24 hours', heartbeatTimeout: '15 seconds', retry } as const;

export const acts = waitingInSight(proxyActivities<typeof activities>(OPTIONS));

/**
 * The same activities, each scheduled with a one-line summary the Temporal UI shows on its bar.
 * `eager: false`: not handed back to this worker by eager execution, but queued for any worker
 * (domain/sharing.ts decides for the ranges).
 */
export function summarised(summary: string, o: { eager?: boolean } = {}): typeof acts {
  return waitingInSight(proxyActivities<typeof activities>({ ...OPTIONS, summary, ...(o.eager === false ? { allowEagerDispatch: false } : {}) }));
}

/** For cleanup on the way out of a failed migration: a few tries, then the failure stands. */
export const lastTries = proxyActivities<typeof activities>({
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '15 seconds',
  retry: { ...retry, maximumAttempts: 3 },
});

/**
 * The holder of a change-capture snapshot: it runs until cancelled, and is not retried (a new
 * snapshot is a new epoch, which the workflow opens itself). The workflow lets go without waiting.
 */
export const holders = proxyActivities<typeof activities>({
  startToCloseTimeout: '30 days',
  heartbeatTimeout: '15 seconds',
  retry: { maximumAttempts: 1 },
  cancellationType: ActivityCancellationType.TRY_CANCEL,
  summary: 'hold the snapshot the ranges are copied at',
});

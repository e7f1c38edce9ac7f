// The activities as the workflow calls them: one proxy, explicit timeouts.
import { proxyActivities } from '@temporalio/workflow';
import type * as activities from '../activities';

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 30 };

// Every activity heartbeats while it runs: the heartbeat timeout is what notices a dead worker, so
// the start-to-close timeout can leave room for a range, a plan or a reconciliation of any size.
export const acts = proxyActivities<typeof activities>({ startToCloseTimeout: '24 hours', heartbeatTimeout: '15 seconds', retry });

/** For cleanup on the way out of a failed migration: a few tries, then the failure stands. */
export const lastTries = proxyActivities<typeof activities>({ startToCloseTimeout: '1 hour', heartbeatTimeout: '15 seconds', retry: { ...retry, maximumAttempts: 3 } });

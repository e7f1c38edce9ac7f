// Every activity attempt the worker runs, seen from the worker's activity interceptor: one that
// failed counts in `backfill_activity_failures_total` by its activity and error type, one that Temporal
// started again after a failure or a timeout counts in `backfill_activity_retries_total`. An activity
// failing and retrying (an unreachable target, a lock that never comes) shows there before anything
// else moves.
import { ApplicationFailure, type ActivityCancellationDetails } from '@temporalio/common';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { METRICS } from './catalog';
import { activityLabels, record } from './meter';

/** Label values stay short (a type, not a message). */
const MAX_TYPE = 64;

/**
 * What failed an attempt, as a label value: an ApplicationFailure's type (a database error is `PG`
 * and its SQLSTATE, a network error its code: src/db/errors.ts), the timeout or shutdown that
 * cancelled it, else the error's name. Undefined when the attempt was cancelled on purpose (by the
 * workflow, a pause or a reset): that is no failure.
 */
export function errorTypeOf(e: unknown, cancelled: ActivityCancellationDetails | undefined): string | undefined {
  if (cancelled) {
    if (cancelled.cancelRequested || cancelled.paused || cancelled.reset) return undefined;
    if (cancelled.timedOut) return 'TimedOut';
    if (cancelled.workerShutdown) return 'WorkerShutdown';
    if (cancelled.notFound) return 'NotFound';
  }
  const type = e instanceof ApplicationFailure ? e.type : e instanceof Error ? e.name : undefined;
  return (type || 'Unknown').slice(0, MAX_TYPE);
}

/** The worker's activity interceptor: counts failed attempts and retries by activity type. */
export const attemptMetrics: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      const at = activityLabels(ctx.info);
      if (ctx.info.attempt > 1) record(METRICS.activityRetries, 1, at);
      try {
        return await next(input);
      } catch (e) {
        const type = errorTypeOf(e, ctx.cancellationSignal.aborted ? ctx.cancellationDetails : undefined);
        if (type) record(METRICS.activityFailures, 1, { ...at, error_type: type });
        throw e;
      }
    },
  },
});

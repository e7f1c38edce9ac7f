// What leaves an activity, whatever it threw: a failure a person can read. A database that cannot
// be reached is told as such (DatabaseUnreachable: the migration says which one and waits in sight);
// anything else keeps its classification (src/db/errors.ts); no failure carries a stack trace,
// whose worker source paths would show in the Temporal UI's Pending Activities and history.
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, Next } from '@temporalio/worker';
import { toFailure, unreachableFailure } from '../db/errors';

/** One failure out of anything an activity throws (a cancellation stays a cancellation). */
function plainActivityFailure(e: unknown, activityType: string): unknown {
  if (e instanceof CancelledFailure) return e;
  if (e instanceof ApplicationFailure) {
    const unreachable = unreachableFailure(e.cause ?? e, e.message);
    if (unreachable) return unreachable;
    e.stack = '';
    return e;
  }
  return toFailure(e, activityType);
}

export class PlainFailures implements ActivityInboundCallsInterceptor {
  /** `stop`: the activity's cancellation signal */
  constructor(
    private readonly activityType: string,
    private readonly stop?: AbortSignal,
  ) {}

  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
    try {
      return await next(input);
    } catch (e) {
      // Asked to stop (cancelled, timed out, its worker shutting down): whatever the stop broke on
      // the way out (a connection closed under a query) is the cancellation, not a failure of its own.
      const reason: unknown = this.stop?.aborted ? this.stop.reason : undefined;
      if (reason instanceof CancelledFailure) throw reason;
      throw plainActivityFailure(e, this.activityType);
    }
  }
}

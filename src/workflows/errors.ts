// What a person reads when a migration stops or refuses: the root cause of an activity failure (a
// preflight message, a dropped column), not "Activity task failed"; and no stack trace, whose worker
// source paths mean nothing in the Temporal UI or CLI.
import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';
import type { MigrationResult } from './messages';

export function rootCause(e: unknown): Error {
  let cur = e as Error & { cause?: unknown };
  while (cur instanceof ActivityFailure && cur.cause instanceof Error) cur = cur.cause;
  return cur;
}

/** A non-retryable failure carrying its message alone. */
export function plainFailure(type: string, message: string, details?: unknown[]): ApplicationFailure {
  const f = ApplicationFailure.create({ type, message, nonRetryable: true, details });
  f.stack = '';
  return f;
}

/** The failure type of an aborted migration (the `abort` signal, or Temporal's cancellation). */
export const ABORTED = 'Aborted';

/**
 * How an aborted migration ends: Failed, type Aborted, its result in the details. Not Completed
 * (green in the UI), and the same for the abort signal and Temporal's cancellation: only a
 * cancellation request can end a workflow as Canceled, a signal cannot.
 */
export function abortedFailure(result: MigrationResult): ApplicationFailure {
  return plainFailure(ABORTED, `aborted: ${result.reason ?? 'by an operator'}`, [result]);
}

/** A change-capture range or sweep that found its epoch's snapshot gone (its holder ended). */
export function isSnapshotGone(e: unknown): boolean {
  const root = rootCause(e);
  return root instanceof ApplicationFailure && root.type === 'SnapshotGone';
}

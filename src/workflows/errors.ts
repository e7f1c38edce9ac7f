// What a person reads when a migration stops or refuses: the root cause of an activity failure (a
// preflight message, a dropped column), not "Activity task failed"; and no stack trace, whose worker
// source paths mean nothing in the Temporal UI or CLI. The failure types are the catalog's
// (src/domain/failures.ts).
import { ApplicationFailure } from '@temporalio/workflow';
import { failure, isFailure, rootFailure } from '../domain/failures';
import type { MigrationResult } from './messages';

export function rootCause(e: unknown): Error {
  return rootFailure(e) as Error;
}

/** The failure a migration ends with for a root cause of any type: its type and message, not retried, no stack. */
export function endingFailure(root: ApplicationFailure, message = root.message): ApplicationFailure {
  const f = ApplicationFailure.create({ type: root.type ?? 'Error', message, nonRetryable: true, details: root.details as unknown[] });
  f.stack = '';
  return f;
}

/**
 * How an aborted migration ends: Failed, type Aborted, its result in the details. Not Completed
 * (green in the UI), and the same for the abort signal and Temporal's cancellation: only a
 * cancellation request can end a workflow as Canceled, a signal cannot.
 */
export function abortedFailure(result: MigrationResult): ApplicationFailure {
  return failure('Aborted', `aborted: ${result.reason ?? 'by an operator'}`, [result]);
}

/** A change-capture range or sweep that found its epoch's snapshot gone (its holder ended). */
export function isSnapshotGone(e: unknown): boolean {
  return isFailure(e, 'SnapshotGone');
}

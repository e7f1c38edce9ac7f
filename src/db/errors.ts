// Turning database and network errors into Temporal failures: user errors (a missing column, a
// revoked privilege, bad SQL in the spec) are non-retryable; transient ones retry with backoff.
import { ApplicationFailure } from '@temporalio/common';
import { databaseFailure, failure, isSqlstate, otherFailure } from '../domain/failures';
import { redact } from './redact';
import { unreachableMessage, unreachableOf } from './reach';
import { codeOf, isUserError } from './sqlstate';

/**
 * A database that cannot be reached: not retried here, out of sight, but handed to the migration at
 * once, which says which one, where and why, and tries again itself (or waits for a person).
 */
export function unreachableFailure(e: unknown, context: string): ApplicationFailure | undefined {
  const u = unreachableOf(e);
  if (!u) return undefined;
  return failure('DatabaseUnreachable', redact(`${unreachableMessage(u)} (${context})`), [{ ...u, error: redact(u.error) }]);
}

export function toFailure(e: unknown, context: string): ApplicationFailure {
  if (e instanceof ApplicationFailure) return e;
  const unreachable = unreachableFailure(e, context);
  if (unreachable) return unreachable;
  const err = e as { message?: string; detail?: string };
  const code = codeOf(e);
  const detail = err?.detail ? ` (${err.detail})` : '';
  const message = redact(`${context}: ${err?.message ?? String(e)}${detail}`);
  // A replication slot that lost its WAL (`final`): no retry can cure it.
  if ((e as { final?: unknown })?.final === true) return failure('SlotLost', message);
  // No stack (the catalog's constructors): what a person reads (Pending Activities too) is the message.
  if (code && isSqlstate(code)) return databaseFailure(code, message, isUserError(code));
  return otherFailure(message, code);
}

/** Wraps an async function so that whatever it throws leaves as a redacted, classified failure. */
export async function guarded<T>(context: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toFailure(e, context);
  }
}

// Turning database and network errors into Temporal failures: user errors (a missing column, a
// revoked privilege, bad SQL in the spec) are non-retryable; transient ones retry with backoff.
import { ApplicationFailure } from '@temporalio/common';
import { redact } from './redact';
import { unreachableMessage, unreachableOf } from './reach';
import { UNREACHABLE } from '../policy/waits';

const NON_RETRYABLE_CLASSES = ['22', '23', '28', '3D', '3F', '42', '0A', '2B', '44'];

export function isUserError(code: string | undefined): boolean {
  return Boolean(code && NON_RETRYABLE_CLASSES.some((c) => code.startsWith(c)));
}

/**
 * A database that cannot be reached: not retried here, out of sight, but handed to the migration at
 * once, which says which one, where and why, and tries again itself (or waits for a person).
 */
export function unreachableFailure(e: unknown, context: string): ApplicationFailure | undefined {
  const u = unreachableOf(e);
  if (!u) return undefined;
  const f = ApplicationFailure.create({
    type: UNREACHABLE,
    message: redact(`${unreachableMessage(u)} (${context})`),
    nonRetryable: true,
    details: [{ ...u, error: redact(u.error) }],
  });
  f.stack = '';
  return f;
}

export function toFailure(e: unknown, context: string): ApplicationFailure {
  if (e instanceof ApplicationFailure) return e;
  const unreachable = unreachableFailure(e, context);
  if (unreachable) return unreachable;
  const err = e as { code?: string; message?: string; detail?: string };
  const code = typeof err?.code === 'string' ? err.code : undefined;
  const detail = err?.detail ? ` (${err.detail})` : '';
  const message = redact(`${context}: ${err?.message ?? String(e)}${detail}`);
  const f = ApplicationFailure.create({
    type: code && /^[0-9A-Z]{5}$/.test(code) ? `PG${code}` : code ?? 'Error',
    message,
    nonRetryable: isUserError(code),
  });
  // Its stack would name this file: what a person reads (Pending Activities too) is the message.
  f.stack = '';
  return f;
}

/** Wraps an async function so that whatever it throws leaves as a redacted, classified failure. */
export async function guarded<T>(context: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toFailure(e, context);
  }
}

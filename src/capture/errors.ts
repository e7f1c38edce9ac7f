// Errors meant for people: one plain sentence, the server's own words at the end, and nothing
// that names a connection (no URL, no password, no stack). `code` keeps the SQLSTATE so the
// activity layer can tell a refusal (do not retry) from a lost connection (retry).
import { redact } from '../db/redact';
import { codeOf } from '../db/sqlstate';

export class CaptureError extends Error {
  constructor(
    message: string,
    readonly code?: string,
    /** no retry can cure it, whatever its SQLSTATE (a slot that lost the WAL it needed): the failure SlotLost */
    readonly final = false,
  ) {
    super(redact(message));
    this.name = 'CaptureError';
  }
}

/** The server's (or the socket's) message, with its detail when it has one. */
export function reasonOf(e: unknown): string {
  const err = e as { message?: unknown; detail?: unknown };
  const message = typeof err?.message === 'string' && err.message ? err.message : String(e);
  return typeof err?.detail === 'string' && err.detail ? `${message} (${err.detail})` : message;
}

/** `prefix: reason`, as a CaptureError that keeps the original SQLSTATE. */
export function explain(prefix: string, e: unknown): CaptureError {
  if (e instanceof CaptureError) return e;
  return new CaptureError(`${prefix}: ${reasonOf(e)}`, codeOf(e));
}

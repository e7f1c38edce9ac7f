// What a database error means, by its SQLSTATE (or the driver's code, or its words): the one
// classifier of the activity side. A user error (a missing column, a revoked privilege, bad SQL in
// the spec) is not retried; a lost connection is; a database that cannot be reached is told apart
// where the connection is opened (src/db/reach.ts), so the migration can say which one.
import { USER_ERROR_CLASSES } from '../domain/failures';

/** The SQLSTATE (or the driver's code: ECONNRESET) an error carries. */
export function codeOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The message of an error, or what it reads as. */
function messageOf(e: unknown): string {
  const message = (e as { message?: unknown })?.message;
  return typeof message === 'string' ? message : '';
}

/** A mistake in the spec, the data or the rights (the catalog's classes): not retried. */
export function isUserError(code: string | undefined): boolean {
  return Boolean(code && USER_ERROR_CLASSES.some((c) => code.startsWith(c)));
}

/** pg's own words for a connection that is gone (its errors carry no SQLSTATE). */
const CLIENT_LOSS = /^(Connection terminated|Client has encountered a connection error|Client was closed)|presumed dead/;

/** A connection that died (class 08, an administrator's or a shutdown's termination, a socket error). */
export function isConnectionLoss(e: unknown): boolean {
  const code = codeOf(e);
  if (code) return code.startsWith('08') || code.startsWith('57P') || /^E[A-Z]+$/.test(code);
  const detail = (e as { detail?: unknown })?.detail;
  const message = messageOf(e) || String(e);
  return CLIENT_LOSS.test(typeof detail === 'string' && detail ? `${message} (${detail})` : message);
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/** SQLSTATEs that mean the server is not there to talk to: connection exceptions, shutting down, starting up. */
function serverGone(code: string): boolean {
  return code.startsWith('08') || ['57P01', '57P02', '57P03'].includes(code);
}

/** True for an error opening a connection that says the database cannot be reached (not a refusal by it, such as a wrong password). */
export function isUnreachableError(e: unknown): boolean {
  const code = codeOf(e) ?? '';
  if (NETWORK_CODES.has(code) || serverGone(code)) return true;
  // pg's own words for a connect timeout and for a socket closed before the server answered.
  return /timeout exceeded when trying to connect|Connection terminated (due to connection timeout|unexpectedly)/i.test(messageOf(e));
}

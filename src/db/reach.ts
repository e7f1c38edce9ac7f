// A database that cannot be reached (refused, unknown host, no route, timed out, shutting down):
// told apart from every other error where the connection is opened, so that the migration can say
// at once which connection, where, and why, and wait in sight instead of retrying out of sight.
import { parse } from 'pg-connection-string';
import { isUnreachableError } from './sqlstate';

/** What the operator is told: which connection, where (never the user or the password), and why. */
export interface Unreachable {
  /** the connection alias of the spec (`source`), or what it is when the alias is not known */
  alias: string;
  /** host:port, or the socket directory */
  host: string;
  /** the driver's or the server's words */
  error: string;
}

/** host:port of a connection string, without anything secret in it. */
export function hostOf(connectionString: string): string {
  try {
    const c = parse(connectionString);
    const host = c.host ?? 'localhost';
    return host.startsWith('/') ? host : `${host}:${c.port ?? 5432}`;
  } catch {
    return 'an unparsable address';
  }
}

const MARK = Symbol.for('backfill.unreachable');

/** Attaches to a connection error which database it was (when it means the database cannot be reached). */
export function markUnreachable<E>(e: E, alias: string, host: string): E {
  if (e && typeof e === 'object' && isUnreachableError(e)) {
    const message = (e as { message?: unknown }).message;
    (e as Record<symbol, Unreachable>)[MARK] = {
      alias,
      host,
      error: typeof message === 'string' && message ? message : String((e as { code?: unknown }).code),
    };
  }
  return e;
}

/** The database an error says cannot be reached, if it was marked where the connection was opened. */
export function unreachableOf(e: unknown): Unreachable | undefined {
  if (!e || typeof e !== 'object') return undefined;
  const own = (e as Record<symbol, Unreachable | undefined>)[MARK];
  if (own) return own;
  const cause = (e as { cause?: unknown }).cause;
  return cause && cause !== e ? unreachableOf(cause) : undefined;
}

/** The sentence: `source (db.example.com:5432) cannot be reached: connect ECONNREFUSED 10.0.0.5:5432`. */
export function unreachableMessage(u: Unreachable): string {
  return `${u.alias} (${u.host}) cannot be reached: ${u.error}`;
}

// The failure catalog: every kind of failure a migration, an activity or a request can end with,
// under the Temporal failure type an operator sees (the UI, `backfill status`, the report), whether
// Temporal retries it, and what it means. The names are in recorded histories: never rename one.
// Pure (no I/O, no Node built-ins): workflow code, activities and the CLI all build and recognise
// failures here. A failure carries its message alone: an empty stack, since a stack names source
// files that mean nothing to a person.
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';

export interface FailureKind {
  /** whether Temporal retries it: `by SQLSTATE` for a database error, retried unless it is a user error */
  retryable: boolean | 'by SQLSTATE';
  /** what it means, in one line, for the operator */
  meaning: string;
}

/** SQLSTATE classes of a mistake in the spec, the data or the rights: retrying cannot help. */
export const USER_ERROR_CLASSES = ['0A', '22', '23', '28', '2B', '3D', '3F', '42', '44'] as const;

/** Every failure type, by its Temporal type name. */
export const FAILURES = {
  InvalidSpec: { retryable: false, meaning: 'the spec is not valid, or the workflow id is not its name: nothing was done' },
  ConfigError: { retryable: false, meaning: 'a connection alias the spec names is not configured on the worker (`BACKFILL_DB_<ALIAS>`)' },
  PolicyRefused: { retryable: false, meaning: "the worker's policy refuses the spec, each problem naming its rule: nothing was written" },
  PreflightError: {
    retryable: false,
    meaning: 'the spec does not match the databases (a table, a column, a key, a privilege, a chunking): nothing was copied',
  },
  SchemaChanged: { retryable: false, meaning: 'a column changed on either side after planning: the migration stops, nothing is switched' },
  DatabaseUnreachable: {
    retryable: false,
    meaning: 'a database cannot be reached: the migration says which one and where, tries again itself, then waits for a person',
  },
  SnapshotGone: {
    retryable: false,
    meaning: 'under change capture, the snapshot a range reads ended (its holder ended): the ranges not yet copied continue in a new epoch',
  },
  SnapshotTimeout: { retryable: false, meaning: 'under change capture, a snapshot epoch was not opened in time' },
  SnapshotLost: {
    retryable: false,
    meaning: 'under change capture, snapshot epochs kept ending before they were ready or before a range was copied: the migration fails',
  },
  SlotLost: {
    retryable: false,
    meaning: 'under change capture, the replication slot lost WAL it needed (`max_slot_wal_keep_size`): no change can be resumed, the migration fails',
  },
  ReverseRefused: {
    retryable: false,
    meaning: 'cutover.reverse: at the switch, the target could not stream back to the source (its server, a table): the switch did not run',
  },
  Refused: { retryable: false, meaning: 'a request (approve, reject, rerun, …) the migration refuses as it stands: the migration goes on' },
  Aborted: { retryable: false, meaning: 'the migration was aborted (`backfill abort` or a Temporal cancellation): its result is in the details' },
  'PG<SQLSTATE>': {
    retryable: 'by SQLSTATE',
    meaning: `a database error, by its SQLSTATE (\`PG42703\`): a user error (classes ${USER_ERROR_CLASSES.join(' ')}) is not retried, others are`,
  },
  Error: { retryable: true, meaning: 'anything else a worker threw (a network error keeps its code, `ECONNRESET`): retried; its message says what' },
} as const satisfies Record<string, FailureKind>;

export type FailureType = keyof typeof FAILURES;
/** The types built with `failure` (a database error has its own constructor). */
export type NamedFailure = Exclude<FailureType, 'PG<SQLSTATE>' | 'Error'>;

function plain(type: string, message: string, nonRetryable: boolean, details?: unknown[]): ApplicationFailure {
  const f = ApplicationFailure.create({ type, message, nonRetryable, details });
  f.stack = '';
  return f;
}

/** A failure of the catalog: retried as the catalog says, its message alone. */
export function failure(type: NamedFailure, message: string, details?: unknown[]): ApplicationFailure {
  return plain(type, message, !FAILURES[type].retryable, details);
}

/** A database error: `PG<SQLSTATE>`, not retried when `userError`. */
export function databaseFailure(sqlstate: string, message: string, userError: boolean): ApplicationFailure {
  return plain(`PG${sqlstate}`, message, userError);
}

/** Anything else a worker threw: `Error`, or the driver's own code (retried). */
export function otherFailure(message: string, code?: string): ApplicationFailure {
  return plain(code ?? 'Error', message, false);
}

/** True for a SQLSTATE's five characters. */
export function isSqlstate(code: string): boolean {
  return /^[0-9A-Z]{5}$/.test(code);
}

/** The failure an activity failure stands for (its cause, through every ActivityFailure). */
export function rootFailure(e: unknown): unknown {
  let cur = e;
  while (cur instanceof ActivityFailure && cur.cause instanceof Error) cur = cur.cause;
  return cur;
}

/** The failure type of `e`, or of the failure an activity failure wraps. */
export function failureTypeOf(e: unknown): string | undefined {
  const root = rootFailure(e);
  return root instanceof ApplicationFailure ? (root.type ?? undefined) : undefined;
}

/** True when `e` (or the failure an activity failure wraps) is of this type. */
export function isFailure(e: unknown, type: NamedFailure): boolean {
  return failureTypeOf(e) === type;
}

// The migration specs the tests start: plain objects (the workflow receives its spec as JSON),
// from `src` to `tgt` unless `over` names other aliases; `parsed` when a test needs the
// MigrationSpec the workflow would see, defaults filled in.
import { checkSpec, type MigrationSpec } from '../../src/spec/schema';

/** One table of a spec; the key is `id` unless given. */
export type TableDoc = { source: string; target: string; key?: string[] } & Record<string, unknown>;

/** A spec of `tables` (one or a list); `over` adds or replaces the other fields (taskQueue, cutover, ...). */
export function specFor<O extends Record<string, unknown> = Record<never, never>>(name: string, tables: TableDoc | TableDoc[], over: O = {} as O) {
  const table = ({ source, target, key = ['id'], ...rest }: TableDoc) => ({ source, target, key, ...rest });
  return { name, source: 'src', target: 'tgt', ...over, tables: (Array.isArray(tables) ? tables : [tables]).map(table) };
}

/**
 * `retries.heartbeat` of a migration whose worker a test kills: Temporal notices the dead worker
 * after 5 s of silence (15 s by default) and runs its activity again on another. (The SDK sends
 * beats at most every 0.8 x the timeout: 5 s leaves a second of slack for a busy event loop.)
 */
export const KILLED_WORKER_HEARTBEAT = '5 seconds';

export function parsed(doc: unknown): MigrationSpec {
  const r = checkSpec(doc);
  if (!r.ok) throw new Error(r.problems.join('\n'));
  return r.spec;
}

/**
 * A change-capture migration of one table of the writer's shape (src/infra/writer.ts), with the
 * freeze that stops the writer's role `app` and the unfreeze that lets it write again.
 */
export function capturedSpecFor(name: string, table: string, o: { taskQueue: string; chunk: number }) {
  return specFor(
    name,
    { source: table, target: table, chunk: { column: 'id', size: o.chunk } },
    {
      taskQueue: o.taskQueue,
      concurrency: 2,
      capture: 'logical',
      catchUp: { maxLag: '3 seconds' },
      cutover: {
        approval: 'required',
        freeze: { connection: 'src', sql: `REVOKE INSERT, UPDATE, DELETE ON ${table} FROM app` },
        unfreeze: { connection: 'src', sql: `GRANT INSERT, UPDATE, DELETE ON ${table} TO app` },
      },
    },
  );
}

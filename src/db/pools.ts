// One pool per (alias, access). Every session is pinned so that equal values print equally on both
// sides (the checksums hash text), and the source is read-only with statement and lock timeouts.
import { setting } from '../settings';
import type { Socket } from 'node:net';
import pg from 'pg';
import { parse } from 'pg-connection-string';
import { connectionStringFor } from '../spec/aliases';
import { hostOf, markUnreachable } from './reach';
import { sessionCap, takeSlot, untilSlotFree } from './sessions';

export type Access = 'read' | 'write';

/** Settings every session pins (change capture's replication sessions too): values print alike everywhere. */
export const PINNED: Readonly<Record<string, string>> = {
  TimeZone: 'UTC',
  DateStyle: 'ISO,YMD',
  IntervalStyle: 'iso_8601',
  extra_float_digits: '1',
  bytea_output: 'hex',
  lc_monetary: 'C',
  application_name: 'backfill',
};

function settings(access: Access, env: NodeJS.ProcessEnv): Record<string, string> {
  const s: Record<string, string> = {
    ...PINNED,
    statement_timeout: setting('statementTimeout', env),
    lock_timeout: setting('lockTimeout', env),
    idle_in_transaction_session_timeout: '10min',
  };
  if (access === 'read') s.default_transaction_read_only = 'on';
  return s;
}

/** Every value is text in JS: bigint and numeric stay exact, timestamps never become Date. */
const asText = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

const pools = new Map<string, pg.Pool>();

export function poolFor(alias: string, access: Access, env: NodeJS.ProcessEnv = process.env): pg.Pool {
  const id = `${alias}\0${access}`;
  let pool = pools.get(id);
  if (pool) return pool;
  const url = connectionStringFor(alias, env);
  const cfg = parse(url);
  const opts = Object.entries(settings(access, env))
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(' ');
  // Capped (sessions.ts): each new session takes a slot, and idle ones go soon to free theirs.
  const cap = sessionCap(alias, env);
  pool = new pg.Pool({
    ...(cfg as pg.PoolConfig),
    // pg-pool awaits onConnect and closes the session when it rejects (its type says void).
    // eslint-disable-next-line @typescript-eslint/no-misused-promises
    ...(cap ? { onConnect: takeSlot(alias, cap) } : {}),
    options: [cfg.options, opts].filter(Boolean).join(' '),
    types: asText,
    max: setting('poolMax', env),
    connectionTimeoutMillis: 15_000,
    // No client-side query_timeout: pg arms it for COPY streams too and never clears it there.
    // A stuck COPY is caught by the stall guard; a stuck query by the server's statement_timeout,
    // or, when the network silently drops the connection, by failSilentConnections below.
    idleTimeoutMillis: cap ? 1000 : 30_000,
    keepAlive: true,
  });
  const silentMs = pgDurationMs(settings(access, env).statement_timeout);
  // A killed connection must not crash the worker. Idle in the pool: the pool drops it. Checked
  // out between two queries: the client emits 'error' with no listener, which would throw; the
  // next query on it fails instead, and the activity retries on a fresh connection.
  pool.on('error', () => undefined);
  markConnectFailures(pool, alias, hostOf(url));
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
    if (silentMs) failSilentConnections(client, silentMs + SILENCE_GRACE_MS);
  });
  pools.set(id, pool);
  return pool;
}

/**
 * A connection the pool cannot open carries which database it was (alias and host): the activity
 * fails as DatabaseUnreachable with them, and the migration says so at once (pool.query opens its
 * connections through connect too).
 */
function markConnectFailures(pool: pg.Pool, alias: string, host: string): void {
  type Done = (err: Error | undefined, client: pg.PoolClient | undefined, release: (e?: Error | boolean) => void) => void;
  const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>;
  // A capped pool's session waits for a free slot here (sessions.ts), opened again until one is.
  const checkout = () =>
    untilSlotFree(connect).catch((e: unknown) => {
      throw markUnreachable(e, alias, host);
    });
  (pool as unknown as { connect: (cb?: Done) => unknown }).connect = (cb?: Done) => {
    if (!cb) return checkout();
    checkout().then(
      (client) => cb(undefined, client, (e) => client.release(e)),
      (err: Error) => cb(err, undefined, () => undefined),
    );
  };
}

/** PostgreSQL's duration syntax for statement_timeout ('30min', '10s', '250ms', '5000' = ms); 0: none. */
function pgDurationMs(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h|d)?\s*$/.exec(v);
  const unit: Record<string, number> = { ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };
  return m ? Number(m[1]) * unit[m[2] ?? 'ms'] : 0;
}

/** Beyond statement_timeout, for the server's own error to arrive before the client gives up. */
const SILENCE_GRACE_MS = 5000;

/**
 * statement_timeout bounds every statement the server receives, but not one it never receives,
 * nor an answer lost on the way: on a connection the network silently dropped (a partition, a
 * firewall or NAT that forgot it) a query waits forever, and TCP keepalive never probes while a
 * request is unanswered. No statement runs longer than statement_timeout, so by then the server
 * has answered or cancelled it and said so: while a statement is outstanding, a socket silent both
 * ways for longer than that (plus a grace) is dead. It is destroyed, the statement fails with a
 * connection error, and the activity retries on a fresh connection.
 *
 * The socket's own idle timer watches (unref'd, one per connection, gone with the socket): unlike
 * pg's query_timeout, no timer per query, none left armed behind a COPY. A COPY counts as
 * outstanding too (a COPY FROM waiting for its CommandComplete after CopyDone is out of the stall
 * guard's reach), and cannot be cut short while it moves: its bytes are traffic. A statement
 * queued behind another is covered as well, since the first one's answer is traffic.
 */
function failSilentConnections(client: pg.PoolClient, silentMs: number): void {
  const socket = (client as unknown as pg.Client).connection.stream as Socket;
  let outstanding = 0;
  // on(), not setTimeout's callback: that one is a once() listener, and an idle spell in the pool
  // (which also times out, harmlessly) would use it up.
  socket.setTimeout(silentMs);
  socket.on('timeout', () => {
    if (outstanding > 0) socket.destroy(new Error(`no answer from the database for ${Math.round(silentMs / 1000)} s: the connection is presumed dead`));
  });
  type Fn = (...a: unknown[]) => unknown;
  const query = client.query.bind(client) as Fn;
  (client as unknown as { query: Fn }).query = (...args) => {
    const config = args[0] as Record<string, unknown> | string | undefined;
    if (config == null) return query(...args);
    outstanding++;
    let open = true;
    const settled = () => {
      if (!open) return;
      open = false;
      outstanding--;
    };
    const wrap = (f: Fn) =>
      function (this: unknown, ...r: unknown[]) {
        settled();
        return f.apply(this, r);
      };
    try {
      if (typeof config === 'object' && typeof config.submit === 'function') {
        // A COPY stream (any Submittable): pg hands it ReadyForQuery, or an error, when it ends.
        for (const m of ['handleReadyForQuery', 'handleError']) if (typeof config[m] === 'function') config[m] = wrap(config[m] as Fn);
        return query(...args);
      }
      // A plain query tells its end to a callback argument (pool.query uses one), to a callback in
      // its config object, or through the promise it returns.
      const cb = args.findIndex((a, i) => i > 0 && typeof a === 'function');
      if (cb > 0) args[cb] = wrap(args[cb] as Fn);
      else if (typeof config === 'object' && typeof config.callback === 'function') args[0] = { ...config, callback: wrap(config.callback as Fn) };
      const out = query(...args) as PromiseLike<unknown> | undefined;
      out?.then(settled, settled);
      return out;
    } catch (e) {
      settled();
      throw e;
    }
  };
}

export async function closePools(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  // On the way out: a pool that cannot close has nothing left to lose.
  await Promise.all(all.map((p) => p.end().catch(() => undefined)));
}

/** Runs `fn` in a transaction on a client of `pool`; rolls back on any error. */
export async function inTransaction<T>(
  pool: pg.Pool,
  begin: string | ((c: pg.PoolClient) => Promise<unknown>),
  fn: (c: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const c = await pool.connect();
  let broken = false;
  try {
    if (typeof begin === 'string') await c.query(begin);
    else await begin(c);
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw e;
  } finally {
    c.release(broken);
  }
}

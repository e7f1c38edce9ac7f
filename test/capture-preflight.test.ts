// Change capture's preflight, as a user meets it in `backfill validate` (the worker's planning runs
// the same checks before anything is created): a server without logical decoding, a role without
// the REPLICATION right, a table with neither primary key nor replica identity. Each refusal says
// what is missing and how to fix it, and nothing is created on the source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startPostgres, type PostgresServer } from '../src/infra/postgres';
import { onTeardown, setup, useDatabases } from './hooks';
import { backfill } from './helpers/cli';
import { checkSpec } from '../src/spec/schema';

let replica: PostgresServer;

const dbs = useDatabases(async (db) => {
  await db.query('src', 'CREATE TABLE public.items (id bigint PRIMARY KEY, v text)');
  await db.query('src', 'CREATE TABLE public.nopk (id bigint NOT NULL, v text)');
  await db.query('src', 'CREATE UNIQUE INDEX nopk_id ON public.nopk (id)');
  await db.query('src', `CREATE ROLE norepl LOGIN PASSWORD 'norepl-pw'`);
  await db.query('src', 'CREATE TABLE public.theirs (id bigint PRIMARY KEY, v text)');
  await db.query('src', 'ALTER TABLE public.theirs OWNER TO norepl');
  await db.query('src', 'GRANT CREATE ON DATABASE src TO norepl');
  await db.query('src', 'CREATE UNLOGGED TABLE public.scratch (id bigint PRIMARY KEY, v text)');
  for (const t of ['items', 'nopk', 'theirs', 'scratch']) await db.query('tgt', `CREATE TABLE public.${t} (id bigint PRIMARY KEY, v text)`);
  for (const side of ['src', 'tgt']) {
    await db.query(side, 'CREATE TABLE public.parted (id bigint NOT NULL, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)');
    await db.query(side, `CREATE TABLE public.parted_2024 PARTITION OF public.parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`);
  }
});

setup(async () => {
  replica = await startPostgres({ walLevel: 'replica' });
  onTeardown(() => replica.stop());
  await replica.createDatabase('rsrc');
  await replica.query('rsrc', 'CREATE TABLE public.items (id bigint PRIMARY KEY, v text)');
});

function specFile(name: string, source: string, table: string): string {
  const path = join(dbs.dir, `${name}.json`);
  writeFileSync(path, JSON.stringify({ name, source, target: 'tgt', capture: 'logical', tables: [{ source: `public.${table}`, target: `public.${table}` }] }));
  return path;
}

async function nothingCreated(): Promise<void> {
  const slots = await dbs.pg.query('src', 'SELECT count(*)::int AS n FROM pg_replication_slots');
  const pubs = await dbs.pg.query('src', 'SELECT count(*)::int AS n FROM pg_publication');
  assert.deepEqual({ slots: slots.rows[0].n, publications: pubs.rows[0].n }, { slots: 0, publications: 0 });
}

const env = (src: string) => ({ BACKFILL_DB_SRC: src, BACKFILL_DB_TGT: dbs.pg.url('tgt'), BACKFILL_DB_RSRC: replica.url('rsrc') });

test('capture preflight: wal_level=replica is refused with how to turn logical decoding on', async () => {
  const r = await backfill(['validate', specFile('on-replica', 'rsrc', 'items')], env(dbs.pg.url('src')));
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /wal_level=replica; logical capture needs wal_level=logical \(ALTER SYSTEM SET wal_level = logical, then restart/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  const pubs = await replica.query('rsrc', 'SELECT count(*)::int AS n FROM pg_publication');
  assert.equal(pubs.rows[0].n, 0);
});

test('capture preflight: a table with no primary key and no replica identity is refused before anything is created; REPLICA IDENTITY USING INDEX makes it fit', async () => {
  const r = await backfill(['validate', specFile('no-identity', 'src', 'nopk')], env(dbs.pg.url('src')));
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(
    r.stderr,
    /tables\[0\]\.source: public\.nopk has no primary key and no replica identity; in a publication, the application's UPDATE and DELETE on it would fail/,
  );
  await nothingCreated();
  await dbs.pg.query('src', 'ALTER TABLE public.nopk REPLICA IDENTITY USING INDEX nopk_id');
  const ok = await backfill(['validate', specFile('no-identity', 'src', 'nopk')], env(dbs.pg.url('src')));
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  await nothingCreated();
});

test('capture preflight: an UNLOGGED table (its writes never reach the WAL) is refused before anything is created; SET LOGGED makes it fit', async () => {
  const r = await backfill(['validate', specFile('unlogged', 'src', 'scratch')], env(dbs.pg.url('src')));
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(
    r.stderr,
    /tables\[0\]\.source: public\.scratch is UNLOGGED: its writes never reach the write-ahead log, so change capture cannot see them: ALTER TABLE \.\.\. SET LOGGED/,
  );
  await nothingCreated();
  await dbs.pg.query('src', 'ALTER TABLE public.scratch SET LOGGED');
  const ok = await backfill(['validate', specFile('unlogged', 'src', 'scratch')], env(dbs.pg.url('src')));
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
});

test('capture preflight: a role without REPLICATION is refused, with the grant that fixes it', async () => {
  const url = dbs.pg.url('src').replace(/\/\/postgres:[^@]*@/, '//norepl:norepl-pw@');
  const r = await backfill(['validate', specFile('no-replication', 'src', 'theirs')], env(url));
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(
    r.stderr,
    /capture: role norepl on connection "src" lacks the REPLICATION attribute \(change capture creates a replication slot and reads the write-ahead log through it\); fix: ALTER ROLE norepl WITH REPLICATION \(on Amazon RDS: GRANT rds_replication TO norepl\)/,
  );
  await nothingCreated();
  // With the right, the same role passes (it owns the table and may create a publication).
  await dbs.pg.query('src', 'ALTER ROLE norepl WITH REPLICATION');
  const ok = await backfill(['validate', specFile('no-replication', 'src', 'theirs')], env(url));
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  await nothingCreated();
});

test('capture preflight: a publication of yours must publish every table, and a partitioned one via its root; refused with the ALTER PUBLICATION that fixes it', async () => {
  const path = join(dbs.dir, 'managed.json');
  const doc = (publication: string) => ({
    name: 'managed',
    source: 'src',
    target: 'tgt',
    capture: { method: 'logical', slot: 'mine', publication },
    tables: [
      { source: 'public.parted', target: 'public.parted' },
      { source: 'public.items', target: 'public.items' },
    ],
  });
  const validate = (publication: string) => {
    writeFileSync(path, JSON.stringify(doc(publication)));
    return backfill(['validate', path], env(dbs.pg.url('src')));
  };
  await dbs.pg.query('src', 'CREATE PUBLICATION leaves FOR TABLE public.parted');
  try {
    const r = await validate('leaves');
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      /capture\.publication: "leaves" has publish_via_partition_root off, so the changes of public\.parted \(partitioned\) would arrive under their partitions' names: ALTER PUBLICATION leaves SET \(publish_via_partition_root = true\)/,
    );
    assert.match(r.stderr, /capture\.publication: "leaves" does not publish public\.items \(ALTER PUBLICATION leaves ADD TABLE public\.items\)/);
    await dbs.pg.query('src', 'ALTER PUBLICATION leaves SET (publish_via_partition_root = true)');
    await dbs.pg.query('src', 'ALTER PUBLICATION leaves ADD TABLE public.items');
    const ok = await validate('leaves');
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const missing = await validate('nosuch');
    assert.equal(missing.code, 2);
    assert.match(
      missing.stderr,
      /capture\.publication: "nosuch" does not exist on the source \(CREATE PUBLICATION nosuch FOR TABLE \.\.\. WITH \(publish_via_partition_root = true\)\)/,
    );
  } finally {
    await dbs.pg.query('src', 'DROP PUBLICATION leaves');
  }
});

test('capture spec: refused with a change column, a transform or a filter, and in verify mode', async () => {
  const base = { name: 'm', source: 'src', target: 'tgt', capture: 'logical' };
  const t = { source: 'public.a', target: 'public.b' };
  const problems = (doc: unknown) => {
    const r = checkSpec(doc);
    return r.ok ? [] : r.problems;
  };
  assert.deepEqual(problems({ ...base, tables: [{ ...t, delta: { column: 'u' } }] }), [
    'tables[0].delta: capture: logical reads every change from the log: remove delta',
  ]);
  assert.match(problems({ ...base, tables: [{ ...t, where: 'x > 1' }] })[0], /tables\[0\]\.where: not with capture: logical yet/);
  assert.match(problems({ ...base, mode: 'verify', tables: [t] })[0], /^capture: verify mode copies nothing/);
  assert.match(problems({ ...base, capture: { method: 'logical', slot: 'Bad-Name' }, tables: [t] })[0], /capture/);
  assert.deepEqual(problems({ ...base, capture: { method: 'logical', slot: 'mine', publication: 'pub_1' }, tables: [t] }), []);
});

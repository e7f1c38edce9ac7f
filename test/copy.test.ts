// Range copy and preflight against a real PostgreSQL: idempotent copies, mismatches found,
// SQL in names without effect, and clear preflight errors before any row is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MigrationSpec } from '../src/spec/schema';
import { planMigration } from '../src/plan/plan';
import { preflight } from '../src/plan/preflight';
import { copyRange, verifyRange, type RangeInput } from '../src/range/copy';
import { checkTable } from '../src/plan/binding';
import { reconcileTable } from '../src/gate/reconcile';
import { runAction } from '../src/gate/cutover';
import { sqlHash } from '../src/plan/trust';
import type { TablePlan } from '../src/domain/plan';
import { closePools } from '../src/db/pools';
import pg_ from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { HashSplitter } from '../src/range/hash';
import { copyOutSql, profileSql } from '../src/db/sql';
import { copyOutHashedSql } from '../src/range/sql';
import { AWKWARD_COLUMNS, AWKWARD_FILL, fingerprint } from './helpers/sample';
import { backfill } from './helpers/cli';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useDatabases } from './hooks';
import { parsed, specFor } from './helpers/spec';

const ROWS = 30_000;

const dbs = useDatabases(async (db) => {
  await db.query('src', `CREATE TABLE public.items (${AWKWARD_COLUMNS})`);
  await db.query('src', AWKWARD_FILL('public.items'), [1, ROWS]);
  await db.query('tgt', `CREATE TABLE public.items_v2 (${AWKWARD_COLUMNS})`);
  for (const d of ['src', 'tgt']) await db.query(d, 'CREATE TABLE public.canary (x int); INSERT INTO public.canary VALUES (1)');
});

const specOf = (over: Record<string, unknown> = {}, table: Record<string, unknown> = {}): MigrationSpec =>
  parsed(specFor('items', { source: 'public.items', target: 'public.items_v2', chunk: { column: 'id', size: 10_000 }, ...table }, over));

const rangeInput = (spec: MigrationSpec, plan: TablePlan, i: number, attempt = 1): RangeInput => ({
  migration: spec.name,
  spec: { source: spec.source, target: spec.target, control: spec.control, mode: spec.mode },
  table: spec.tables[0],
  tableIndex: 0,
  plan,
  rangeIndex: i,
  attempt,
  finalAttempt: attempt >= spec.retries.rangeAttempts,
});

const versions = async (where: string) =>
  (await dbs.pg.query('tgt', `SELECT string_agg(id || ':' || xmin::text || ':' || ctid::text, ',' ORDER BY id) AS v FROM public.items_v2 WHERE ${where}`))
    .rows[0].v as string;

const rangeFingerprint = async (db: 'src' | 'tgt', lo: string, hi: string) => {
  const table = db === 'src' ? 'public.items' : 'public.items_v2';
  const r = await dbs.pg.query(
    db,
    `SELECT count(*)::text AS count, coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text AS hash FROM ${table} t WHERE id >= $1 AND id < $2`,
    [lo, hi],
  );
  return r.rows[0];
};

test('copy: the same range copied twice leaves the target identical, and nothing outside it is touched', async () => {
  const spec = specOf();
  const {
    plans: [plan],
  } = await planMigration({ migration: spec.name, spec });
  assert.equal(plan.rangeCount, 3);
  assert.deepEqual(plan.lo, ['1']);
  assert.deepEqual(plan.hi, [String(ROWS + 1)]);
  for (const i of [0, 2]) assert.equal((await copyRange(rangeInput(spec, plan, i))).status, 'verified');
  const outside = await versions('id < 10001 OR id >= 20001');

  const first = await copyRange(rangeInput(spec, plan, 1));
  assert.equal(first.status, 'verified');
  assert.equal(first.rowsCopied, 10_000);
  const once = await rangeFingerprint('tgt', '10001', '20001');
  const second = await copyRange(rangeInput(spec, plan, 1, 2));
  assert.equal(second.status, 'verified');
  assert.deepEqual(second.target, first.target);
  const twice = await rangeFingerprint('tgt', '10001', '20001');
  assert.deepEqual(twice, once);
  assert.deepEqual(twice, await rangeFingerprint('src', '10001', '20001'));
  assert.equal(await versions('id < 10001 OR id >= 20001'), outside, 'rows outside the range were rewritten');
  assert.deepEqual(await fingerprint(dbs.pg, 'tgt', 'public.items_v2'), await fingerprint(dbs.pg, 'src', 'public.items'));

  const ledger = await dbs.pg.query(
    'tgt',
    `SELECT range_index, status, attempts, source_count::text FROM backfill.ranges WHERE migration = 'items' ORDER BY range_index`,
  );
  assert.deepEqual(
    ledger.rows.map((r) => [r.range_index, r.status, r.attempts, r.source_count]),
    [
      [0, 'verified', 1, '10000'],
      [1, 'verified', 2, '10000'],
      [2, 'verified', 1, '10000'],
    ],
  );
  const stamped = await dbs.pg.query(
    'tgt',
    `SELECT count(*)::int AS n FROM backfill.ranges WHERE migration = 'items' AND copied_at IS NOT NULL AND last_error IS NULL`,
  );
  assert.equal(stamped.rows[0].n, 3, 'each copied range records when it was copied');
});

test('verify: one changed value, a missing row and an extra row are each found; a copy repairs them', async () => {
  const spec = specOf();
  const {
    plans: [plan],
  } = await planMigration({ migration: spec.name, spec });
  for (let i = 0; i < plan.rangeCount; i++) await copyRange(rangeInput(spec, plan, i));
  const faults = [
    `UPDATE public.items_v2 SET amount = amount + 0.000001 WHERE id = 5`,
    `DELETE FROM public.items_v2 WHERE id = 15000`,
    `INSERT INTO public.items_v2 (id, ref) SELECT id + 1000000, ref FROM public.items_v2 WHERE id = 29999`,
    `UPDATE public.items_v2 SET label = NULL WHERE id = 8 AND label = ''`,
  ];
  // Each fault alone turns exactly its own range red.
  const expectRed = [0, 1, null, 0];
  for (const [f, sql] of faults.entries()) {
    for (let i = 0; i < plan.rangeCount; i++) await copyRange(rangeInput(spec, plan, i));
    await dbs.pg.query('tgt', sql);
    const statuses = [];
    for (let i = 0; i < plan.rangeCount; i++) statuses.push((await verifyRange(rangeInput(spec, plan, i))).status);
    const red = statuses.flatMap((s, i) => (s === 'verified' ? [] : [i]));
    if (expectRed[f] === null) assert.deepEqual(red, [], `${sql}: a row outside every range is not any range's fault`);
    else assert.deepEqual(red, [expectRed[f]], `${sql}: ${statuses.join(',')}`);
    if (expectRed[f] !== null) {
      const fixed = await copyRange(rangeInput(spec, plan, expectRed[f]));
      assert.equal(fixed.status, 'verified');
    }
  }
  await dbs.pg.query('tgt', 'DELETE FROM public.items_v2 WHERE id > 1000000');
});

test('verify: values swapped between two rows, and a change only the text shows, are each found', async () => {
  const spec = specOf();
  const {
    plans: [plan],
  } = await planMigration({ migration: spec.name, spec });
  for (let i = 0; i < plan.rangeCount; i++) await copyRange(rangeInput(spec, plan, i));
  const swap = (col: string, a: number, b: number) =>
    `UPDATE public.items_v2 t SET ${col} = o.${col} FROM public.items_v2 o WHERE (t.id, o.id) IN ((${a}, ${b}), (${b}, ${a}))`;
  const faults = [
    // Every value is still in the range, only on another row: a sum of linear row hashes misses this.
    swap('label', 10, 11),
    swap('amount', 20, 21),
    swap('happened_at', 22, 24),
    // Equal as jsonb values, different as text (1.5 -> 1.50): jsonb is hashed from its text.
    `UPDATE public.items_v2 SET doc = jsonb_set(doc, '{a,0}', '1.50'::jsonb) WHERE id = 30`,
  ];
  for (const sql of faults) {
    const before = await fingerprint(dbs.pg, 'tgt', 'public.items_v2');
    assert.equal((await dbs.pg.query('tgt', sql)).rowCount! >= 1, true, sql);
    assert.notDeepEqual(await fingerprint(dbs.pg, 'tgt', 'public.items_v2'), before, `${sql} changed nothing`);
    const r = await verifyRange(rangeInput(spec, plan, 0));
    assert.notEqual(r.status, 'verified', `${sql} was not seen`);
    assert.equal(r.source.count, r.target.count);
    assert.notEqual(r.source.checksum, r.target.checksum, sql);
    assert.equal((await copyRange(rangeInput(spec, plan, 0))).status, 'verified');
  }
});

test('preflight: names and filters carrying SQL have no effect on either database', async () => {
  const base = specOf();
  const attempts: Record<string, unknown>[] = [
    { source: 'public.items; DROP TABLE public.canary' },
    { source: 'items"; DROP TABLE public.canary; --' },
    { target: 'public.canary; DROP TABLE public.canary' },
    { where: 'true) ; DROP TABLE public.canary; SELECT (1' },
    { where: 'true; DROP TABLE public.canary' },
    { key: ['id"; DROP TABLE public.canary; --'] },
  ];
  for (const a of attempts) {
    const table = { ...base.tables[0], ...a };
    const r = await checkTable({ sourceAlias: 'src', targetAlias: 'tgt', table, tableIndex: 0 });
    assert.ok(r.problems.length > 0, `accepted ${JSON.stringify(a)}`);
    assert.equal(r.binding, undefined);
  }
  for (const db of ['src', 'tgt']) assert.equal((await dbs.pg.query(db, 'SELECT count(*)::int AS n FROM public.canary')).rows[0].n, 1);
});

test('preflight: a missing table, column, unique key or privilege is named before any row is written', async () => {
  await dbs.pg.query('src', 'CREATE TABLE public.loose (id bigint NOT NULL, v text)');
  await dbs.pg.query('src', 'INSERT INTO public.loose SELECT g, g::text FROM generate_series(1, 10) g');
  await dbs.pg.query('src', `INSERT INTO public.loose VALUES (3, 'again')`);
  await dbs.pg.query('tgt', 'CREATE TABLE public.loose (id bigint, v text, extra text NOT NULL)');
  await dbs.pg.query('src', `CREATE ROLE reader LOGIN PASSWORD 'reader-pw'`);
  await dbs.pg.query('src', 'GRANT CONNECT ON DATABASE src TO reader');

  const problems = async (spec: MigrationSpec) => {
    try {
      await preflight(spec);
      return '';
    } catch (e) {
      return (e as Error).message;
    }
  };
  const m1 = await problems(specOf({}, { source: 'public.nope', target: 'public.nope_v2' }));
  assert.match(m1, /tables\[0\]\.source: table "public\.nope" not found on connection "src"/);
  assert.match(m1, /tables\[0\]\.target: table "public\.nope_v2" not found on connection "tgt"/);

  const m2 = await problems(specOf({}, { source: 'public.loose', target: 'public.loose' }));
  assert.match(m2, /tables\[0\]\.key: \(id\) is not unique in the source: 1 key\(s\) repeat, e\.g\. \["3"\]/);
  assert.match(m2, /target column "extra" is NOT NULL without a default but is not copied/);

  const m3 = await problems(specOf({}, { columns: ['id', 'no_such_col'] }));
  assert.match(m3, /tables\[0\]\.columns: column "no_such_col" not found in source table public\.items/);

  await dbs.pg.query('src', `DELETE FROM public.loose WHERE v = 'again'`);
  await dbs.pg.query('src', 'CREATE UNIQUE INDEX ON public.loose (id)');
  const m4 = await problems(specOf({}, { source: 'public.loose', target: 'public.loose' }));
  assert.match(m4, /target column "extra" is NOT NULL without a default but is not copied/);

  process.env.BACKFILL_DB_READER = `postgresql://reader:reader-pw@127.0.0.1:${dbs.pg.port}/src`;
  const m5 = await problems(specOf({ source: 'reader' }));
  assert.match(
    m5,
    /tables\[0\]\.source: role reader on connection "reader" has no SELECT on public\.items \(every range reads these columns\); fix: GRANT SELECT ON public\.items TO reader/,
  );
  assert.doesNotMatch(m5, /reader-pw/);

  const m6 = await problems(specOf({}, { chunk: { column: 'ref', size: 10 }, key: ['ref'] }));
  assert.match(m6, /tables\[0\]\.chunk\.column: "ref" is uuid; chunk\.size needs an integer column \(smallint, integer, bigint\); use chunk\.rows/);
  assert.doesNotMatch(m6, /not unique/, 'ref has no unique index but is unique in fact');

  assert.equal((await dbs.pg.query('tgt', 'SELECT count(*)::int AS n FROM public.loose')).rows[0].n, 0);
});

test('copy: a source column of another type is cast to the target type, in binary COPY', async () => {
  await dbs.pg.query('src', 'CREATE TABLE public.narrow (id int PRIMARY KEY, n int, t varchar(10))');
  await dbs.pg.query('src', `INSERT INTO public.narrow SELECT g, g * 2, 'v' || g FROM generate_series(1, 500) g`);
  await dbs.pg.query('tgt', 'CREATE TABLE public.wide (id bigint PRIMARY KEY, n numeric, t text)');
  const spec = specOf({}, { source: 'public.narrow', target: 'public.wide', chunk: { column: 'id', size: 200 } });
  const {
    plans: [plan],
  } = await planMigration({ migration: 'narrow', spec });
  assert.equal(plan.rangeCount, 3);
  for (let i = 0; i < plan.rangeCount; i++) assert.equal((await copyRange({ ...rangeInput(spec, plan, i), migration: 'narrow' })).status, 'verified');
  const r = await dbs.pg.query('tgt', 'SELECT count(*)::int AS n, sum(n)::text AS s FROM public.wide');
  assert.deepEqual(r.rows[0], { n: 500, s: String((2 * (500 * 501)) / 2) });
});

test('cli validate: checks the databases when this shell has the connections, and names what is wrong', async () => {
  const write = (name: string, doc: unknown) => {
    const p = join(dbs.dir, name);
    writeFileSync(p, JSON.stringify(doc));
    return p;
  };
  const doc = { name: 'items', source: 'src', target: 'tgt', tables: [{ source: 'public.items', target: 'public.items_v2', key: ['id'] }] };
  const env = { BACKFILL_DB_SRC: dbs.pg.url('src'), BACKFILL_DB_TGT: dbs.pg.url('tgt') };
  const ok = await backfill(['validate', write('ok.json', doc)], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /the databases match the spec/);

  const bad = await backfill(['validate', write('bad.json', { ...doc, tables: [{ ...doc.tables[0], columns: ['id', 'colour'] }] })], env);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /tables\[0\]\.columns: column "colour" not found in source table public\.items/);
  assert.doesNotMatch(bad.stderr, new RegExp(dbs.pg.password));

  const unset = await backfill(['validate', write('ok2.json', doc)], { BACKFILL_DB_SRC: '', BACKFILL_DB_TGT: '' });
  assert.equal(unset.code, 0);
  assert.match(unset.stdout, /databases not checked here: BACKFILL_DB_SRC, BACKFILL_DB_TGT not set/);
});

test('reconcile: totals are the ranges plus the rows outside them; rows arriving beyond the plan are found on each side', async () => {
  const spec = specOf({ name: 'items-reconcile' }, { target: 'public.items_rc' });
  await dbs.pg.query('tgt', `CREATE TABLE public.items_rc (${AWKWARD_COLUMNS})`);
  const {
    plans: [plan],
  } = await planMigration({ migration: spec.name, spec });
  for (let i = 0; i < plan.rangeCount; i++) assert.equal((await copyRange(rangeInput(spec, plan, i))).status, 'verified');
  const green = await reconcileTable({ migration: spec.name, spec, tableIndex: 0, plan });
  assert.equal(green.checks.ok, true);
  assert.equal(green.coverage.ok, true);
  assert.equal(green.source.count, String(ROWS));
  assert.deepEqual(green.source.checksum, green.target.checksum);

  // New source rows past the planned span, and a stray target row below it.
  await dbs.pg.query('src', AWKWARD_FILL('public.items'), [ROWS + 1, ROWS + 2]);
  await dbs.pg.query('tgt', 'INSERT INTO public.items_rc (id, ref) VALUES (-1, gen_random_uuid())');
  const red = await reconcileTable({ migration: spec.name, spec, tableIndex: 0, plan });
  assert.deepEqual(red.sourceOutside, { count: '2', keys: [[String(ROWS + 1)], [String(ROWS + 2)]] });
  assert.deepEqual(red.outside, { count: '1', keys: [['-1']] });
  assert.equal(red.coverage.ok, true, 'ranges plus outside rows still add up to each side');
  assert.equal(red.source.count, String(ROWS + 2));
  assert.deepEqual(red.failed, ['count', 'checksum']);
  await dbs.pg.query('src', 'DELETE FROM public.items WHERE id > $1', [ROWS]);
});

test('reconcile: on a freshly loaded target without statistics, the rows outside the ranges are read through the key index', async () => {
  // A target that was never analyzed: the planner's default guesses for "key < lo OR key >= hi"
  // favour scanning (and hashing) the whole table, and a sorted sample of nothing walks the whole index.
  const spec = specOf({ name: 'items-fresh' }, { target: 'public.items_fresh' });
  await dbs.pg.query('tgt', `CREATE TABLE public.items_fresh (${AWKWARD_COLUMNS}) WITH (autovacuum_enabled = off)`);
  const {
    plans: [plan],
  } = await planMigration({ migration: spec.name, spec });
  for (let i = 0; i < plan.rangeCount; i++) assert.equal((await copyRange(rangeInput(spec, plan, i))).status, 'verified');
  const stats = async () => {
    const r = await dbs.pg.query(
      'tgt',
      `SELECT seq_tup_read::int AS seq, (SELECT sum(idx_tup_read)::int FROM pg_stat_user_indexes i WHERE i.relid = t.relid) AS idx,
                                            (SELECT reltuples FROM pg_class WHERE oid = relid) AS reltuples
                                       FROM pg_stat_user_tables t WHERE relid = 'public.items_fresh'::regclass`,
    );
    return r.rows[0] as { seq: number; idx: number; reltuples: number };
  };
  await closePools(); // a backend's table statistics are flushed when it ends
  const before = await stats();
  assert.equal(before.reltuples, -1, 'the target has never been analyzed');
  const totals = await reconcileTable({ migration: spec.name, spec, tableIndex: 0, plan });
  assert.equal(totals.checks.ok, true);
  assert.deepEqual(totals.outside, { count: '0', keys: [] });
  await closePools();
  let after = await stats();
  for (let i = 0; i < 50 && after.seq - before.seq < ROWS; i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = await stats();
  }
  assert.equal(after.seq - before.seq, ROWS, 'one full scan: the independent count(*)');
  assert.ok(after.idx - before.idx < 100, `index entries read for the rows outside: ${after.idx - before.idx}`);
});

test('preflight: a key without a unique index whose duplicate check cannot finish is a problem, never taken as unique', async () => {
  await dbs.pg.query('src', 'CREATE TABLE public.locked_keys (id bigint NOT NULL, v text)');
  await dbs.pg.query('src', `INSERT INTO public.locked_keys SELECT g, g::text FROM generate_series(1, 1000) g`);
  await dbs.pg.query('tgt', 'CREATE TABLE public.locked_keys (id bigint, v text)');
  // A session that holds the table: the check's read waits for it, and gives up at the lock timeout.
  const holder = new (await import('pg')).default.Client(dbs.pg.url('src'));
  await holder.connect();
  const before = process.env.BACKFILL_LOCK_TIMEOUT;
  try {
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE public.locked_keys IN ACCESS EXCLUSIVE MODE');
    // A pool of its own, made with the short lock timeout.
    process.env.BACKFILL_LOCK_TIMEOUT = '300ms';
    process.env.BACKFILL_DB_LOCKPROBE = dbs.pg.url('src');
    const table = { source: 'public.locked_keys', target: 'public.locked_keys', key: ['id'] } as MigrationSpec['tables'][0];
    const r = await checkTable({ sourceAlias: 'lockprobe', targetAlias: 'tgt', table, tableIndex: 0 });
    assert.equal(r.binding, undefined);
    assert.ok(
      r.problems.some((p) =>
        /tables\[0\]\.key: \(id\) has no unique index in the source, and checking it for duplicates failed: canceling statement due to lock timeout/.test(p),
      ),
      r.problems.join('\n'),
    );
  } finally {
    if (before === undefined) delete process.env.BACKFILL_LOCK_TIMEOUT;
    else process.env.BACKFILL_LOCK_TIMEOUT = before;
    await holder.query('ROLLBACK');
    await holder.end();
  }
});

test('planning checks each table once: one duplicate scan of a key without a unique index', async () => {
  await dbs.pg.query('src', 'CREATE TABLE public.scanned (id bigint NOT NULL, v text)');
  await dbs.pg.query('src', `INSERT INTO public.scanned SELECT g, g::text FROM generate_series(1, 5000) g`);
  await dbs.pg.query('tgt', 'CREATE TABLE public.scanned (id bigint, v text)');
  const scans = async () => {
    // A backend's statistics reach the shared counters for certain when it exits: end ours first.
    await closePools();
    await new Promise((r) => setTimeout(r, 1500));
    const r = await dbs.pg.query('src', `SELECT seq_scan::int AS n FROM pg_stat_user_tables WHERE relname = 'scanned'`);
    return Number(r.rows[0].n);
  };
  const spec = parsed(specFor('scanned', { source: 'public.scanned', target: 'public.scanned', chunk: { column: 'id', size: 1000 } }));
  const before = await scans();
  const {
    plans: [plan],
  } = await planMigration({ migration: spec.name, spec });
  assert.equal(plan.rangeCount, 5);
  // The duplicate check (preflight) and the bounds (planning); checking the table twice made three.
  assert.equal((await scans()) - before, 2, 'full scans of the table while planning');
});

test('worker policy: a strict worker refuses a spec whose freeze drops a table, before anything runs; allow-lists, writable aliases and expressions name their rule', async () => {
  const saved = { ...process.env };
  const drop = 'DROP TABLE public.canary';
  const freezing = (over: Record<string, unknown> = {}, table: Record<string, unknown> = {}) =>
    specOf(
      {
        name: 'policy',
        cutover: { approval: 'required', freeze: { connection: 'src', sql: drop }, unfreeze: { connection: 'src', sql: 'SELECT 1' } },
        ...over,
      },
      table,
    );
  const refusal = async (f: () => Promise<unknown>) => {
    try {
      await f();
      return '';
    } catch (e) {
      return (e as Error).message;
    }
  };
  try {
    process.env.BACKFILL_POLICY = 'strict';
    const m = await refusal(() => planMigration({ migration: 'policy', spec: freezing() }));
    assert.match(m, /cutover\.freeze: inline SQL is not allowed on this worker \(policy: BACKFILL_POLICY_ACTIONS=deny\)/);
    // Where the SQL would run, the same rule again.
    const ran = await refusal(() => runAction({ migration: 'policy', execution: 'x', spec: freezing(), action: 'freeze' }));
    assert.match(ran, /inline SQL is not allowed on this worker/);
    for (const db of ['src', 'tgt']) assert.equal((await dbs.pg.query(db, 'SELECT count(*)::int AS n FROM public.canary')).rows[0].n, 1, 'nothing ran');
    const planned = await dbs.pg.query('tgt', `SELECT count(*)::int AS n FROM backfill.tables WHERE migration = 'policy'`).catch(() => ({ rows: [{ n: 0 }] }));
    assert.equal(planned.rows[0].n, 0, 'nothing was planned');

    // Expressions over the source table only: a filter that reads another table is refused.
    const reads = await refusal(() =>
      planMigration({ migration: 'policy-x', spec: specOf({ name: 'policy-x' }, { where: 'id IN (SELECT x FROM public.canary)' }) }),
    );
    assert.match(reads, /tables\[0\]\.where or \.transform: reads public\.canary; this worker allows expressions over the source table only/);
    const own = await refusal(() => planMigration({ migration: 'policy-own', spec: specOf({ name: 'policy-own' }, { where: 'id > 5' }) }));
    assert.equal(own, '', 'a filter over the source table itself is fine');

    // An allow-list by hash: exactly these statements, nothing else.
    process.env.BACKFILL_POLICY_ACTIONS = `sha256:${sqlHash('SELECT 1')}`;
    const listed = await refusal(() => planMigration({ migration: 'policy', spec: freezing() }));
    assert.match(listed, new RegExp(`cutover\\.freeze: this SQL \\(sha256:${sqlHash(drop)}\\) is not on this worker's allow-list`));
    assert.doesNotMatch(listed, /cutover\.unfreeze/, 'the listed unfreeze passes');

    delete process.env.BACKFILL_POLICY;
    delete process.env.BACKFILL_POLICY_ACTIONS;
    process.env.BACKFILL_POLICY_WRITABLE = 'elsewhere';
    const writes = await refusal(() => planMigration({ migration: 'policy-w', spec: specOf({ name: 'policy-w' }) }));
    assert.match(writes, /target: alias "tgt" may not be written by this worker \(policy: BACKFILL_POLICY_WRITABLE=elsewhere\)/);
  } finally {
    for (const k of Object.keys(process.env)) if (k.startsWith('BACKFILL_POLICY') && !(k in saved)) delete process.env[k];
  }
  for (const db of ['src', 'tgt']) assert.equal((await dbs.pg.query(db, 'SELECT count(*)::int AS n FROM public.canary')).rows[0].n, 1);
});

test('copy: the source checksum travels in its COPY; taken off each row byte-exact at any chunk boundary', async () => {
  const bound = await checkTable({
    sourceAlias: 'src',
    targetAlias: 'tgt',
    table: { source: 'public.items', target: 'public.items_v2', key: ['id'] },
    tableIndex: 0,
  });
  const b = bound.binding!;
  const range = { lo: ['101'], hi: ['5101'] };
  const c = new pg_.Client({ connectionString: dbs.pg.url('src') });
  await c.connect();
  try {
    const read = async (sql: string) => {
      const parts: Buffer[] = [];
      for await (const chunk of c.query(copyTo(sql))) parts.push(chunk as Buffer);
      return Buffer.concat(parts);
    };
    const plain = await read(copyOutSql(b, range));
    const hashed = await read(copyOutHashedSql(b, range));
    const profile = (await c.query(profileSql(b, 'source', range))).rows[0];
    for (const size of [1, 2, 7, 19, 4096, hashed.length]) {
      const split = new HashSplitter();
      const out: Buffer[] = [];
      split.on('data', (d: Buffer) => out.push(d));
      const done = new Promise((resolve, reject) => split.on('end', resolve).on('error', reject));
      for (let at = 0; at < hashed.length; at += size) split.write(hashed.subarray(at, at + size));
      split.end();
      await done;
      assert.ok(Buffer.concat(out).equals(plain), `chunks of ${size} bytes: the target gets exactly the plain COPY`);
      assert.equal(String(split.rows), profile.count);
      assert.equal(String(split.sum), profile.checksum, 'the same sum as the profile query');
    }
    // A COPY cut short is an error, not a short range.
    const short = new HashSplitter();
    const failed = new Promise<Error>((resolve) => short.on('error', resolve));
    short.resume();
    short.end(hashed.subarray(0, hashed.length - 5));
    assert.match((await failed).message, /ended in the middle of a row/);
  } finally {
    await c.end();
  }
});

test('the row hash splitter: the sum stays exact over more rows of extreme hashes than a number could add up', () => {
  // Two fields a row (an int4 and the hash), every hash the largest or the smallest int64, more rows
  // than 2^53 / 2^32 so that the halves' sums are folded on the way: the sum must be BigInt's.
  const rows = 2_200_000;
  const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
  const body = Buffer.alloc(rows * 22 + 2);
  let expected = 0n;
  for (let i = 0, o = 0; i < rows; i++) {
    const h = i % 1000 === 0 ? -(2n ** 63n) : 2n ** 63n - 1n;
    expected += h;
    o = body.writeInt16BE(2, o);
    o = body.writeInt32BE(4, o);
    o = body.writeInt32BE(i, o);
    o = body.writeInt32BE(8, o);
    o = body.writeBigInt64BE(h, o);
  }
  body.writeInt16BE(-1, rows * 22);
  const split = new HashSplitter();
  let out = 0;
  const all = Buffer.concat([header, body]);
  for (let at = 0; at < all.length; at += 65536)
    split._transform(all.subarray(at, at + 65536), 'buffer' as BufferEncoding, (e, d?: Buffer) => {
      assert.ifError(e);
      out += d?.length ?? 0;
    });
  assert.equal(split.rows, rows);
  assert.equal(split.sum, expected);
  assert.equal(out, header.length + rows * 10 + 2, 'each row goes on without its hash');
});

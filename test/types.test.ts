// Types seen in real schemas, each copied and proven equal, and each one's change seen: arrays,
// enums, domains, composites, bytea, tsvector, ranges, citext and hstore (extensions on both
// sides), money, interval, inet/cidr, bit, xml, json, floats (-0 against 0), identity and generated columns, and a
// partitioned table as source and as target. The spec is the one `backfill init` writes for the
// whole schema; `validate` and `start --wait` run as a user would run them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { backfillMigration } from '../src/workflows/migration';
import { abortSignal, progressQuery, reportQuery } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { fingerprint } from './helpers/sample';
import { backfill } from './helpers/cli';
import { useStack } from './hooks';
import { endingOf, waitForPhase } from './helpers/temporal';

const TASK_QUEUE = 'types';

const SCHEMA = `
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE SCHEMA kinds;
CREATE TYPE kinds.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN kinds.posint AS int CHECK (VALUE > 0);
CREATE TYPE kinds.addr AS (street text, zip int);
CREATE TABLE kinds.t_array (id int PRIMARY KEY, ints int[], texts text[]);
CREATE TABLE kinds.t_enum (id int PRIMARY KEY, v kinds.mood);
CREATE TABLE kinds.t_domain (id int PRIMARY KEY, v kinds.posint);
CREATE TABLE kinds.t_composite (id int PRIMARY KEY, v kinds.addr);
CREATE TABLE kinds.t_bytea (id int PRIMARY KEY, v bytea);
CREATE TABLE kinds.t_tsvector (id int PRIMARY KEY, v tsvector);
CREATE TABLE kinds.t_range (id int PRIMARY KEY, r int4range, t tstzrange);
CREATE TABLE kinds.t_citext (id int PRIMARY KEY, v citext);
CREATE TABLE kinds.t_hstore (id int PRIMARY KEY, v hstore);
CREATE TABLE kinds.t_money (id int PRIMARY KEY, v money);
CREATE TABLE kinds.t_interval (id int PRIMARY KEY, v interval);
CREATE TABLE kinds.t_net (id int PRIMARY KEY, i inet, c cidr);
CREATE TABLE kinds.t_bit (id int PRIMARY KEY, b bit(8), vb varbit);
CREATE TABLE kinds.t_xml (id int PRIMARY KEY, v xml);
CREATE TABLE kinds.t_json (id int PRIMARY KEY, v json);
CREATE TABLE kinds.t_float (id int PRIMARY KEY, d double precision, r real);
CREATE TABLE kinds.t_identity (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
CREATE TABLE kinds.t_generated (id int PRIMARY KEY, price numeric(10,2) NOT NULL, qty int NOT NULL, total numeric(12,2) GENERATED ALWAYS AS (price * qty) STORED);
CREATE TABLE kinds.t_parted (id int NOT NULL, day date NOT NULL, v text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE kinds.t_parted_2024 PARTITION OF kinds.t_parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE kinds.t_parted_2025 PARTITION OF kinds.t_parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');`;

const N = 500;
const FILL = `
INSERT INTO kinds.t_array SELECT g, ARRAY[g, NULL, g * 2], ARRAY['a,b', NULL, 'q"' || g, '']::text[] FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_enum SELECT g, (ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::kinds.mood FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_domain SELECT g, g FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_composite SELECT g, ROW('street ' || g, g)::kinds.addr FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_bytea SELECT g, decode(md5(g::text), 'hex') FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_tsvector SELECT g, to_tsvector('simple', 'word' || g || ' other words') FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_range SELECT g, int4range(g, g + 5), tstzrange(timestamptz '2024-01-01' + g * interval '1 hour', NULL) FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_citext SELECT g, 'Name ' || g FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_hstore SELECT g, hstore(ARRAY['a', 'b'], ARRAY[g::text, NULL]) FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_money SELECT g, (g * 1.25)::numeric::money FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_interval SELECT g, g * interval '1 day' FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_net SELECT g, ('10.0.' || (g / 256) || '.' || (g % 256))::inet, ('10.' || (g % 200) || '.0.0/16')::cidr FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_bit SELECT g, (g % 256)::bit(8), (g % 256)::bit(8)::varbit || B'1' FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_xml SELECT g, ('<item n="' || g || '">x &amp; y</item>')::xml FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_json SELECT g, ('{"n": ' || g || ', "s": "ü \\"q\\""}')::json FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_float SELECT g, CASE WHEN g = 2 THEN 0 ELSE g / 3.0 END, g / 7.0 FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_identity (v) SELECT 'v' || g FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_generated SELECT g, g / 4.0, g % 7 FROM generate_series(1, ${N}) g;
INSERT INTO kinds.t_parted SELECT g, date '2024-06-01' + g, 'v' || g FROM generate_series(1, ${N}) g;
ANALYZE;`;

/** One change per table, in the target, to a value of that type that differs from the source's. */
const CHANGES: Record<string, string> = {
  t_array: `UPDATE kinds.t_array SET texts = ARRAY['a,b', NULL, 'q"2', ' ']::text[] WHERE id = 2`,
  t_enum: `UPDATE kinds.t_enum SET v = 'ok' WHERE id = 2`, // 1 + 2 % 3 = 3: 'happy' in the source
  t_domain: `UPDATE kinds.t_domain SET v = 3 WHERE id = 2`,
  t_composite: `UPDATE kinds.t_composite SET v = ROW('street 2', 3)::kinds.addr WHERE id = 2`,
  t_bytea: `UPDATE kinds.t_bytea SET v = v || '\\x00'::bytea WHERE id = 2`,
  t_tsvector: `UPDATE kinds.t_tsvector SET v = to_tsvector('simple', 'word2 other') WHERE id = 2`,
  t_range: `UPDATE kinds.t_range SET r = int4range(2, 8) WHERE id = 2`,
  t_citext: `UPDATE kinds.t_citext SET v = 'NAME 2' WHERE id = 2`, // equal for citext's =, not the same value
  t_hstore: `UPDATE kinds.t_hstore SET v = hstore(ARRAY['a', 'b'], ARRAY['2', '']) WHERE id = 2`,
  t_money: `UPDATE kinds.t_money SET v = v + 0.01::money WHERE id = 2`,
  t_interval: `UPDATE kinds.t_interval SET v = interval '48 hours' WHERE id = 2`, // = '2 days', yet another value
  t_net: `UPDATE kinds.t_net SET i = '10.0.0.2/24' WHERE id = 2`,
  t_bit: `UPDATE kinds.t_bit SET vb = B'000000100' WHERE id = 2`,
  t_xml: `UPDATE kinds.t_xml SET v = '<item n="2">x &amp; z</item>' WHERE id = 2`,
  t_json: `UPDATE kinds.t_json SET v = '{"n":2, "s": "ü \\"q\\""}' WHERE id = 2`, // json keeps its text
  t_float: `UPDATE kinds.t_float SET d = '-0' WHERE id = 2`, // = 0, yet another value
  t_identity: `UPDATE kinds.t_identity SET v = 'changed' WHERE id = 2`,
  t_generated: `UPDATE kinds.t_generated SET price = price + 1 WHERE id = 2`,
  t_parted: `UPDATE kinds.t_parted SET v = 'changed' WHERE id = 2`,
};
const TABLES = Object.keys(CHANGES);

const stack = useStack(
  TASK_QUEUE,
  async (pg) => {
    for (const db of ['src', 'tgt']) await pg.query(db, SCHEMA);
    await pg.query('src', FILL);
  },
  { worker: 'process' },
);

test('every type: a spec from `backfill init` for the whole schema copies each table, proven equal', { timeout: 240_000 }, async () => {
  const env = { TEMPORAL_ADDRESS: stack.temporal.address };
  const file = join(stack.dir, 'kinds.yaml');
  const init = await backfill(['init', '--schema', 'kinds', '--source', 'src', '--target', 'tgt', '--name', 'kinds', '-o', file]);
  assert.equal(init.code, 0, init.stderr + init.stdout);
  const spec = parse(readFileSync(file, 'utf8')) as { tables: { source: string; key: string[] }[]; cutover: { approval: string }; taskQueue?: string };
  assert.deepEqual(spec.tables.map((t) => t.source).sort(), TABLES.map((t) => `kinds.${t}`).sort(), 'every table, partitions by their parent');
  assert.deepEqual(spec.tables.find((t) => t.source === 'kinds.t_parted')?.key, ['id', 'day']);
  // What a user edits before starting: the task queue of this test's worker, and no gate.
  spec.taskQueue = TASK_QUEUE;
  spec.cutover.approval = 'auto';
  writeFileSync(file, stringify(spec));

  const v = await backfill(['validate', file]);
  assert.equal(v.code, 0, v.stderr + v.stdout);
  const started = await backfill(['start', file, '--wait'], env);
  assert.equal(started.code, 0, started.stderr + started.stdout);
  for (const t of TABLES) {
    const a = await fingerprint(stack.pg, 'src', `kinds.${t}`);
    assert.equal(a.count, String(N), t);
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', `kinds.${t}`), a, `${t}: the target equals the source`);
  }
  // The identity sequence went past the copied keys; the generated column was computed by the target.
  const next = await stack.pg.query('tgt', `SELECT nextval(pg_get_serial_sequence('kinds.t_identity', 'id'))::int AS n`);
  assert.ok(next.rows[0].n > N, `identity at ${next.rows[0].n}`);
});

test('every type: a change of one value in the target is found, in its table, at its key', { timeout: 240_000 }, async () => {
  for (const sql of Object.values(CHANGES)) await stack.pg.query('tgt', sql);
  // A generated column is compared, not copied: a target that computes it otherwise is found.
  await stack.pg.query('src', 'CREATE SCHEMA gen; CREATE TABLE gen.t (id int PRIMARY KEY, price int, total int GENERATED ALWAYS AS (price * 2) STORED)');
  await stack.pg.query(
    'tgt',
    'CREATE SCHEMA gen; CREATE TABLE gen.t (id int PRIMARY KEY, price int, total int GENERATED ALWAYS AS (price * 2 + (id / 100)) STORED)',
  );
  for (const db of ['src', 'tgt']) await stack.pg.query(db, 'INSERT INTO gen.t (id, price) SELECT g, g FROM generate_series(1, 150) g');
  const spec = {
    name: 'kinds-verify',
    taskQueue: TASK_QUEUE,
    source: 'src',
    target: 'tgt',
    mode: 'verify',
    retries: { rangeAttempts: 1 },
    tables: [{ source: 'kinds.*' }, { source: 'gen.t', target: 'gen.t' }],
  };
  const h = await stack.temporal.env.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  const p = await waitForPhase(h, ['needs_attention', 'awaiting_approval', 'failed']);
  assert.equal(p.phase, 'needs_attention', JSON.stringify(p));
  const report: Report = await h.query(reportQuery);
  for (const t of TABLES) {
    const tr = report.tables.find((x) => x.source === `kinds.${t}`);
    assert.ok(tr, `${t} is in the migration`);
    const failed = tr.ranges.filter((r) => r.status === 'failed');
    assert.equal(failed.length, 1, `${t}: one range differs`);
    assert.equal(failed[0].changed, 1, `${t}: one changed row`);
    assert.equal(failed[0].missing, 0, t);
    assert.equal(failed[0].extra, 0, t);
    assert.equal(failed[0].keys.changed[0][0], '2', `${t}: at key 2`);
  }
  const gen = report.tables.find((x) => x.source === 'gen.t')!.ranges.find((r) => r.status === 'failed')!;
  assert.equal(gen.changed, 51, 'ids 100 to 150 computed otherwise');
  assert.deepEqual(gen.changedColumns, { total: 51 });
  const progress = await h.query(progressQuery);
  assert.equal(progress.tables.length, TABLES.length + 1);
  await h.signal(abortSignal, { reason: 'end of test' });
  assert.equal((await endingOf(h)).phase, 'aborted');
});

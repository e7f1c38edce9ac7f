// Malformed specs are refused before anything starts: every problem named with its path, exit 2,
// no stack trace, no secret echoed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { checkSpec } from '../src/spec/schema';
import { backfill } from './helpers/cli';
import { useTempDir } from './hooks';

const good = () => ({
  name: 'orders-v2',
  source: 'source',
  target: 'target',
  tables: [{ source: 'public.orders', target: 'public.orders_v2', key: ['id'], chunk: { column: 'id', size: 1000 } }],
});

type Doc = ReturnType<typeof good> & Record<string, unknown>;

const cases: { what: string; edit: (d: Doc) => unknown; expect: RegExp }[] = [
  { what: 'a name with spaces', edit: (d) => ({ ...d, name: 'orders v2' }), expect: /^name: must be 1-100 characters/m },
  { what: 'no tables', edit: ({ tables: _t, ...d }) => d, expect: /^tables: /m },
  { what: 'an empty table list', edit: (d) => ({ ...d, tables: [] }), expect: /^tables: must list at least one table/m },
  { what: 'a zero chunk size', edit: (d) => ((d.tables[0].chunk.size = 0), d), expect: /^tables\[0\]\.chunk\.size: must be a positive integer/m },
  {
    what: 'a chunk size given as text',
    edit: (d) => (((d.tables[0].chunk as Record<string, unknown>).size = 'big'), d),
    expect: /^tables\[0\]\.chunk\.size: must be a positive integer/m,
  },
  { what: 'a fractional chunk size', edit: (d) => ((d.tables[0].chunk.size = 1.5), d), expect: /^tables\[0\]\.chunk\.size: must be a positive integer/m },
  {
    what: 'SQL in a table name',
    edit: (d) => ((d.tables[0].source = 'public.orders; DROP TABLE canary'), d),
    expect: /^tables\[0\]\.source: must be "schema\.table"/m,
  },
  { what: 'an unterminated quoted table name', edit: (d) => ((d.tables[0].target = 'public."x'), d), expect: /^tables\[0\]\.target: must be "schema\.table"/m },
  {
    what: 'text after a quoted table name',
    edit: (d) => ((d.tables[0].target = 'public."x"; drop table canary'), d),
    expect: /^tables\[0\]\.target: must be "schema\.table"/m,
  },
  { what: 'an empty key column name', edit: (d) => ((d.tables[0].key = ['']), d), expect: /^tables\[0\]\.key\[0\]: must not be empty/m },
  {
    what: 'a key column name longer than 63 bytes',
    edit: (d) => ((d.tables[0].key = ['ü'.repeat(32)]), d),
    expect: /^tables\[0\]\.key\[0\]: must be at most 63 bytes/m,
  },
  {
    what: 'a NUL in the chunk column',
    edit: (d) => ((d.tables[0].chunk.column = 'id\u0000'), d),
    expect: /^tables\[0\]\.chunk\.column: must not contain a NUL/m,
  },
  { what: 'a three-part table name', edit: (d) => ((d.tables[0].source = 'db.public.orders'), d), expect: /^tables\[0\]\.source: /m },
  { what: 'an unknown field', edit: (d) => ({ ...d, tabels: [] }), expect: /^tabels: unknown field/m },
  {
    what: 'an unknown field in a table',
    edit: (d) => (((d.tables[0] as Record<string, unknown>).colums = ['id']), d),
    expect: /^tables\[0\]\.colums: unknown field/m,
  },
  { what: 'concurrency out of range', edit: (d) => ({ ...d, concurrency: 1000 }), expect: /^concurrency: must be at most 64/m },
  { what: 'a negative concurrency', edit: (d) => ({ ...d, concurrency: -1 }), expect: /^concurrency: must be a positive integer/m },
  { what: 'an unknown mode', edit: (d) => ({ ...d, mode: 'sideways' }), expect: /^mode: must be "copy" or "verify"/m },
  { what: 'an unknown approval kind', edit: (d) => ({ ...d, cutover: { approval: 'maybe' } }), expect: /^cutover\.approval: must be "required" or "auto"/m },
  {
    what: 'columns without the key',
    edit: (d) => (((d.tables[0] as Record<string, unknown>).columns = ['amount']), d),
    expect: /^tables\[0\]\.columns: must include the key column "id"/m,
  },
  { what: 'a repeated key column', edit: (d) => ((d.tables[0].key = ['id', 'id']), d), expect: /^tables\[0\]\.key: must not repeat a column/m },
  {
    what: 'the same target twice',
    edit: (d) => ({ ...d, tables: [d.tables[0], { ...d.tables[0], source: 'public.other' }] }),
    expect: /^tables\[1\]\.target: .* target of an earlier table/m,
  },
  {
    what: 'a delta on a key column',
    edit: (d) => (((d.tables[0] as Record<string, unknown>).delta = { column: 'id' }), d),
    expect: /^tables\[0\]\.delta\.column: must not be a key column/m,
  },
  {
    what: 'a delta overlap that is not an interval',
    edit: (d) => (((d.tables[0] as Record<string, unknown>).delta = { column: 'updated_at', overlap: '5 minutes; drop' }), d),
    expect: /^tables\[0\]\.delta\.overlap: must be an interval/m,
  },
  {
    what: 'a delta in verify mode',
    edit: (d) => (((d.tables[0] as Record<string, unknown>).delta = { column: 'updated_at' }), { ...d, mode: 'verify' }),
    expect: /^mode: verify mode copies nothing/m,
  },
  {
    what: 'two chunk kinds at once',
    edit: (d) => ((d.tables[0].chunk = { column: 'id', size: 10, rows: 10 } as never), d),
    expect: /^tables\[0\]\.chunk: must give exactly one of size, interval or rows/m,
  },
  {
    what: 'an interval that is not one',
    edit: (d) => ((d.tables[0].chunk = { column: 'id', interval: '1 fortnight; drop' } as never), d),
    expect: /^tables\[0\]\.chunk\.interval: must be an interval/m,
  },
  {
    what: 'row chunks on a column after the first key column',
    edit: (d) => ((d.tables[0].key = ['region', 'id']), (d.tables[0].chunk = { column: 'id', rows: 10 } as never), d),
    expect: /^tables\[0\]\.chunk\.column: with rows, ranges are taken on the whole key/m,
  },
  {
    what: 'a transform of the key',
    edit: (d) => (((d.tables[0] as Record<string, unknown>).transform = { id: 'id + 1' }), d),
    expect: /^tables\[0\]\.transform\.id: a key column cannot be transformed/m,
  },
  {
    what: 'an unknown aggregate',
    edit: (d) => (((d.tables[0] as Record<string, unknown>).checks = { aggregates: [{ fn: 'avg', column: 'amount' }] }), d),
    expect: /^tables\[0\]\.checks\.aggregates\[0\]\.fn: must be "sum", "min" or "max"/m,
  },
  {
    what: 'a tolerance for no aggregate',
    edit: (d) => (((d.tables[0] as Record<string, unknown>).checks = { tolerance: { amount: 0.01 } }), d),
    expect: /^tables\[0\]\.checks\.tolerance\.amount: names no aggregated column/m,
  },
  {
    what: 'a negative tolerance',
    edit: (d) => (((d.tables[0] as Record<string, unknown>).checks = { aggregates: [{ fn: 'sum', column: 'amount' }], tolerance: { amount: -1 } }), d),
    expect: /^tables\[0\]\.checks\.tolerance\.amount: must not be negative/m,
  },
  {
    what: 'an unfreeze without a freeze',
    edit: (d) => ({ ...d, cutover: { unfreeze: { connection: 'source', sql: 'select 1' } } }),
    expect: /^cutover\.unfreeze: needs cutover\.freeze/m,
  },
  {
    what: 'an approval timeout in months',
    edit: (d) => ({ ...d, cutover: { approvalTimeout: '1 month' } }),
    expect: /^cutover\.approvalTimeout: must be a duration/m,
  },
  {
    what: 'a catch-up interval of no time',
    edit: (d) => ({ ...d, catchUp: { interval: '0 seconds' } }),
    expect: /^catchUp\.interval: must be at least 100 milliseconds/m,
  },
  {
    what: 'a heartbeat timeout under 2 seconds',
    edit: (d) => ({ ...d, retries: { heartbeat: '1500 ms' } }),
    expect: /^retries\.heartbeat: must be at least 2 seconds/m,
  },
  {
    what: 'a heartbeat timeout over 10 minutes',
    edit: (d) => ({ ...d, retries: { heartbeat: '10 minutes 1 second' } }),
    expect: /^retries\.heartbeat: must be at most 10 minutes/m,
  },
  {
    what: 'a heartbeat timeout that is not a duration (said once, not also as too short)',
    edit: (d) => ({ ...d, retries: { heartbeat: 'a few seconds' } }),
    expect: /^retries\.heartbeat: must be a duration[^\n]*$(?![\s\S]*retries\.heartbeat)/m,
  },
  {
    what: 'an empty switch statement',
    edit: (d) => ({ ...d, cutover: { switch: { connection: 'target', sql: '  ' } } }),
    expect: /^cutover\.switch\.sql: must not be empty/m,
  },
  {
    what: 'a connection string instead of an alias',
    edit: (d) => ({ ...d, source: 'postgresql://app:s3cret-pw@db.internal/prod' }),
    expect: /^source: must be a connection alias/m,
  },
];

test('spec: names are taken exactly as the catalog has them, in every documented form', () => {
  const forms: unknown[] = [
    'orders',
    'public.orders',
    'public."User"',
    '"Odd .Schema"."Order Items"',
    '"a ""quoted"" name"',
    { schema: 'Odd .Schema', table: 'Order Items' },
    { table: 'x"y' },
  ];
  for (const f of forms) {
    const d = good() as Doc;
    (d.tables[0] as Record<string, unknown>).source = f;
    (d.tables[0] as Record<string, unknown>).key = ['x"y'];
    (d.tables[0] as Record<string, unknown>).chunk = { rows: 100 };
    const r = checkSpec(d);
    assert.ok(r.ok, `${JSON.stringify(f)}: ${r.ok ? '' : r.problems.join('; ')}`);
  }
  // Column names are never SQL: one that reads like SQL is only a name the catalog will not have.
  const d = good() as Doc;
  d.tables[0].key = ['id); DROP TABLE canary; --'];
  assert.ok(checkSpec(d).ok);
});

for (const c of cases) {
  test(`spec: refuses ${c.what}`, () => {
    const r = checkSpec(c.edit(good()));
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.match(r.problems.join('\n'), c.expect);
  });
}

test('spec: a good spec gets the documented defaults', () => {
  const r = checkSpec(good());
  assert.ok(r.ok);
  if (!r.ok) return;
  assert.equal(r.spec.taskQueue, 'backfill');
  assert.equal(r.spec.concurrency, 4);
  assert.equal(r.spec.retries.rangeAttempts, 3);
  assert.equal(r.spec.mode, 'copy');
  assert.equal(r.spec.cutover.approval, 'required');
  // No heartbeat timeout in the spec: the activities are scheduled as before the option (15 s).
  assert.equal(r.spec.retries.heartbeat, undefined);
});

test('spec: retries.heartbeat from 2 seconds to 10 minutes, in any duration form, next to the other retries', () => {
  for (const heartbeat of ['2 seconds', '4s', '1 minute 30 seconds', '10 minutes']) {
    const r = checkSpec({ ...good(), retries: { heartbeat } });
    assert.ok(r.ok, `${heartbeat}: ${r.ok ? '' : r.problems.join('; ')}`);
    if (r.ok) assert.deepEqual(r.spec.retries, { rangeAttempts: 3, heartbeat });
  }
});

test('spec: every problem is reported at once', () => {
  const d = good() as Doc;
  d.tables[0].chunk.size = 0;
  const r = checkSpec({ ...d, concurrency: 0, mode: 'x' });
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.equal(r.problems.length, 3, r.problems.join('\n'));
});

const dir = useTempDir('backfill-spec-').path;
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const noStack = (s: string) => assert.doesNotMatch(s, /^\s+at .+:\d+:\d+\)?$/m, `a stack trace leaked:\n${s}`);

test('cli validate: a bad spec exits 2 with every path, no stack trace, no secret', async () => {
  const d = good() as Doc;
  d.tables[0].chunk.size = -5;
  const bad = { ...d, source: 'postgresql://app:s3cret-pw@db.internal/prod', tables: [{ ...d.tables[0], key: ['x'.repeat(64)] }] };
  const r = await backfill(['validate', file('bad.yaml', stringify(bad))]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /source: must be a connection alias/);
  assert.match(r.stderr, /tables\[0\]\.key\[0\]: must be at most 63 bytes/);
  assert.match(r.stderr, /tables\[0\]\.chunk\.size: must be a positive integer/);
  assert.doesNotMatch(r.stderr + r.stdout, /s3cret-pw/);
  noStack(r.stderr);
});

test('cli validate: YAML that does not parse, a missing file, a JSON spec', async () => {
  const broken = await backfill(['validate', file('broken.yaml', 'name: [unclosed\n  tables: {')]);
  assert.equal(broken.code, 2);
  assert.match(broken.stderr, /not valid YAML or JSON/);
  noStack(broken.stderr);

  const missing = await backfill(['validate', join(dir, 'nope.yaml')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /cannot read the spec \(ENOENT\)/);

  const ok = await backfill(['validate', '--no-db', file('ok.json', JSON.stringify(good()))]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /the spec is valid/);
});

test('cli: an unknown command or option exits 2', async () => {
  assert.equal((await backfill(['frobnicate'])).code, 2);
  assert.equal((await backfill(['report', 'x', '--format', 'pdf'])).code, 2);
});

test('cli start: a bad spec never reaches Temporal', async () => {
  // Nothing listens on this address: refusing the spec must not need a server.
  const r = await backfill(['start', file('bad2.yaml', 'name: "a b"\nsource: s\ntarget: t\ntables: []\n')], {
    TEMPORAL_ADDRESS: '127.0.0.1:1',
  });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /name: must be/);
  assert.match(r.stderr, /tables: must list at least one table/);
});

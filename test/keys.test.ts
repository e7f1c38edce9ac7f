// Keys and chunks: composite, uuid and text keys chunked by row count (text ordered in the "C"
// collation), a table chunked by day on a timestamptz with rows exactly on the boundaries, and a
// transformed column. Copied and proven; then one fault per table is located in verify mode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backfillMigration } from '../src/workflows/migration';
import { reportQuery } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { endingOf, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';

const TASK_QUEUE = 'keys';

const DDL = {
  regional: 'CREATE TABLE public.regional (region text NOT NULL, id bigint NOT NULL, amount numeric(12,2), note text, PRIMARY KEY (region, id))',
  devices: 'CREATE TABLE public.devices (id uuid PRIMARY KEY, name text, seen_at timestamptz)',
  tags: 'CREATE TABLE public.tags (slug text PRIMARY KEY, label text)',
  events: 'CREATE TABLE public.events (id bigint PRIMARY KEY, happened_at timestamptz NOT NULL, payload text)',
  prices: 'CREATE TABLE public.prices (id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL)',
};
const SPECIAL_SLUGS = ['Ünïcode', "quote's", 'back\\slash', 'UPPER', 'lower', 'ZZ', 'aa', ' lead space', 'ß', '☃'];
const FILL = [
  `INSERT INTO public.regional SELECT (ARRAY['eu', 'us', 'Ap', 'ÅR', 'x''q'])[1 + g % 5], g / 5, g * 1.5, 'n' || g FROM generate_series(0, 1999) g`,
  `INSERT INTO public.devices SELECT md5('d' || g)::uuid, 'device ' || g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute' FROM generate_series(1, 1500) g`,
  `INSERT INTO public.tags SELECT 'tag-' || g, 'label ' || g FROM generate_series(1, 1000) g`,
  `INSERT INTO public.tags SELECT s, 'special ' || s FROM unnest($1::text[]) s`,
  // Five days of events with microseconds, and rows exactly on and just before midnight.
  `INSERT INTO public.events SELECT g, timestamptz '2024-01-01 00:00:00.000001+00' + g * interval '7 minutes 13.000017 seconds', 'e' || g FROM generate_series(1, 990) g`,
  `INSERT INTO public.events VALUES (100001, '2024-01-02 00:00:00+00', 'midnight'), (100002, '2024-01-01 23:59:59.999999+00', 'just before'), (100003, '2024-01-03 00:00:00+00', 'midnight 2')`,
  `INSERT INTO public.prices SELECT g, g * 1.01 FROM generate_series(1, 800) g`,
];

const stack = useStack(TASK_QUEUE, async (db) => {
  for (const ddl of Object.values(DDL)) await db.query('src', ddl);
  for (const [name, ddl] of Object.entries(DDL)) if (name !== 'prices') await db.query('tgt', ddl);
  await db.query('tgt', 'CREATE TABLE public.prices_v2 (id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, amount_cents bigint NOT NULL)');
  for (const sql of FILL) await db.query('src', sql, sql.includes('$1') ? [SPECIAL_SLUGS] : undefined);
});

const tables = [
  { source: 'public.regional', target: 'public.regional', key: ['region', 'id'], chunk: { column: 'region', rows: 300 } },
  { source: 'public.devices', target: 'public.devices', key: ['id'], chunk: { column: 'id', rows: 250 } },
  { source: 'public.tags', target: 'public.tags', key: ['slug'], chunk: { column: 'slug', rows: 200 } },
  { source: 'public.events', target: 'public.events', key: ['id'], chunk: { column: 'happened_at', interval: '1 day' } },
  {
    source: 'public.prices',
    target: 'public.prices_v2',
    key: ['id'],
    transform: { amount_cents: 'round(amount * 100)::bigint' },
    checks: { aggregates: [{ fn: 'sum', column: 'amount_cents' }] },
  },
];

const rowText = async (db: string, sql: string) => (await stack.pg.query(db, sql)).rows.map((r) => JSON.stringify(r)).join('\n');

test('keys: composite, uuid, text, time-chunked and transformed tables copy and prove equal', async () => {
  const spec = specFor('keys-copy', tables, { taskQueue: TASK_QUEUE, concurrency: 3, cutover: { approval: 'auto' } });
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  const result = await h.result();
  assert.equal(result.phase, 'completed');
  const report: Report = await h.query(reportQuery);
  const byTable = Object.fromEntries(report.tables.map((t) => [t.source, t]));
  assert.equal(byTable['public.regional'].rangeSummary.total, 7);
  assert.equal(byTable['public.devices'].rangeSummary.total, 6);
  assert.equal(byTable['public.tags'].rangeSummary.total, 6);
  // Days 2024-01-01 .. 2024-01-05: half-open UTC days, the first starting at midnight.
  const ev = byTable['public.events'];
  assert.equal(ev.rangeSummary.total, 5);
  assert.equal(ev.ranges[0].lo, '2024-01-01 00:00:00+00');
  assert.equal(ev.ranges[1].lo, '2024-01-02 00:00:00+00');
  for (const t of report.tables) {
    assert.equal(t.totals.match, true, t.source);
    assert.equal(t.totals.sumOfRanges.match, true, `${t.source}: the ranges cover every row exactly once`);
    assert.equal(t.outside.count, '0', t.source);
  }

  for (const [t, order] of [
    ['regional', 'region, id'],
    ['devices', 'id'],
    ['tags', 'slug'],
    ['events', 'id'],
  ]) {
    const q = `SELECT * FROM public.${t} ORDER BY ${order}`;
    assert.equal(await rowText('tgt', q), await rowText('src', q), t);
  }
  assert.equal(
    await rowText('tgt', 'SELECT id, amount, amount_cents FROM public.prices_v2 ORDER BY id'),
    await rowText('src', 'SELECT id, amount, round(amount * 100)::bigint AS amount_cents FROM public.prices ORDER BY id'),
  );
});

test('keys: one fault per table is located with its exact key, in verify mode', async () => {
  const faults = [
    `UPDATE public.regional SET note = 'changed' WHERE region = 'x''q' AND id = 7`,
    `DELETE FROM public.regional WHERE region = 'Ap' AND id = 3`,
    `UPDATE public.devices SET name = 'renamed' WHERE id = md5('d700')::uuid`,
    `UPDATE public.tags SET label = 'changed' WHERE slug = 'quote''s'`,
    `UPDATE public.events SET payload = 'moved' WHERE id = 100001`,
    `UPDATE public.prices_v2 SET amount_cents = amount_cents + 1 WHERE id = 42`,
  ];
  for (const f of faults) assert.equal((await stack.pg.query('tgt', f)).rowCount, 1, f);
  const spec = specFor('keys-verify', tables, { taskQueue: TASK_QUEUE, mode: 'verify', retries: { rangeAttempts: 1 } });
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  assert.equal((await waitForPhase(h, ['needs_attention', 'awaiting_approval', 'failed'])).phase, 'needs_attention');
  const report: Report = await h.query(reportQuery);
  const found = (source: string) => {
    const t = report.tables.find((x) => x.source === source)!;
    return t.ranges
      .filter((r) => r.status !== 'verified')
      .map((r) => ({ index: r.index, lo: r.lo, missing: r.keys.missing, changed: r.keys.changed, columns: r.changedColumns }));
  };
  const regional = found('public.regional');
  assert.deepEqual(
    regional.flatMap((r) => r.changed),
    [["x'q", '7']],
  );
  assert.deepEqual(
    regional.flatMap((r) => r.missing),
    [['Ap', '3']],
  );
  const devices = await stack.pg.query('src', `SELECT md5('d700')::uuid::text AS id`);
  assert.deepEqual(
    found('public.devices').flatMap((r) => r.changed),
    [[devices.rows[0].id]],
  );
  assert.deepEqual(
    found('public.tags').flatMap((r) => r.changed),
    [["quote's"]],
  );
  const events = found('public.events');
  assert.deepEqual(
    events.map((r) => [r.index, r.lo, r.changed]),
    [[1, '2024-01-02 00:00:00+00', [['100001']]]],
    'midnight belongs to the day it starts',
  );
  const prices = found('public.prices');
  assert.deepEqual(
    prices.map((r) => [r.changed, r.columns]),
    [[[['42']], { amount_cents: 1 }]],
  );
  const pricesTable = report.tables.find((x) => x.source === 'public.prices')!;
  assert.ok(pricesTable.totals.failedChecks.includes('sum(amount_cents)'));
  await h.signal('abort', { reason: 'done' });
  assert.equal((await endingOf(h)).phase, 'aborted');
});

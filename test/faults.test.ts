// The fault matrix: a target loaded by plain SQL (verify mode), one fault per range, each found
// exactly in its range, with its key and kind (and the column for a changed row), no false
// positives; rows outside every range found; then copy mode repairs what a copy can repair.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backfillMigration } from '../src/workflows/migration';
import { reportQuery } from '../src/workflows/messages';
import type { RangeReport, Report } from '../src/domain/report';
import { backfill } from './helpers/cli';
import { endingOf, replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';

const TASK_QUEUE = 'faults';

const COLUMNS = `id bigint NOT NULL, amount numeric(14,4), ratio double precision, at timestamptz, label text, note text,
                 doc jsonb, flag boolean, status text`;
// Even ids 2..20000: odd ids are free for an extra row inside a range. Deterministic, so both
// databases load identical rows with plain SQL.
const FILL = (t: string) => `
INSERT INTO ${t}
SELECT 2 * g, (g * 1.2345)::numeric(14,4), g / 1000.0, timestamptz '2024-05-01 00:00:00+00' + g * interval '1.000001 second',
       CASE WHEN (2 * g) % 100 = 0 THEN NULL ELSE 'l' || g END,
       CASE WHEN (2 * g) % 100 = 0 THEN '' ELSE 'n' || g END,
       jsonb_build_object('g', g, 'k', 1), (2 * g) % 3 = 0, (ARRAY['new', 'paid', 'void'])[1 + g % 3]
  FROM generate_series(1, 10000) g`;

/** Each fault in its own range of 2000 keys: [2 + 2000 i, 2002 + 2000 i). */
const FAULTS: { range: number; sql: string; kind: keyof RangeReport['keys']; key: string; column?: string }[] = [
  { range: 0, sql: 'DELETE FROM public.facts WHERE id = 150', kind: 'missing', key: '150' },
  { range: 1, sql: "INSERT INTO public.facts (id, status) VALUES (2501, 'new')", kind: 'extra', key: '2501' },
  { range: 2, sql: 'INSERT INTO public.facts SELECT * FROM public.facts WHERE id = 4100', kind: 'duplicates', key: '4100' },
  { range: 3, sql: 'UPDATE public.facts SET amount = amount + 0.0001 WHERE id = 6100', kind: 'changed', key: '6100', column: 'amount' },
  { range: 4, sql: 'UPDATE public.facts SET ratio = ratio + 1e-12 WHERE id = 8100', kind: 'changed', key: '8100', column: 'ratio' },
  { range: 5, sql: `UPDATE public.facts SET at = at + interval '1 microsecond' WHERE id = 10100`, kind: 'changed', key: '10100', column: 'at' },
  { range: 6, sql: `UPDATE public.facts SET note = NULL WHERE id = 12100 AND note = ''`, kind: 'changed', key: '12100', column: 'note' },
  { range: 7, sql: `UPDATE public.facts SET label = 'x' WHERE id = 14100 AND label IS NULL`, kind: 'changed', key: '14100', column: 'label' },
  { range: 8, sql: `UPDATE public.facts SET doc = doc || '{"k": 2}' WHERE id = 16100`, kind: 'changed', key: '16100', column: 'doc' },
  { range: 9, sql: 'UPDATE public.facts SET flag = NULL WHERE id = 18100 AND flag IS NOT NULL', kind: 'changed', key: '18100', column: 'flag' },
];
const OUTSIDE = ['INSERT INTO public.facts (id) VALUES (-5)', 'INSERT INTO public.facts (id) VALUES (100001)'];

const stack = useStack(TASK_QUEUE, async (db) => {
  await db.query('src', `CREATE TABLE public.facts (${COLUMNS}, PRIMARY KEY (id))`);
  // The target lacks the key constraint, as a hand-loaded target may: duplicates are possible.
  await db.query('tgt', `CREATE TABLE public.facts (${COLUMNS})`);
  await db.query('src', FILL('public.facts'));
  await db.query('tgt', FILL('public.facts'));
  for (const f of FAULTS) assert.equal((await db.query('tgt', f.sql)).rowCount, 1, f.sql);
  for (const sql of OUTSIDE) await db.query('tgt', sql);
});

const spec = (name: string, mode: 'verify' | 'copy') =>
  specFor(
    name,
    {
      source: 'public.facts',
      target: 'public.facts',
      chunk: { column: 'id', size: 2000 },
      checks: {
        distribution: ['status'],
        aggregates: [
          { fn: 'sum', column: 'amount' },
          { fn: 'max', column: 'at' },
        ],
      },
    },
    { taskQueue: TASK_QUEUE, mode, concurrency: 3, retries: { rangeAttempts: 1 } },
  );

/** Verify mode over the fault matrix: every fault found in exactly its range, with its key, kind and column. */
async function verifyFinds(name: string): Promise<void> {
  const s = spec(name, 'verify');
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  const p = await waitForPhase(h, ['needs_attention', 'awaiting_approval', 'failed']);
  assert.equal(p.phase, 'needs_attention', JSON.stringify(p));
  assert.equal(p.tables[0].ranges.failed, FAULTS.length);
  assert.equal(p.tables[0].rowsCopied, 0, 'verify mode copies nothing');

  const report: Report = await h.query(reportQuery);
  const t = report.tables[0];
  const red = t.ranges.filter((r) => r.status !== 'verified');
  assert.deepEqual(
    red.map((r) => r.index),
    FAULTS.map((f) => f.range),
    'no false positives, no misses',
  );
  for (const f of FAULTS) {
    const r = red.find((x) => x.index === f.range)!;
    const found = (Object.keys(r.keys) as (keyof RangeReport['keys'])[]).flatMap((k) => r.keys[k].map((key) => `${k}:${key.join(',')}`));
    assert.deepEqual(found, [`${f.kind}:${f.key}`], `range ${f.range}: ${f.sql}`);
    assert.equal(r[f.kind === 'duplicates' ? 'duplicates' : f.kind], 1, `range ${f.range} counts`);
    if (f.column) assert.deepEqual(r.changedColumns, { [f.column]: 1 }, `range ${f.range} columns`);
    assert.equal(r.rerun, `backfill rerun ${name} --table public.facts --range ${f.range}`);
  }
  // The segmented checks name what disagrees: the count where rows are missing or extra, the
  // checksum for a changed value, the aggregate for the numeric, the duplicate check for the copy.
  assert.ok(red.find((r) => r.index === 0)!.failedChecks.includes('count'));
  assert.ok(red.find((r) => r.index === 3)!.failedChecks.includes('sum(amount)'));
  assert.ok(red.find((r) => r.index === 2)!.failedChecks.includes('duplicates'));
  assert.ok(red.find((r) => r.index === 1)!.failedChecks.includes('distribution(status)'));

  // Rows outside every range: found globally, not charged to any range.
  assert.equal(t.outside.count, '2');
  assert.deepEqual(t.outside.keys, [['-5'], ['100001']]);
  assert.equal(t.totals.match, false);
  assert.ok(t.totals.failedChecks.includes('count'));
  assert.equal(t.totals.target?.duplicates, 1);
  assert.equal(report.verdict, 'red');

  const md = await backfill(['report', s.name, '--format', 'md'], { TEMPORAL_ADDRESS: stack.temporal.address });
  assert.equal(md.code, 1);
  for (const f of FAULTS) assert.match(md.stdout, new RegExp(`rerun: \`backfill rerun ${name} --table public\\.facts --range ${f.range}\``));
  assert.match(md.stdout, /missing in the target: \["150"\]/);
  assert.match(md.stdout, /columns that differ: ratio \(1\)/);
  assert.match(md.stdout, /Target keys outside every planned range \(sample\): \["-5"\], \["100001"\]/);

  // The ledger keeps every difference.
  const ledger = await stack.pg.query('tgt', `SELECT range_index, kind, key::text AS key FROM backfill.differences WHERE migration = $1 ORDER BY range_index`, [
    s.name,
  ]);
  assert.equal(ledger.rows.length, FAULTS.length);
  await h.signal('abort', { reason: 'seen' });
  assert.equal((await endingOf(h)).phase, 'aborted');
  if (name === 'facts-verify') await replayAndMaybeRecord(h, 'verify-mode-faults-aborted');
}

test('faults: verify mode finds every fault in exactly its range, with its key, kind and column', async () => {
  await verifyFinds('facts-verify');
});

test('faults: the same when locating narrows by key buckets (ranges too large to compare whole in the worker)', async () => {
  process.env.BACKFILL_LOCATE_WHOLE_ROWS = '0';
  try {
    await verifyFinds('facts-verify-buckets');
  } finally {
    delete process.env.BACKFILL_LOCATE_WHOLE_ROWS;
  }
});

test('faults: copy mode repairs every range; the rows outside stay red until removed, then a rerun turns it green', async () => {
  const s = spec('facts-copy', 'copy');
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  const p = await waitForPhase(h, ['needs_attention', 'awaiting_approval', 'failed']);
  assert.equal(p.phase, 'needs_attention');
  assert.deepEqual(p.tables[0].ranges, { total: 10, pending: 0, inFlight: 0, verified: 10, failed: 0 });
  const report: Report = await h.query(reportQuery);
  assert.equal(report.tables[0].outside.count, '2');
  assert.equal(report.verdict, 'red');

  await stack.pg.query('tgt', 'DELETE FROM public.facts WHERE id < 2 OR id > 20000');
  const rerun = await backfill(['rerun', s.name, '--range', '0'], { TEMPORAL_ADDRESS: stack.temporal.address });
  assert.equal(rerun.code, 0, rerun.stderr);
  const gate = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(gate.phase, 'awaiting_approval', JSON.stringify(gate));
  const green: Report = await h.query(reportQuery);
  assert.equal(green.verdict, 'green');
  assert.deepEqual(green.tables[0].totals.source?.distribution, green.tables[0].totals.target?.distribution);
  assert.deepEqual(Object.keys(green.tables[0].totals.source?.distribution.status ?? {}).sort(), ['new', 'paid', 'void']);
  await h.signal('abort', { reason: 'test done' });
  assert.equal((await endingOf(h)).phase, 'aborted');
});

// Verify mode against a target that lags (a replica still applying): a range that differs is
// located at once, and with `verify.lagGrace` only its located keys are read again after the grace,
// while the window goes on with other ranges. Keys that caught up are counted as converged; the
// range is then measured whole once more as its proof. Without a grace nothing waits. The lagging
// replica is played by the test: it applies the missing writes to the target a moment later.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WorkflowHandle } from '@temporalio/client';
import { backfillMigration } from '../src/workflows/migration';
import { reportQuery } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { renderMarkdown } from '../src/report/render';
import { endingOf, replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';

const TASK_QUEUE = 'lag';

const COLUMNS = '(id bigint PRIMARY KEY, v text, n numeric(12,2))';
const ROWS = `SELECT g, 'v' || g, g / 7.0 FROM generate_series(1, 20000) g WHERE g <> 15000`;
const TARGETS = ['items_caught_up', 'items_partly', 'items_no_grace'];

// What the replica has not applied yet: 3 rows missing (range 0), one value (range 1), a delete (range 2).
const behind = (t: string) => [
  `DELETE FROM public.${t} WHERE id IN (101, 102, 103)`,
  `UPDATE public.${t} SET v = 'old' WHERE id = 5001`,
  `INSERT INTO public.${t} VALUES (15000, 'deleted on the source', 0)`,
];
const applyMissing = (t: string) => `INSERT INTO public.${t} SELECT g, 'v' || g, g / 7.0 FROM generate_series(101, 103) g`;
const applyRest = (t: string) => [`UPDATE public.${t} SET v = 'v5001' WHERE id = 5001`, `DELETE FROM public.${t} WHERE id = 15000`];

const stack = useStack(TASK_QUEUE, async (db) => {
  await db.query('src', `CREATE TABLE public.items ${COLUMNS}`);
  await db.query('src', `INSERT INTO public.items ${ROWS}`);
  for (const t of TARGETS) {
    await db.query('tgt', `CREATE TABLE public.${t} ${COLUMNS}`);
    await db.query('tgt', `INSERT INTO public.${t} ${ROWS}`);
    for (const sql of behind(t)) await db.query('tgt', sql);
  }
});

const spec = (name: string, target: string, grace?: string) =>
  specFor(
    name,
    { source: 'public.items', target: `public.${target}`, chunk: { column: 'id', size: 5000 } },
    {
      taskQueue: TASK_QUEUE,
      mode: 'verify',
      concurrency: 1,
      retries: { rangeAttempts: 3 },
      cutover: { approval: 'auto' },
      ...(grace ? { verify: { lagGrace: grace } } : {}),
    },
  );

/** Each scheduled activity of the history: its type and the range it names, in order. */
async function scheduled(h: WorkflowHandle): Promise<{ type: string; range?: number }[]> {
  const history = await h.fetchHistory();
  return (history.events ?? []).flatMap((e) => {
    const a = e.activityTaskScheduledEventAttributes;
    if (!a) return [];
    const data = a.input?.payloads?.[0]?.data;
    const input = data ? (JSON.parse(Buffer.from(data).toString('utf8')) as { rangeIndex?: number }) : {};
    return [{ type: a.activityType?.name ?? '?', range: input.rangeIndex }];
  });
}

const timers = async (h: WorkflowHandle) => ((await h.fetchHistory()).events ?? []).filter((e) => e.timerStartedEventAttributes).length;

test('lag: the replica catches up within the grace; only the located keys are read again; the window moves on meanwhile', async () => {
  const s = spec('lag-caught-up', TARGETS[0], '5 seconds');
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  // The replica applies what it was behind on once every range has had its first look (so each
  // fault is seen), well within the grace.
  const looked = async () => (await stack.pg.query('tgt', 'SELECT count(*)::int AS n FROM backfill.ranges WHERE migration = $1', [s.name])).rows[0]?.n === 4;
  const deadline = Date.now() + 60_000;
  while (!(await looked().catch(() => false)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await stack.pg.query('tgt', applyMissing(TARGETS[0]));
  for (const sql of applyRest(TARGETS[0])) await stack.pg.query('tgt', sql);
  const r = await h.result();
  assert.equal(r.phase, 'completed', JSON.stringify(r));
  const report: Report = await h.query(reportQuery);
  const t = report.tables[0];
  assert.equal(report.verdict, 'green');
  assert.equal(t.rangeSummary.verified, 4);
  assert.equal(t.converged, 5, 'three missing rows, one value, one extra row caught up');
  assert.deepEqual(
    t.ranges.filter((x) => x.converged).map((x) => [x.index, x.converged, x.attempts]),
    [
      [0, 3, 2],
      [1, 1, 2],
      [2, 1, 2],
    ],
  );
  assert.match(renderMarkdown(report), /5 key\(s\) differed at first and matched when read again after the lag grace/);

  const acts = await scheduled(h);
  // Located at once (no second measure before locating); then read again by key, then measured whole.
  for (const i of [0, 1, 2]) {
    const mine = acts.filter((a) => a.range === i).map((a) => a.type);
    assert.deepEqual(mine, ['verifyRange', 'locateRange', 'recheckRange', 'verifyRange'], `range ${i}`);
  }
  assert.deepEqual(
    acts.filter((a) => a.range === 3).map((a) => a.type),
    ['verifyRange'],
  );
  // With one slot, ranges 1 to 3 were measured while range 0 waited out its grace: no slot was held.
  const at = (type: string, range: number) => acts.findIndex((a) => a.type === type && a.range === range);
  assert.ok(at('verifyRange', 3) < at('recheckRange', 0), JSON.stringify(acts));
  await replayAndMaybeRecord(h, 'verify-lag-grace-caught-up');
});

test('lag: keys that stay different after the looks are the verdict, with the converged ones counted', async () => {
  const s = spec('lag-partly', TARGETS[1], '1 second');
  await stack.pg.query('tgt', applyMissing(TARGETS[1])); // applied already: only the other two stay behind
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  const p = await waitForPhase(h, ['needs_attention', 'completed', 'failed']);
  assert.equal(p.phase, 'needs_attention', JSON.stringify(p));
  const report: Report = await h.query(reportQuery);
  const red = report.tables[0].ranges.filter((r) => r.status !== 'verified');
  assert.deepEqual(
    red.map((r) => r.index),
    [1, 2],
  );
  assert.deepEqual(red[0].keys.changed, [['5001']]);
  assert.deepEqual(red[0].changedColumns, { v: 1 });
  assert.deepEqual(red[1].keys.extra, [['15000']]);
  // Measured once, then read again twice (the grace, then twice the grace): three looks.
  assert.deepEqual(
    red.map((r) => r.attempts),
    [3, 3],
  );
  assert.equal(report.tables[0].converged, undefined, 'nothing converged');
  const ledger = await stack.pg.query('tgt', `SELECT range_index, kind, key::text AS key FROM backfill.differences WHERE migration = $1 ORDER BY range_index`, [
    s.name,
  ]);
  assert.deepEqual(
    ledger.rows.map((x) => `${x.range_index}:${x.kind}:${x.key}`),
    ['1:changed:["5001"]', '2:extra:["15000"]'],
  );
  await h.signal('abort', { reason: 'seen' });
  assert.equal((await endingOf(h)).phase, 'aborted');
});

test('lag: without a grace (the default) a range that differs is located at once and nothing waits', async () => {
  const s = spec('lag-none', TARGETS[2]);
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });
  const p = await waitForPhase(h, ['needs_attention', 'completed', 'failed']);
  assert.equal(p.phase, 'needs_attention');
  const report: Report = await h.query(reportQuery);
  const red = report.tables[0].ranges.filter((r) => r.status !== 'verified');
  assert.deepEqual(
    red.map((r) => [r.index, r.attempts, r.missing, r.changed, r.extra]),
    [
      [0, 1, 3, 0, 0],
      [1, 1, 0, 1, 0],
      [2, 1, 0, 0, 1],
    ],
  );
  const acts = await scheduled(h);
  assert.equal(acts.filter((a) => a.type === 'recheckRange').length, 0);
  assert.equal(acts.filter((a) => a.type === 'verifyRange').length, 4, 'each range measured once');
  assert.equal(await timers(h), 0, 'no wait');
  await h.signal('abort', { reason: 'seen' });
  assert.equal((await endingOf(h)).phase, 'aborted');
});

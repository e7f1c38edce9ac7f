// Starting a migration again after an abort (the same spec, the same name): the ranges the earlier
// run's ledger verified are verified again without a copy (their target rows keep their xmin), a
// range whose source changed since is copied again, the rest are copied, and the migration ends
// green with the target equal to the source. A changed plan, or a name whose migration completed,
// starts afresh and says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { WorkflowHandle } from '@temporalio/client';
import { backfillMigration } from '../src/workflows/migration';
import { abortSignal, progressQuery, reportQuery, type Progress } from '../src/workflows/messages';
import { renderMarkdown } from '../src/report/render';
import { renderHtml } from '../src/report/html';
import { endingOf, replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';
import { decideResume } from '../src/domain/resume';

const TASK_QUEUE = 'resume';
const TABLES = ['items_a', 'items_b', 'items_c'];

const stack = useStack(TASK_QUEUE, async (s) => {
  for (const t of TABLES) {
    await s.query('src', `CREATE TABLE public.${t} (id bigint PRIMARY KEY, qty int NOT NULL, label text)`);
    await s.query('src', `INSERT INTO public.${t} SELECT g, g % 7, 'item ' || g FROM generate_series(1, 6000) g`);
    await s.query('tgt', `CREATE TABLE public.${t} (id bigint PRIMARY KEY, qty int NOT NULL, label text)`);
  }
});

test('resume: what planning decides from what the ledger holds of an earlier run (pure)', () => {
  const prior = { planHash: 'h', ranges: 9, verified: 7, switched: false };
  assert.deepEqual(decideResume(undefined, 'h', 'copy'), { reusable: 0 });
  assert.deepEqual(decideResume(prior, 'h', 'copy'), { reusable: 7 });
  // Verify mode measures every range anyway: nothing to reuse, nothing to say.
  assert.deepEqual(decideResume(prior, 'h', 'verify'), { reusable: 0 });
  assert.deepEqual(decideResume(prior, 'other', 'copy'), { reusable: 0, fresh: 'plan-changed' });
  // Recorded before plan hashes were kept: the plan cannot be shown to be the same.
  assert.deepEqual(decideResume({ ...prior, planHash: null }, 'h', 'copy'), { reusable: 0, fresh: 'plan-changed' });
  // Switched, and nothing recorded since: a new migration. Ranges recorded since the switch (a new
  // migration of the name that was aborted in turn) are that run's, and are reused.
  assert.deepEqual(decideResume({ ...prior, ranges: 0, verified: 0, switched: true }, 'h', 'copy'), { reusable: 0, fresh: 'completed' });
  assert.deepEqual(decideResume({ ...prior, switched: true }, 'h', 'copy'), { reusable: 7 });
});

/** Ranges of `size` keys over ids 1..6000: range k holds ids [1 + k·size, 1 + (k+1)·size). */
const spec = (name: string, table: string, size: number, approval: 'auto' | 'required') =>
  specFor(
    name,
    { source: `public.${table}`, target: `public.${table}`, chunk: { column: 'id', size } },
    { taskQueue: TASK_QUEUE, concurrency: 1, cutover: { approval } },
  );

const start = (s: ReturnType<typeof spec>) => stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [s] });

/** Each target row's id and the transaction that wrote it. */
async function versions(table: string): Promise<Map<number, string>> {
  const r = await stack.pg.query('tgt', `SELECT id, xmin::text AS x FROM public.${table}`);
  return new Map(r.rows.map((x: { id: string; x: string }) => [Number(x.id), x.x]));
}

const rowsOf = async (alias: string, table: string) =>
  (await stack.pg.query(alias, `SELECT count(*)::int AS n, md5(string_agg(t::text, ',' ORDER BY id)) AS m FROM public.${table} t`)).rows[0] as {
    n: number;
    m: string;
  };

const ledger = async (name: string) =>
  (await stack.pg.query('tgt', `SELECT range_index, status, copied_at::text AS copied FROM backfill.ranges WHERE migration = $1 ORDER BY range_index`, [name]))
    .rows as {
    range_index: number;
    status: string;
    copied: string;
  }[];

async function progressUntil(h: WorkflowHandle, done: (p: Progress) => boolean): Promise<Progress> {
  for (const end = Date.now() + 60_000; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) {
    const p = await h.query(progressQuery).catch(() => undefined);
    if (p && done(p)) return p;
  }
  throw new Error('timed out waiting for progress');
}

test('resume: after an abort with 7 of 12 ranges verified, those 7 are verified again without a copy, one whose source changed is copied again, the rest copied; green, target = source', async () => {
  const s = spec('resumed', 'items_a', 500, 'auto');
  // Range 6 (ids 3001..3500) waits on a row the test inserts and holds uncommitted: the abort comes
  // with ranges 0-5 verified and range 6 in flight, which lands before the migration stops.
  const holder = new pg.Client({ connectionString: stack.pg.url('tgt') });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query(`INSERT INTO public.items_a VALUES (3001, 0, 'held')`);
  const first = await start(s);
  try {
    await progressUntil(first, (p) => p.tables[0]?.ranges.verified === 6 && p.tables[0].ranges.inFlight === 1);
    await first.signal(abortSignal, { reason: 'stopped at 6/12' });
    // The abort waits for the range in flight; it lands once the row is let go (and is not copied again).
    await holder.query('ROLLBACK');
  } finally {
    await holder.end();
  }
  assert.equal((await endingOf(first)).phase, 'aborted');
  const before = await ledger(s.name);
  assert.deepEqual(
    before.map((r) => [r.range_index, r.status]),
    [0, 1, 2, 3, 4, 5, 6].map((i) => [i, 'verified']),
  );
  const written = await versions('items_a');
  assert.equal(written.size, 3500, 'the aborted run left ranges 0-6 in the target');

  // Range 2 (ids 1001..1500) changes in the source after it was proven: it must be copied again.
  await stack.pg.query('src', `UPDATE public.items_a SET label = 'changed' WHERE id = 1200`);

  const again = await start(s);
  assert.equal((await endingOf(again)).phase, 'completed');
  const p = await again.query(progressQuery);
  assert.deepEqual(p.resume?.tables, [{ source: 'public.items_a', target: 'public.items_a', reusable: 7, reused: 6, differed: 1, copied: 6 }]);
  assert.match(p.resume.note, /left 7 verified range\(s\) under the same plan/);
  // Rows copied: the re-copied range and the five never copied, 500 rows each.
  assert.equal(p.tables[0].rowsCopied, 6 * 500);

  // The reused ranges were not written again: the same row versions, the same copied_at in the ledger.
  const now = await versions('items_a');
  const rangeOf = (id: number) => Math.floor((id - 1) / 500);
  for (const [id, x] of written) {
    if (rangeOf(id) === 2) assert.notEqual(now.get(id), x, `row ${id} of the changed range was copied again`);
    else assert.equal(now.get(id), x, `row ${id} of a reused range was written again`);
  }
  const after = await ledger(s.name);
  assert.deepEqual(
    after.map((r) => r.status),
    Array(12).fill('verified'),
  );
  for (const r of before) {
    if (r.range_index === 2) assert.notEqual(after[2].copied, r.copied, 'range 2 was copied again');
    else assert.equal(after[r.range_index].copied, r.copied, `copied_at of reused range ${r.range_index}`);
  }

  assert.deepEqual(await rowsOf('tgt', 'items_a'), await rowsOf('src', 'items_a'));
  const report = await again.query(reportQuery);
  assert.equal(report.verdict, 'green');
  assert.deepEqual(report.resume, p.resume);
  assert.match(
    renderMarkdown(report),
    /Started again: .*public\.items_a → public\.items_a: 6 of the 7 range\(s\) the earlier run verified were verified again without a copy, 1 differed and were copied again; 6 range\(s\) copied\./,
  );
  assert.ok(renderHtml(report).includes('<p class="note">Started again: an earlier run of this name left 7 verified range(s)'), 'the HTML report says it');
  const audit = await stack.pg.query('tgt', `SELECT action, detail->>'reason' AS reason FROM backfill.audit WHERE migration = $1 ORDER BY id`, [s.name]);
  assert.deepEqual(
    audit.rows.slice(0, 2).map((a) => a.action),
    ['abort', 'restart'],
  );
  assert.equal(audit.rows.at(-1).action, 'switch');
  assert.equal(audit.rows[1].reason, p.resume.note);
  await replayAndMaybeRecord(again, 'resumed-from-ledger');
});

test('resume: a changed plan (another chunk) starts afresh and says so: every range copied, the earlier ranges gone from the ledger', async () => {
  const first = await start(spec('replanned', 'items_b', 500, 'required'));
  await waitForPhase(first, ['awaiting_approval']);
  await first.signal(abortSignal, { reason: 'wrong chunk' });
  assert.equal((await endingOf(first)).phase, 'aborted');
  const written = await versions('items_b');

  const again = await start(spec('replanned', 'items_b', 1000, 'required'));
  const p = await waitForPhase(again, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(p.phase, 'awaiting_approval');
  assert.match(p.resume?.note ?? '', /^the plan of public\.items_b differs from the earlier run's: every range of it is copied again$/);
  assert.deepEqual(
    p.resume?.tables.map((t) => [t.reusable, t.reused, t.copied]),
    [[0, 0, 6]],
  );
  const now = await versions('items_b');
  assert.ok(
    [...written].every(([id, x]) => now.get(id) !== x),
    'every row was copied again',
  );
  assert.deepEqual(
    (await ledger('replanned')).map((r) => r.range_index),
    [0, 1, 2, 3, 4, 5],
  );
  await again.signal(abortSignal, { reason: 'test done' });
  await endingOf(again);
});

test('resume: the name of a migration that completed starts a new migration: every range copied again', async () => {
  const s = spec('completed-once', 'items_c', 1000, 'auto');
  assert.equal((await endingOf(await start(s))).phase, 'completed');
  const written = await versions('items_c');

  const again = await start(s);
  assert.equal((await endingOf(again)).phase, 'completed');
  const p = await again.query(progressQuery);
  assert.match(p.resume?.note ?? '', /^an earlier migration of this name completed: this one is new, every range is copied$/);
  assert.deepEqual(
    p.resume?.tables.map((t) => [t.reusable, t.reused, t.copied]),
    [[0, 0, 6]],
  );
  const now = await versions('items_c');
  assert.ok(
    [...written].every(([id, x]) => now.get(id) !== x),
    'every row was copied again',
  );
  assert.deepEqual(await rowsOf('tgt', 'items_c'), await rowsOf('src', 'items_c'));
});

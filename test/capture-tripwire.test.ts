// The tripwire of change capture's final window, against real servers: the window compares the keys
// the stream saw change since the checkpoint, so a change the stream never carried must be noticed
// some other way before the switch. Injected here: an update made while the table was out of the
// publication (the stream never sends it), a delete made the same way, a row changed on the target
// by someone else, and a leaf partition truncated (pgoutput sends nothing for it under
// publish_via_partition_root). Each is caught before the switch (copied again under the freeze, or
// located by a new checkpoint); none switches with a difference. By default the window is proven by
// its rows (every row version written since the checkpoint, found by its transaction id, compared
// by key; the rest counted and their keys summed), without measuring every range. With
// BACKFILL_WINDOW_PROOF=counters a quiet window is proven by the source's own write counters, but
// only once every other session has reported its counts: a write whose count its session still
// holds (without that wait, the counters agreed with the stream and the migration switched without
// it) is caught.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WorkflowHandle } from '@temporalio/client';
import { backfillMigration } from '../src/workflows/migration';
import { abortSignal, approveCutoverUpdate, reportQuery, type Progress } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { captureOf } from '../src/spec/schema';
import { approveUntilCompleted, endingOf, replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { capturedSpecFor, parsed } from './helpers/spec';
import { tableFingerprint } from '../src/infra/writer';
import pg from 'pg';

const TASK_QUEUE = 'capture-tripwire';

const ROWS = 2_000;
const PLAIN = (t: string) => `CREATE TABLE ${t} (id bigint PRIMARY KEY, qty int NOT NULL, note text)`;
const PARTED = (t: string) => `
CREATE TABLE ${t} (id bigint NOT NULL, day date NOT NULL, qty int NOT NULL, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE ${t}_a PARTITION OF ${t} FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
CREATE TABLE ${t}_b PARTITION OF ${t} FOR VALUES FROM ('2024-07-01') TO ('2025-01-01')`;

const stack = useStack(TASK_QUEUE, async (db) => {
  await db.query('src', `CREATE ROLE app LOGIN PASSWORD 'app'`);
  for (const t of ['quiet', 'counted', 'sneaky', 'stale', 'deleted', 'meddled']) {
    await db.query('src', PLAIN(`public.${t}`));
    await db.query('src', `INSERT INTO public.${t} SELECT i, i % 7, 'n' || i FROM generate_series(1, ${ROWS}) i`);
    await db.query('tgt', PLAIN(`public.${t}`));
  }
  await db.query('src', PARTED('public.parted'));
  await db.query('src', `INSERT INTO public.parted SELECT i, date '2024-01-01' + (i % 366), i % 7 FROM generate_series(1, ${ROWS}) i`);
  await db.query('tgt', PARTED('public.parted'));
  for (const d of ['src', 'tgt']) await db.query(d, PARTED('public.attached'));
  await db.query('src', `INSERT INTO public.attached SELECT i, date '2024-01-01' + (i % 366), i % 7 FROM generate_series(1, ${ROWS}) i`);
});

const spec = (name: string, table: string) => {
  const doc = capturedSpecFor(name, `public.${table}`, { taskQueue: TASK_QUEUE, chunk: 500 });
  return table === 'parted' ? { ...doc, tables: [{ ...doc.tables[0], key: ['id', 'day'], chunk: undefined }] } : doc;
};

/** Started, and at the gate with green evidence. */
async function atTheGate(doc: ReturnType<typeof spec>): Promise<{ h: WorkflowHandle; p: Progress }> {
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
  const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(p.phase, 'awaiting_approval', p.detail);
  return { h, p };
}

/** The target equals the source, by a query of its own (every row's md5). */
async function assertExact(table: string): Promise<void> {
  const [s, t] = await Promise.all([tableFingerprint(stack.pg.url('src'), table), tableFingerprint(stack.pg.url('tgt'), table)]);
  assert.deepEqual(t, s);
}

/** Until the target shows what the stream applied (read there: the progress tells it only when the stream's call ends, up to 10 s later). */
async function onTarget(sql: string, expected: unknown): Promise<void> {
  const end = Date.now() + 30_000;
  for (;;) {
    const got = (await stack.pg.query('tgt', sql)).rows[0]?.v;
    if (got === expected) return;
    assert.ok(Date.now() < end, `the stream applies what the source wrote: ${sql} gave ${String(got)}, waiting for ${String(expected)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs `fn` with the worker's BACKFILL_WINDOW_PROOF set (the worker here runs in this process). */
async function withProof<T>(proof: 'rows' | 'counters', fn: () => Promise<T>): Promise<T> {
  const was = process.env.BACKFILL_WINDOW_PROOF;
  process.env.BACKFILL_WINDOW_PROOF = proof;
  try {
    return await fn();
  } finally {
    if (was === undefined) delete process.env.BACKFILL_WINDOW_PROOF;
    else process.env.BACKFILL_WINDOW_PROOF = was;
  }
}

/** Activity types scheduled from the freeze on (the first action this migration runs), in order. */
async function activitiesAfterFreeze(h: WorkflowHandle): Promise<string[]> {
  const events = (await h.fetchHistory()).events ?? [];
  const names = events.flatMap((e) => (e.activityTaskScheduledEventAttributes ? [String(e.activityTaskScheduledEventAttributes.activityType?.name)] : []));
  const freeze = names.indexOf('runAction');
  return freeze < 0 ? [] : names.slice(freeze);
}

test(
  'tripwire: a window is proven by its rows (written since the checkpoint, compared by key; the rest counted), without measuring every range',
  { timeout: 120_000 },
  async () => {
    const doc = spec('trip-rows', 'quiet');
    const { h, p } = await atTheGate(doc);
    // Writes after the checkpoint, applied by the stream while the gate waits, on a session that is
    // still open (and has just been busy) at the approval: the counters could not vouch for it.
    const c = new pg.Client({ connectionString: stack.pg.url('src'), application_name: 'app' });
    await c.connect();
    try {
      await c.query('UPDATE public.quiet SET qty = qty + 1 WHERE id <= 40');
      await c.query('DELETE FROM public.quiet WHERE id BETWEEN 41 AND 45');
      await c.query(`INSERT INTO public.quiet SELECT i, 1, 'new' FROM generate_series(${ROWS + 1}, ${ROWS + 10}) i`);
      await onTarget(`SELECT count(*)::int AS v FROM public.quiet WHERE id > ${ROWS}`, 10);
      await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
      const r = await h.result();
      assert.equal(r.phase, 'completed', r.reason);
      // 40 updated and 10 inserted: 50 row versions on each side; the 5 deleted are in the count.
      assert.match(
        r.finalWindow?.proof ?? '',
        /^the rows account for every write since the checkpoint \(50 row version\(s\) on the source and \d+ on the target written since the checkpoint, equal by key; 2005 row\(s\) on each side with the same keys\)$/,
      );
      const after = await activitiesAfterFreeze(h);
      assert.ok(after.includes('captureTripwire'), `the tripwire ran: ${after.join(', ')}`);
      assert.ok(
        !after.includes('sweepTable') && !after.some((a) => a.startsWith('reconcileTable')),
        `no range was measured after the freeze: ${after.join(', ')}`,
      );
    } finally {
      await c.end();
    }
    await assertExact('public.quiet');
  },
);

test(
  "tripwire (BACKFILL_WINDOW_PROOF=counters): a quiet window is proven by the source's write counters, without reading a whole table",
  { timeout: 120_000 },
  () =>
    withProof('counters', async () => {
      const doc = spec('trip-quiet', 'counted');
      const { h, p } = await atTheGate(doc);
      // Writes after the checkpoint, applied by the stream while the gate waits.
      await stack.pg.query('src', 'UPDATE public.counted SET qty = qty + 1 WHERE id <= 40');
      await stack.pg.query('src', 'DELETE FROM public.counted WHERE id BETWEEN 41 AND 45');
      await stack.pg.query('src', `INSERT INTO public.counted SELECT i, 1, 'new' FROM generate_series(${ROWS + 1}, ${ROWS + 10}) i`);
      await onTarget(`SELECT count(*)::int AS v FROM public.counted WHERE id > ${ROWS}`, 10);
      await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
      const r = await h.result();
      assert.equal(r.phase, 'completed', r.reason);
      assert.match(r.finalWindow?.proof ?? '', /the source's write counters account for every change since the checkpoint/);
      const after = await activitiesAfterFreeze(h);
      assert.ok(after.includes('captureTripwire'), `the tripwire ran: ${after.join(', ')}`);
      assert.ok(!after.some((a) => a.startsWith('reconcileTable')), `no whole table was read after the freeze: ${after.join(', ')}`);
      await assertExact('public.counted');
    }),
);

test(
  'tripwire: an update the stream never carried (made while the table was out of the publication) is caught under the freeze and copied before the switch',
  { timeout: 180_000 },
  async () => {
    const doc = spec('trip-sneaky', 'sneaky');
    const pub = captureOf(parsed(doc))!.publication;
    const { h, p } = await atTheGate(doc);
    await stack.pg.query('src', `ALTER PUBLICATION "${pub}" DROP TABLE public.sneaky`);
    await stack.pg.query('src', `UPDATE public.sneaky SET note = 'never sent' WHERE id = 777`);
    await stack.pg.query('src', `ALTER PUBLICATION "${pub}" ADD TABLE public.sneaky`);
    // A change the stream does carry, so the window is not empty.
    await stack.pg.query('src', `UPDATE public.sneaky SET qty = 99 WHERE id = 5`);
    await onTarget('SELECT qty AS v FROM public.sneaky WHERE id = 5', 99);
    // The stream never sent it: the target still has the old value, and the window's keys lack it.
    assert.equal((await stack.pg.query('tgt', 'SELECT note FROM public.sneaky WHERE id = 777')).rows[0].note, 'n777');
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
    const r = await h.result();
    assert.equal(r.phase, 'completed', r.reason);
    // The row version it wrote is found by its transaction id, and differs by key: every range
    // measured again under the freeze, and the one that changed copied again before the switch.
    assert.match(
      r.finalWindow?.proof ?? '',
      /^1 of the 2 key\(s\) written on either side since the checkpoint differ, e\.g\. \(777\): every range measured again on the frozen source/,
    );
    const after = await activitiesAfterFreeze(h);
    assert.ok(after.includes('sweepTable'), `every range was measured after the freeze: ${after.join(', ')}`);
    assert.ok(after.indexOf('sweepTable') < after.indexOf('runSwitch'), 'before the switch');
    assert.equal((await stack.pg.query('tgt', 'SELECT note FROM public.sneaky WHERE id = 777')).rows[0].note, 'never sent');
    await replayAndMaybeRecord(h, 'capture-tripwire-swept-switched');
    await assertExact('public.sneaky');
  },
);

test(
  'tripwire (BACKFILL_WINDOW_PROOF=counters): a write the stream never carried, whose count its session has not reported yet (idle within a second of its last report), is still caught before the switch',
  { timeout: 180_000 },
  () =>
    withProof('counters', async () => {
      const doc = spec('trip-stale', 'stale');
      const pub = captureOf(parsed(doc))!.publication;
      const { h, p } = await atTheGate(doc);
      const writes = async () =>
        Number((await stack.pg.query('src', `SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'public.stale'::regclass`)).rows[0].n_tup_upd);
      const before = await writes();
      // One session, two updates within a second: the first (carried) is reported when the session
      // goes idle; the second, made while the table is out of the publication, waits for the session's
      // next report, 10 s later.
      const c = new pg.Client({ connectionString: stack.pg.url('src'), application_name: 'app' });
      await c.connect();
      try {
        // (A second after the session's start, which reports what connecting read.)
        await new Promise((r) => setTimeout(r, 1200));
        await c.query('UPDATE public.stale SET qty = 99 WHERE id = 5');
        await stack.pg.query('src', `ALTER PUBLICATION "${pub}" DROP TABLE public.stale`);
        await c.query(`UPDATE public.stale SET note = 'never sent' WHERE id = 777`);
        await stack.pg.query('src', `ALTER PUBLICATION "${pub}" ADD TABLE public.stale`);
        // The stream applied the carried update (read on the target: the progress tells it only when
        // the stream's call ends, which may be after the session's report).
        for (let i = 0; (await stack.pg.query('tgt', 'SELECT qty FROM public.stale WHERE id = 5')).rows[0].qty !== 99; i++) {
          assert.ok(i < 300, 'the stream applies the carried update');
          await new Promise((r) => setTimeout(r, 20));
        }
        // The fault landed: the source's counters have the carried update only, exactly what the
        // stream delivered, and the target lacks the other.
        assert.equal(await writes(), before + 1, 'the second update is not counted yet');
        assert.equal((await stack.pg.query('tgt', 'SELECT note FROM public.stale WHERE id = 777')).rows[0].note, 'n777');
        await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
        const r = await h.result();
        assert.equal(r.phase, 'completed', r.reason);
        // The counters were not trusted until the session had been idle long enough to report; then
        // they showed one write more than the stream delivered, and every range was measured again.
        assert.doesNotMatch(r.finalWindow?.proof ?? '', /account for every change/);
        assert.match(
          r.finalWindow?.proof ?? '',
          /2 row write\(s\) counted on the source since the checkpoint, 1 change\(s\) delivered by the stream .*every range measured again/,
        );
        assert.equal((await stack.pg.query('tgt', 'SELECT note FROM public.stale WHERE id = 777')).rows[0].note, 'never sent');
        await assertExact('public.stale');
      } finally {
        await c.end();
      }
    }),
);

test(
  'tripwire: a delete the stream never carried (the table out of the publication) leaves no row version; the rows counted catch it, and it is copied before the switch',
  { timeout: 180_000 },
  async () => {
    const doc = spec('trip-deleted', 'deleted');
    const pub = captureOf(parsed(doc))!.publication;
    const { h, p } = await atTheGate(doc);
    await stack.pg.query('src', `ALTER PUBLICATION "${pub}" DROP TABLE public.deleted`);
    await stack.pg.query('src', 'DELETE FROM public.deleted WHERE id = 888');
    await stack.pg.query('src', `ALTER PUBLICATION "${pub}" ADD TABLE public.deleted`);
    await stack.pg.query('src', 'UPDATE public.deleted SET qty = 99 WHERE id = 5');
    await onTarget('SELECT qty AS v FROM public.deleted WHERE id = 5', 99);
    // The fault landed: the target still has the row.
    assert.equal((await stack.pg.query('tgt', 'SELECT count(*)::int AS n FROM public.deleted WHERE id = 888')).rows[0].n, 1);
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
    const r = await h.result();
    assert.equal(r.phase, 'completed', r.reason);
    assert.match(r.finalWindow?.proof ?? '', /^the source holds 1999 row\(s\), the target 2000: every range measured again on the frozen source/);
    const after = await activitiesAfterFreeze(h);
    assert.ok(after.indexOf('sweepTable') >= 0 && after.indexOf('sweepTable') < after.indexOf('runSwitch'), `measured before the switch: ${after.join(', ')}`);
    assert.equal((await stack.pg.query('tgt', 'SELECT count(*)::int AS n FROM public.deleted WHERE id = 888')).rows[0].n, 0);
    await assertExact('public.deleted');
  },
);

test(
  'tripwire: a row changed on the target by someone else after the checkpoint is found by its row version and copied again before the switch',
  { timeout: 180_000 },
  async () => {
    const doc = spec('trip-meddled', 'meddled');
    const { h, p } = await atTheGate(doc);
    await stack.pg.query('tgt', `UPDATE public.meddled SET note = 'meddled' WHERE id = 321`);
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
    const r = await h.result();
    assert.equal(r.phase, 'completed', r.reason);
    assert.match(
      r.finalWindow?.proof ?? '',
      /^1 of the 1 key\(s\) written on either side since the checkpoint differ, e\.g\. \(321\): every range measured again/,
    );
    assert.equal((await stack.pg.query('tgt', 'SELECT note FROM public.meddled WHERE id = 321')).rows[0].note, 'n321');
    await assertExact('public.meddled');
  },
);

test(
  'tripwire: a leaf partition truncated after the checkpoint (pgoutput sends nothing for it) makes the window red; the next checkpoint finds the rows',
  { timeout: 180_000 },
  async () => {
    const doc = spec('trip-truncated', 'parted');
    const { h, p } = await atTheGate(doc);
    const gone = (await stack.pg.query('src', 'SELECT count(*)::int AS n FROM public.parted_b')).rows[0].n as number;
    assert.ok(gone > 0);
    await stack.pg.query('src', 'TRUNCATE public.parted_b');
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
    const red = await waitForPhase(h, ['needs_attention', 'completed', 'failed']);
    assert.equal(red.phase, 'needs_attention', red.detail);
    const report: Report = await h.query(reportQuery);
    assert.equal(report.verdict, 'red');
    const extra = report.tables[0].ranges.reduce((a, r) => a + (r.extra ?? 0), 0);
    assert.equal(extra, gone, 'every row of the truncated partition is found on the target only');
    const voided = await stack.pg.query('tgt', `SELECT detail->>'reason' AS why FROM backfill.audit WHERE migration = $1 AND action = 'approval-void'`, [
      doc.name,
    ]);
    assert.match(String(voided.rows[0]?.why), /rewritten or truncated on the source since the checkpoint.*parted_b/);
    await h.signal(abortSignal, { reason: 'test done' });
    assert.equal((await endingOf(h)).phase, 'aborted');
    await replayAndMaybeRecord(h, 'capture-leaf-truncated-red-aborted');
  },
);

test(
  'tripwire: a partition attached with rows while the gate waits (no row change in the stream) is followed: copied, proven at a new checkpoint, exact',
  { timeout: 180_000 },
  async () => {
    const doc = spec('trip-attached', 'attached');
    const { h, p } = await atTheGate(doc);
    // Rows that arrive by ATTACH PARTITION: logical decoding carries none of them.
    await stack.pg.query('src', 'CREATE TABLE public.attached_c (LIKE public.attached)');
    await stack.pg.query('src', `INSERT INTO public.attached_c SELECT i, date '2025-03-01', 5 FROM generate_series(${ROWS + 1}, ${ROWS + 300}) i`);
    await stack.pg.query('src', `ALTER TABLE public.attached ATTACH PARTITION public.attached_c FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`);
    await stack.pg.query('tgt', `CREATE TABLE public.attached_c PARTITION OF public.attached FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`);
    const approvals = await approveUntilCompleted(h, p.digest!);
    assert.equal(approvals.length, 2, 'the partition change voided the first approval and a new checkpoint presented new evidence');
    assert.notEqual(approvals[1], approvals[0]);
    const voided = await stack.pg.query('tgt', `SELECT detail->>'reason' AS why FROM backfill.audit WHERE migration = $1 AND action = 'approval-void'`, [
      doc.name,
    ]);
    assert.match(
      String(voided.rows[0]?.why),
      /partitions changed since they were last proven: public\.attached_c attached or created on the source.*a new checkpoint/,
    );
    assert.equal((await stack.pg.query('tgt', 'SELECT count(*)::int AS n FROM public.attached_c')).rows[0].n, 300, 'the attached rows reached the target');
    await assertExact('public.attached');
  },
);

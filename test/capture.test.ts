// Change capture through logical replication, end to end against real servers: a table with no
// change column and a writer (inserts, updates that leave a TOASTed text alone or change it,
// deletes) running through the whole migration; the gate's evidence taken at a checkpoint while
// the writer goes on; the freeze, the final window, the switch; the target equal to the source by
// an independent query, and nothing left behind on the source. Also: an abort mid-way cleans up;
// snapshot epochs that keep ending fail the migration with its reason (SnapshotLost).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pgClient from 'pg';
import { WorkflowFailedError } from '@temporalio/client';
import { ensureSchema, LEDGER_DDL } from '../src/db/ledger';
import { failureTypeOf, isFailure } from '../src/domain/failures';
import { backfillMigration } from '../src/workflows/migration';
import { abortSignal, approveCutoverUpdate, progressQuery, reportQuery, rerunUpdate, type Progress } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { renderMarkdown } from '../src/report/render';
import { captureOf } from '../src/spec/schema';
import { endingOf, replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { capturedSpecFor, parsed } from './helpers/spec';
import { rowGate, until } from './helpers/fault-points';
import { startWriter, tableFingerprint } from '../src/infra/writer';
import { FILL_WRITER_TABLE, WRITER_TABLE } from '../src/db/demo';

const TASK_QUEUE = 'capture';
const ROWS = 30_000;

const stack = useStack(TASK_QUEUE, async (db) => {
  await db.query('src', `CREATE ROLE app LOGIN PASSWORD 'app'`);
  for (const t of ['accounts', 'ledger_lines', 'payments', 'refunds', 'checked', 'held']) {
    await db.query('src', WRITER_TABLE(`public.${t}`));
    await db.query('src', FILL_WRITER_TABLE(`public.${t}`, ROWS));
    await db.query('src', `GRANT SELECT, INSERT, UPDATE, DELETE ON public.${t} TO app`);
    await db.query('tgt', WRITER_TABLE(`public.${t}`));
  }
  // A target that refuses most rows: the migration waits for a person.
  await db.query('tgt', 'ALTER TABLE public.checked ADD CONSTRAINT small_balance CHECK (balance < 100)');
});

const appUrl = () => stack.pg.url('src').replace(/\/\/postgres:[^@]*@/, '//app:app@');

const spec = (name: string, table: string) => capturedSpecFor(name, `public.${table}`, { taskQueue: TASK_QUEUE, chunk: 2_000 });

/** The migration's slots (its own and its epochs') and publication still on the source. */
async function leftOnSource(name: string): Promise<{ slots: number; publications: number }> {
  const c = captureOf(parsed(spec(name, 'accounts')))!;
  const slots = await stack.pg.query('src', 'SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name LIKE $1', [`${c.slot.slice(0, 40)}%`]);
  const pubs = await stack.pg.query('src', 'SELECT count(*)::int AS n FROM pg_publication WHERE pubname = $1', [c.publication]);
  return { slots: slots.rows[0].n, publications: pubs.rows[0].n };
}

test(
  'capture: a writer through the whole migration, no change column; after the switch the target equals the source, nothing left on the source',
  { timeout: 240_000 },
  async () => {
    const writer = await startWriter(appUrl(), 'public.accounts', { perSecond: 150, firstNewId: ROWS + 1, maxId: ROWS });
    try {
      const doc = spec('captured', 'accounts');
      const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
      const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
      assert.equal(p.phase, 'awaiting_approval', p.detail);
      assert.ok(p.capture, 'progress shows change capture');
      assert.match(p.capture.checkpoint ?? '', /^[0-9A-F]+\/[0-9A-F]+$/, 'the evidence is at a checkpoint LSN');
      assert.ok(p.capture.transactions > 0, 'the stream applied transactions while the writer wrote');
      assert.ok(writer.total() > 100, `the writer wrote through the backfill (${writer.total()})`);
      const report: Report = await h.query(reportQuery);
      assert.equal(report.verdict, 'green');
      // The totals were read at the checkpoint, both sides at one point, while the writer wrote.
      assert.ok(report.tables[0].totals.match && report.tables[0].totals.sumOfRanges.match, 'the totals at the checkpoint agree');
      assert.equal(report.delta.watermark, p.capture.checkpoint, 'the digest covers the checkpoint');
      assert.match(
        renderMarkdown(report),
        /Change capture \(logical replication\): the evidence is the source at checkpoint [0-9A-F]+\/[0-9A-F]+, every range compared there while writes went on/,
      );
      // The writer goes on while the gate waits: the stream follows it.
      const before = p.capture.transactions;
      await until('the stream goes on at the gate', async () => (await h.query(progressQuery)).capture!.transactions > before);
      const waiting: Progress = await h.query(progressQuery);
      assert.equal(waiting.phase, 'awaiting_approval');
      await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
      const r = await h.result();
      assert.equal(r.phase, 'completed', r.reason);
      assert.ok(r.finalWindow, 'the final window is reported');
      // Under a steady writer the source's counters never account exactly; the rows written since
      // the checkpoint, found on each side by their transaction ids, prove the window without
      // measuring every range again.
      assert.match(r.finalWindow.proof ?? '', /^the rows account for every write since the checkpoint \([1-9]\d* row version\(s\) on the source/);
      const scheduled = ((await h.fetchHistory()).events ?? []).flatMap((e) =>
        e.activityTaskScheduledEventAttributes ? [String(e.activityTaskScheduledEventAttributes.activityType?.name)] : [],
      );
      assert.ok(!scheduled.slice(scheduled.indexOf('runAction')).includes('sweepTable'), 'no range measured again after the freeze');
      await replayAndMaybeRecord(h, 'capture-writer-gated-switched');
    } finally {
      await writer.stop();
    }
    const counts = writer.counts;
    assert.ok(counts.refused > 0 || counts.updates > 0, 'the writer ran');
    assert.ok(counts.docUpdates > 0 && counts.deletes > 0 && counts.inserts > 0, JSON.stringify(counts));
    assert.equal(counts.failed, 0, writer.lastError());
    // The target equals the source, by a query of its own.
    const [s, t] = await Promise.all([tableFingerprint(stack.pg.url('src'), 'public.accounts'), tableFingerprint(stack.pg.url('tgt'), 'public.accounts')]);
    assert.deepEqual(t, s);
    // A TOASTed text that an update left alone kept its value on the target (part of the md5), and
    // no source transaction was applied twice.
    const dup = await stack.pg.query(
      'tgt',
      `SELECT count(*)::int AS n, count(DISTINCT commit_lsn)::int AS d FROM backfill.capture_log WHERE migration = 'captured'`,
    );
    assert.ok(dup.rows[0].n > 0);
    assert.equal(dup.rows[0].n, dup.rows[0].d, 'no transaction applied twice');
    assert.deepEqual(await leftOnSource('captured'), { slots: 0, publications: 0 });
    // Each range recorded the LSN its rows are consistent with.
    const points = await stack.pg.query('tgt', `SELECT count(*)::int AS n, count(copy_point)::int AS p FROM backfill.ranges WHERE migration = 'captured'`);
    assert.ok(points.rows[0].n > 0);
    assert.equal(points.rows[0].p, points.rows[0].n, 'every range has its copy point');
  },
);

test('capture: an abort mid-way leaves no slot and no publication behind', { timeout: 120_000 }, async () => {
  const doc = spec('captured-aborted', 'ledger_lines');
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
  const end = Date.now() + 60_000;
  // Wait until the slot exists (the first epoch is open), then abort.
  const c = captureOf(parsed(doc))!;
  while (Date.now() < end) {
    const n = await stack.pg.query('src', 'SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = $1', [c.slot]);
    if (n.rows[0].n > 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await h.signal(abortSignal, { reason: 'wrong table' });
  const r = await endingOf(h);
  assert.equal(r.phase, 'aborted');
  assert.deepEqual(await leftOnSource(doc.name), { slots: 0, publications: 0 });
  await replayAndMaybeRecord(h, 'capture-aborted');
});

test(
  'capture: a rerun at the gate copies the range again at a new snapshot while the writer goes on; a new checkpoint and digest, then exact',
  { timeout: 180_000 },
  async () => {
    const writer = await startWriter(appUrl(), 'public.payments', { perSecond: 100, firstNewId: ROWS + 1, maxId: ROWS });
    try {
      const doc = spec('captured-rerun', 'payments');
      const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
      const first = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
      assert.equal(first.phase, 'awaiting_approval', first.detail);
      // A range copied again while the stream goes on: it is read at a new snapshot, the stream
      // applied exactly to that point first.
      await h.executeUpdate(rerunUpdate, { args: [{ ranges: [0, 7] }] });
      const deadline = Date.now() + 60_000;
      let again: Progress = first;
      while (Date.now() < deadline) {
        again = await h.query(progressQuery);
        if (again.phase === 'awaiting_approval' && again.digest !== first.digest) break;
        assert.ok(again.phase !== 'needs_attention' && again.phase !== 'failed', again.detail);
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.notEqual(again.digest, first.digest, 'a new digest after the rerun');
      assert.ok(again.capture!.epochs >= first.capture!.epochs + 2, 'a new epoch for the rerun and a new checkpoint');
      assert.notEqual(again.capture!.checkpoint, first.capture!.checkpoint);
      const copied = await stack.pg.query(
        'tgt',
        `SELECT range_index, copy_point::text AS p FROM backfill.ranges WHERE migration = 'captured-rerun' AND range_index IN (0, 1, 7) ORDER BY range_index`,
      );
      const at = Object.fromEntries(copied.rows.map((r) => [r.range_index, r.p]));
      assert.notEqual(at[0], at[1], 'range 0 was copied at a later point than range 1');
      assert.equal(at[0], at[7]);
      await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: again.digest! }] });
      assert.equal((await h.result()).phase, 'completed');
    } finally {
      await writer.stop();
    }
    const [s, t] = await Promise.all([tableFingerprint(stack.pg.url('src'), 'public.payments'), tableFingerprint(stack.pg.url('tgt'), 'public.payments')]);
    assert.deepEqual(t, s);
  },
);

test('capture: a TRUNCATE on the source stops the migration with a sentence that names the table, and the slot is dropped', { timeout: 120_000 }, async () => {
  const doc = spec('captured-truncated', 'refunds');
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
  const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(p.phase, 'awaiting_approval', p.detail);
  await stack.pg.query('src', 'TRUNCATE public.refunds');
  const err = await h.result().then(
    () => assert.fail('the migration must not complete'),
    (e: Error) => e,
  );
  const why = String((err as { cause?: { message?: string } }).cause?.message ?? err.message);
  assert.match(why, /TRUNCATE/);
  assert.match(why, /public\.refunds/);
  assert.doesNotMatch(why, /postgres(ql)?:\/\/|\n\s+at /, 'no connection string, no stack trace');
  assert.equal((await leftOnSource(doc.name)).slots, 0, 'the failed migration left no slot');
});

test('capture: waiting in needs_attention, the migration says how much WAL its slot retains; abort drops the slot', { timeout: 120_000 }, async () => {
  const doc = spec('captured-refused', 'checked');
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
  const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(p.phase, 'needs_attention');
  assert.match(
    p.detail ?? '',
    /replication slot backfill_captured_refused_[0-9a-f]{8} retains [\d.]+ MB of WAL on the source while this waits \(backfill abort drops it\)/,
  );
  await h.signal(abortSignal, { reason: 'the target refuses the rows' });
  assert.equal((await endingOf(h)).phase, 'aborted');
  assert.equal((await leftOnSource(doc.name)).slots, 0);
});

test(
  'capture: snapshot epochs that keep ending before a range is copied fail the migration with its reason (SnapshotLost), not a workflow task retried forever',
  { timeout: 90_000 },
  async () => {
    const doc = spec('captured-snapshot-lost', 'epochs_lost');
    await stack.pg.query('src', WRITER_TABLE('public.epochs_lost'));
    await stack.pg.query('src', FILL_WRITER_TABLE('public.epochs_lost', 4_000));
    await stack.pg.query('tgt', WRITER_TABLE('public.epochs_lost'));
    // Every epoch's exported snapshot, as its holder records it in the ledger, one no session can
    // import: each range reads "invalid snapshot identifier" (SnapshotGone), its epoch ends, and the
    // next one fares the same. (Only this migration's epochs.)
    const ledger = new pgClient.Client({ connectionString: stack.pg.url('tgt') });
    await ledger.connect();
    try {
      await ensureSchema(ledger, LEDGER_DDL);
      await ledger.query(
        `CREATE OR REPLACE FUNCTION public.unimportable_snapshot() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.snapshot := 'not-a-snapshot'; RETURN NEW; END $$`,
      );
      await ledger.query(
        `CREATE TRIGGER unimportable_snapshot BEFORE INSERT OR UPDATE ON backfill.capture_epochs FOR EACH ROW WHEN (NEW.migration = '${doc.name}') EXECUTE FUNCTION public.unimportable_snapshot()`,
      );
    } finally {
      await ledger.end();
    }
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
    try {
      // Five fruitless epochs take seconds; a workflow task that fails is retried forever (it never closes).
      let timer: NodeJS.Timeout | undefined;
      const running = new Promise<'running'>((r) => (timer = setTimeout(() => r('running'), 25_000)));
      const closed = await Promise.race([
        h.result().then(
          () => 'completed',
          (e: unknown) => e,
        ),
        running,
      ]).finally(() => clearTimeout(timer));
      assert.ok(closed instanceof WorkflowFailedError, `the migration ends as a failure, not ${String(closed)}`);
      assert.equal((await h.describe()).status.name, 'FAILED');
      assert.ok(isFailure(closed.cause, 'SnapshotLost'), `SnapshotLost, not ${failureTypeOf(closed.cause)}: ${closed.cause?.message}`);
      assert.match(closed.cause!.message, /^5 snapshot epochs in a row ended before a range was copied/);
      assert.equal(closed.cause!.stack, '', 'no stack trace');
      const p = await h.query(progressQuery);
      assert.equal(p.phase, 'failed');
      assert.match(p.detail ?? '', /snapshot epochs in a row ended before a range was copied/);
      assert.equal((await leftOnSource(doc.name)).slots, 0, 'the failed migration left no slot');
    } finally {
      if ((await h.describe()).status.name === 'RUNNING') await h.terminate('the test is over');
      await stack.pg.query('tgt', 'DROP TRIGGER unimportable_snapshot ON backfill.capture_epochs');
    }
  },
);

test(
  "capture: an approval while the gate's stream call is held on the target stops that call; the final window applies what it held, and the target equals the source",
  { timeout: 240_000 },
  async () => {
    /** A key the writer never reaches: the source's row for it is what the stream call is held on. */
    const KEY = 10_000_001;
    const writer = await startWriter(appUrl(), 'public.held', { perSecond: 50, firstNewId: ROWS + 1, maxId: ROWS });
    const doc = spec('captured-held', 'held');
    const freezes = async () =>
      Number((await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM backfill.audit WHERE migration = $1 AND action = 'freeze'`, [doc.name])).rows[0].n);
    let gate: Awaited<ReturnType<typeof rowGate>> | undefined;
    try {
      const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
      const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
      assert.equal(p.phase, 'awaiting_approval', p.detail);
      // The target's row for KEY taken first by the test (uncommitted): the stream's insert of it
      // waits there, inside its target transaction, while the gate waits.
      gate = await rowGate(stack.pg, 'tgt', `INSERT INTO public.held (id, balance, status, at) VALUES ($1, 0, 'gate', now())`, [KEY]);
      await stack.pg.query('src', `INSERT INTO public.held (id, balance, status, at) VALUES ($1, 1, 'new', now())`, [KEY]);
      await until('the stream call held on the target', async () => (await gate!.waiting()) > 0);
      assert.equal((await h.query(progressQuery)).phase, 'awaiting_approval');
      assert.equal(await freezes(), 0);
      await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
      // The held call cannot end by itself while the gate holds; the approval stops it, so the final
      // check begins: the freeze, then the final window's call, held at the same row.
      await until('the freeze recorded while the stream call is held', async () => (await freezes()) > 0);
      await until('the final window held at the same row', async () => (await h.query(progressQuery)).phase === 'final_check' && (await gate!.waiting()) > 0);
      assert.equal(
        (await stack.pg.query('tgt', 'SELECT count(*)::int AS n FROM public.held WHERE id = $1', [KEY])).rows[0].n,
        0,
        'nothing of the held transaction committed',
      );
      const history = await h.fetchHistory();
      const cancelled = (history.events ?? []).filter((e) => e.activityTaskCancelRequestedEventAttributes).length;
      assert.ok(cancelled > 0, 'the approval cancelled the stream call in flight');
      await gate.open();
      gate = undefined;
      const r = await h.result();
      assert.equal(r.phase, 'completed', r.reason);
      await replayAndMaybeRecord(h, 'capture-approval-stops-held-stream');
    } finally {
      await gate?.open();
      await writer.stop();
    }
    assert.equal(writer.counts.failed, 0, writer.lastError());
    const [s, t] = await Promise.all([tableFingerprint(stack.pg.url('src'), 'public.held'), tableFingerprint(stack.pg.url('tgt'), 'public.held')]);
    assert.deepEqual(t, s, 'the target equals the source');
    const dup = await stack.pg.query(
      'tgt',
      `SELECT count(*)::int AS n, count(DISTINCT commit_lsn)::int AS d FROM backfill.capture_log WHERE migration = 'captured-held'`,
    );
    assert.equal(dup.rows[0].n, dup.rows[0].d, 'no transaction applied twice');
    assert.deepEqual(await leftOnSource(doc.name), { slots: 0, publications: 0 });
  },
);

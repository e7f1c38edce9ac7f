// Change capture as README's "Change capture" and "Real schemas" say, each claim proven here: a slot
// and a publication you manage are never dropped (on completion, on abort); a live source keeps the
// foreign keys set aside until the final check, then restores them; a snapshot holder killed
// mid-copy continues in a new epoch that copies nothing twice; a slot invalidated by
// max_slot_wal_keep_size fails the migration with a sentence. Real PostgreSQL, real Temporal,
// `backfill worker` processes killed with SIGKILL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkflowFailedError } from '@temporalio/client';
import { backfillMigration } from '../src/workflows/migration';
import { abortSignal, approveCutoverUpdate, pauseSignal, progressQuery, reportQuery, resumeSignal, type Progress } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { failureTypeOf } from '../src/domain/failures';
import { captureOf } from '../src/spec/schema';
import { fingerprint } from './helpers/sample';
import { KILLED_WORKER_HEARTBEAT, parsed, specFor } from './helpers/spec';
import { endingOf, KILLED_WORKER_ENV, waitForPhase, type WorkerProcess } from './helpers/temporal';
import { assertRetried, holdActivity, tableGate, until } from './helpers/fault-points';
import { useStack } from './hooks';

const TASK_QUEUE = 'capture-claims';
const EPOCH_ROWS = 12_000;
// Small ranges, many of them: the pause after the first few lands long before the last is copied.
const EPOCH_CHUNK = 200;
const EPOCH_RANGES = EPOCH_ROWS / EPOCH_CHUNK;

const stack = useStack(
  TASK_QUEUE,
  async (db) => {
    for (const d of ['src', 'tgt'])
      await db.query(
        d,
        `CREATE SCHEMA cap;
         CREATE TABLE cap.parents (id int PRIMARY KEY, name text);
         CREATE TABLE cap.kids (id int PRIMARY KEY, parent_id int NOT NULL, name text);
         CREATE TABLE cap.solo (id int PRIMARY KEY, name text);
         CREATE TABLE cap.epochs (id int PRIMARY KEY, name text);
         CREATE TABLE cap.lost (id int PRIMARY KEY, name text);`,
      );
    await db.query(
      'src',
      `INSERT INTO cap.parents SELECT g, 'p' || g FROM generate_series(1, 200) g;
       INSERT INTO cap.kids SELECT g, 1 + g % 200, 'k' || g FROM generate_series(1, 3000) g;
       INSERT INTO cap.solo SELECT g, 's' || g FROM generate_series(1, 1000) g;
       INSERT INTO cap.epochs SELECT g, 'e' || g FROM generate_series(1, ${EPOCH_ROWS}) g;
       INSERT INTO cap.lost SELECT g, 'l' || g FROM generate_series(1, 2000) g;
       CREATE PUBLICATION family_pub FOR TABLE cap.parents, cap.kids;
       CREATE PUBLICATION solo_pub FOR TABLE cap.solo;`,
    );
    // A slot the operator made before the migration, for it to use.
    await db.query('src', `SELECT pg_create_logical_replication_slot('family_slot', 'pgoutput')`);
    await db.query('tgt', 'ALTER TABLE cap.kids ADD CONSTRAINT kids_parent_fk FOREIGN KEY (parent_id) REFERENCES cap.parents');
  },
  { worker: 'none', env: KILLED_WORKER_ENV },
);

let worker: WorkerProcess | undefined;
async function liveWorker(): Promise<WorkerProcess> {
  if (!worker?.alive()) worker = await stack.spawnWorker();
  return worker;
}

const start = (doc: { name: string }) => stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });

const exists = async (what: 'slot' | 'publication', name: string) =>
  (
    await stack.pg.query(
      'src',
      what === 'slot'
        ? 'SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = $1'
        : 'SELECT count(*)::int AS n FROM pg_publication WHERE pubname = $1',
      [name],
    )
  ).rows[0].n === 1;

/** The migration's temporary slots (its epochs' and checkpoints') still on the source. */
const epochSlots = async (slot: string) =>
  (
    await stack.pg.query('src', `SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name LIKE $1 AND slot_name <> $2`, [
      `${slot.slice(0, 40)}%`,
      slot,
    ])
  ).rows[0].n;

const kidsKey = async () =>
  (
    await stack.pg.query('tgt', `SELECT convalidated AS valid FROM pg_constraint WHERE conname = 'kids_parent_fk' AND conrelid = 'cap.kids'::regclass`)
  ).rows.map((r) => r.valid === true);

test(
  'capture with a slot and a publication you manage: the foreign keys stay set aside while it catches up and at the gate, are restored and validated in the final check; the slot and the publication are still there after the switch',
  { timeout: 180_000 },
  async () => {
    await liveWorker();
    const doc = specFor(
      'family',
      [
        { source: 'cap.parents', target: 'cap.parents' },
        { source: 'cap.kids', target: 'cap.kids', chunk: { column: 'id', size: 1000 } },
      ],
      {
        taskQueue: TASK_QUEUE,
        capture: { method: 'logical', slot: 'family_slot', publication: 'family_pub' },
        catchUp: { maxLag: '3 seconds' },
        cutover: { approval: 'required' },
      },
    );
    const h = await start(doc);
    const gate = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
    assert.equal(gate.phase, 'awaiting_approval', gate.detail);
    // A live source: the key is still set aside at the gate (catch-up still writes), and that is green.
    assert.deepEqual(await kidsKey(), [], 'the key is set aside at the gate');
    const aside = await stack.pg.query('tgt', `SELECT state FROM backfill.constraints WHERE migration = 'family' AND name = 'kids_parent_fk'`);
    assert.equal(aside.rows[0]?.state, 'set-aside');
    const report: Report = await h.query(reportQuery);
    assert.equal(report.verdict, 'green');
    assert.deepEqual(
      report.constraints?.map((c) => [c.name, c.state]),
      [['kids_parent_fk', 'set-aside']],
    );
    // A source transaction while the key is aside: a new parent and its kid, applied by the stream.
    await stack.pg.query('src', `INSERT INTO cap.parents VALUES (201, 'p201'); INSERT INTO cap.kids VALUES (3001, 201, 'k3001')`);
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: gate.digest! }] });
    const r = await endingOf(h);
    assert.equal(r.phase, 'completed', r.reason);
    for (const t of ['cap.parents', 'cap.kids']) assert.deepEqual(await fingerprint(stack.pg, 'tgt', t), await fingerprint(stack.pg, 'src', t), t);
    assert.deepEqual(await kidsKey(), [true], 'restored and validated by the final check');
    const restored = await stack.pg.query('tgt', `SELECT state, detail FROM backfill.constraints WHERE migration = 'family' AND name = 'kids_parent_fk'`);
    assert.deepEqual(restored.rows[0], { state: 'restored', detail: null });
    // Yours: used as they are, never dropped; the migration's own temporary slots are gone.
    assert.ok(await exists('slot', 'family_slot'), 'the slot you manage is still there');
    assert.ok(await exists('publication', 'family_pub'), 'the publication you manage is still there');
    assert.equal(await epochSlots('family_slot'), 0);
    await until(
      'the slot free',
      async () => (await stack.pg.query('src', `SELECT active FROM pg_replication_slots WHERE slot_name = 'family_slot'`)).rows[0].active === false,
    );
    await stack.pg.query('src', `SELECT pg_drop_replication_slot('family_slot')`);
  },
);

test('capture with a slot and a publication you manage, aborted: neither is dropped', { timeout: 120_000 }, async () => {
  await liveWorker();
  // The slot is named but not there yet: the migration creates it (at its first snapshot), and it is still yours.
  const doc = specFor(
    'solo',
    { source: 'cap.solo', target: 'cap.solo' },
    { taskQueue: TASK_QUEUE, capture: { method: 'logical', slot: 'solo_slot', publication: 'solo_pub' }, cutover: { approval: 'required' } },
  );
  const h = await start(doc);
  const gate = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(gate.phase, 'awaiting_approval', gate.detail);
  assert.ok(await exists('slot', 'solo_slot'));
  await h.signal(abortSignal, { reason: 'not today' });
  assert.equal((await endingOf(h)).phase, 'aborted');
  assert.ok(await exists('slot', 'solo_slot'), 'the slot you manage is still there');
  assert.ok(await exists('publication', 'solo_pub'), 'the publication you manage is still there');
  assert.equal(await epochSlots('solo_slot'), 0);
  await until(
    'the slot free',
    async () => (await stack.pg.query('src', `SELECT active FROM pg_replication_slots WHERE slot_name = 'solo_slot'`)).rows[0].active === false,
  );
  await stack.pg.query('src', `SELECT pg_drop_replication_slot('solo_slot')`);
});

test(
  'capture: the worker (and the snapshot holder with it) killed while a range copies; a new epoch copies the rest, and nothing copied is copied again',
  { timeout: 180_000 },
  async () => {
    const w = await liveWorker();
    const doc = specFor(
      'epochs',
      { source: 'cap.epochs', target: 'cap.epochs', chunk: { column: 'id', size: EPOCH_CHUNK } },
      {
        taskQueue: TASK_QUEUE,
        concurrency: 2,
        capture: 'logical',
        catchUp: { maxLag: '3 seconds' },
        cutover: { approval: 'required' },
        retries: { heartbeat: KILLED_WORKER_HEARTBEAT },
      },
    );
    const h = await start(doc);
    const verified = async () => (await h.query(progressQuery)).tables[0]?.ranges.verified ?? 0;
    // A few ranges copied at the first epoch's snapshot; then nothing in flight, and the gate closed.
    await until('a few ranges', async () => (await verified()) >= 3);
    await h.signal(pauseSignal);
    await until('nothing in flight', async () => (await h.query(progressQuery)).tables[0].ranges.inFlight === 0);
    const gate = await tableGate(stack.pg, 'tgt', 'cap.epochs');
    try {
      await h.signal(resumeSignal);
      // The kill lands while a copy waits at the gate, mid-statement, in its target transaction.
      await holdActivity(h, gate, 'copyRange');
      const before = await stack.pg.query(
        'tgt',
        `SELECT range_index, copied_at::text AS at, copy_point::text AS point FROM backfill.ranges WHERE migration = 'epochs' AND status = 'verified' ORDER BY 1`,
      );
      assert.ok(before.rows.length >= 3 && before.rows.length < EPOCH_RANGES, `ranges left for a second epoch: ${before.rows.length}`);
      await w.kill();
      await liveWorker();
      await gate.open();
      const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
      assert.equal(p.phase, 'awaiting_approval', p.detail);
      // The copy the kill interrupted ran again (and found its snapshot gone, so a new epoch took its range).
      await assertRetried(h, ['copyRange']);
      const epochs = await stack.pg.query('tgt', `SELECT epoch, point::text AS point FROM backfill.capture_epochs WHERE migration = 'epochs' ORDER BY epoch`);
      const first = epochs.rows[0].point as string;
      const after = await stack.pg.query(
        'tgt',
        `SELECT range_index, attempts, status, copied_at::text AS at, copy_point::text AS point FROM backfill.ranges WHERE migration = 'epochs' ORDER BY 1`,
      );
      assert.equal(after.rows.length, EPOCH_RANGES);
      assert.ok(
        after.rows.every((r) => r.status === 'verified' && r.attempts === 1),
        JSON.stringify(after.rows),
      );
      // What was copied before the kill was not copied again: same copy, same point (the first epoch's).
      const byIndex = new Map(after.rows.map((r) => [r.range_index as number, r]));
      for (const b of before.rows) {
        const a = byIndex.get(b.range_index as number)!;
        assert.deepEqual([a.at, a.point], [b.at, b.point], `range ${b.range_index} untouched`);
        assert.equal(b.point, first);
      }
      // The rest was copied at a later epoch's point.
      const later = after.rows.filter((r) => !before.rows.some((b) => b.range_index === r.range_index));
      assert.ok(later.length > 0);
      assert.ok(
        later.every((r) => r.point !== first && epochs.rows.some((e, i) => i > 0 && e.point === r.point)),
        JSON.stringify({ later, epochs: epochs.rows }),
      );
      const progress: Progress = await h.query(progressQuery);
      assert.equal(progress.tables[0].rowsRecopied, 0, 'no row copied again');
      assert.equal(progress.tables[0].rowsCopied, EPOCH_ROWS, 'every row copied once');
      assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'cap.epochs'), await fingerprint(stack.pg, 'src', 'cap.epochs'));
    } finally {
      await gate.open().catch(() => undefined);
      await h.signal(abortSignal, { reason: 'the test is done' }).catch(() => undefined);
    }
    assert.equal((await endingOf(h)).phase, 'aborted');
  },
);

test(
  'capture: a slot invalidated by max_slot_wal_keep_size while the stream is held fails the migration with a sentence, rather than lose changes',
  { timeout: 180_000 },
  async () => {
    await liveWorker();
    const doc = specFor('lost', { source: 'cap.lost', target: 'cap.lost' }, { taskQueue: TASK_QUEUE, capture: 'logical', cutover: { approval: 'required' } });
    const slot = captureOf(parsed(doc))!.slot;
    const h = await start(doc);
    try {
      const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
      assert.equal(p.phase, 'awaiting_approval', p.detail);
      // The stream holds a source transaction it cannot apply: the target table is gated.
      const gate = await tableGate(stack.pg, 'tgt', 'cap.lost');
      try {
        await stack.pg.query('src', `UPDATE cap.lost SET name = 'changed' WHERE id = 1`);
        await holdActivity(h, gate, 'applyCapture');
        // The slot may keep 1 MB of WAL; WAL moves on by segments, and a checkpoint invalidates it.
        await stack.pg.query('postgres', `ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`);
        await stack.pg.query('postgres', 'SELECT pg_reload_conf()');
        await stack.pg.query('postgres', 'CREATE TABLE IF NOT EXISTS wal_filler (id serial, v text)');
        await until('the slot lost', async () => {
          await stack.pg.query(
            'postgres',
            `INSERT INTO wal_filler (v) SELECT repeat('x', 1000) FROM generate_series(1, 1000); SELECT pg_switch_wal(); CHECKPOINT`,
          );
          const s = await stack.pg.query('src', 'SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1', [slot]);
          return s.rows[0]?.wal_status === 'lost';
        });
      } finally {
        await gate.open();
      }
      // It ends, rather than wait in sight for a stream that can never resume (what it did before).
      await until(
        'the migration ended, or waiting in sight',
        async () => (await h.describe()).status.name !== 'RUNNING' || !!(await h.query(progressQuery)).waiting?.length,
      );
      assert.equal((await h.describe()).status.name, 'FAILED', JSON.stringify((await h.query(progressQuery)).waiting));
      const ended = await h.result().then(
        (r) => r,
        (e: unknown) => e,
      );
      assert.ok(ended instanceof WorkflowFailedError, `the migration fails, not ${JSON.stringify(ended)}`);
      assert.equal(failureTypeOf(ended.cause), 'SlotLost');
      assert.match(ended.cause!.message, new RegExp(`the replication slot ${slot} has lost WAL it needed \\(max_slot_wal_keep_size\\)`));
      assert.equal((await h.query(progressQuery)).phase, 'failed');
      assert.equal(await exists('slot', slot), false, 'the lost slot is dropped');
    } finally {
      await stack.pg.query('postgres', 'ALTER SYSTEM RESET max_slot_wal_keep_size');
      await stack.pg.query('postgres', 'SELECT pg_reload_conf()');
      if ((await h.describe()).status.name === 'RUNNING') await h.terminate('the test is over');
    }
  },
);

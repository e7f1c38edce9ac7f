// Change capture under faults injected for real, with a writer running throughout, each fault held
// where its name says (test/helpers/fault-points.ts) and proven there from the history:
// - mid-copy: a gate on the ledger's ranges stops a range's copy with its rows written, before its
//   record commits in the same target transaction; the worker killed with SIGKILL (the epoch's
//   snapshot holder dies with it): copyRange ran again, a second epoch finished the copy;
// - at the checkpoint: the same gate, stepped through the second epoch's copies, stops the
//   checkpoint's comparison (sweepTable); killed: sweepTable ran again, at a new snapshot;
// - mid-apply of a large source transaction, at the gate: the stream's apply stopped inside its
//   target transaction, half of its 10,000 rows written (a key the test inserts first, uncommitted);
//   killed: applyCapture ran again, and the log has that transaction once, whole;
// - the target's PostgreSQL restarted while the stream applies (held the same way): applyCapture
//   ran again and the worker lived on;
// - the final window: a gate on the source table stops the window's comparison (compareWindow) on
//   the frozen source; killed: compareWindow ran again, the migration completed and switched once.
// The writer wrote all along, and was refused only by the freeze. At the end the target equals the
// source exactly, no source transaction was applied twice, and no slot is left.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backfillMigration } from '../src/workflows/migration';
import { approveCutoverUpdate, progressQuery, type Progress } from '../src/workflows/messages';
import { useStack } from './hooks';
import { capturedSpecFor, KILLED_WORKER_HEARTBEAT } from './helpers/spec';
import { KILLED_WORKER_ENV } from './helpers/temporal';
import {
  assertRetried,
  holdActivity,
  loggedOn,
  progressUntil,
  retriedActivities,
  rowGate,
  tableGate,
  transactionOn,
  until,
  untilRetried,
} from './helpers/fault-points';
import { startWriter, tableFingerprint, type WriterCounts } from '../src/infra/writer';
import { FILL_WRITER_TABLE, WRITER_TABLE } from '../src/db/demo';

const TASK_QUEUE = 'capture-faults';
const MIGRATION = 'captured-faults';
const ROWS = 60_000;
/** The large source transaction: 10,000 new rows, at keys the writer never reaches. */
const BIG = { first: 1_000_001, rows: 10_000 };
/** The apply of the large transaction is held at this key, half of it written. */
const HELD_KEY = BIG.first + BIG.rows / 2;
/** One more row, whose apply the target's restart interrupts. */
const LATE_KEY = BIG.first + BIG.rows;

const stack = useStack(
  TASK_QUEUE,
  async (_db, s) => {
    await s.src.query('src', `CREATE ROLE app LOGIN PASSWORD 'app'`);
    await s.src.query('src', WRITER_TABLE('public.accounts'));
    await s.src.query('src', FILL_WRITER_TABLE('public.accounts', ROWS));
    await s.src.query('src', 'GRANT SELECT, INSERT, UPDATE, DELETE ON public.accounts TO app');
    await s.tgt.query('tgt', WRITER_TABLE('public.accounts'));
  },
  // The target on a server of its own, so it can be restarted alone.
  { worker: 'none', serverPerAlias: true, env: { BACKFILL_STALL_TIMEOUT: '5', ...KILLED_WORKER_ENV } },
);

const worker = () => stack.spawnWorker();

const sourceTransaction = (sql: string) => transactionOn(stack.servers.src, 'src', sql);
const logged = (xid: string) => loggedOn(stack.servers.tgt, 'tgt', MIGRATION, xid);

const done = (p: Progress) => p.tables.reduce((a, t) => a + t.ranges.verified + t.ranges.failed, 0);

/** The product's insert of `key` waits for the test's own, uncommitted, on the target. */
const keyGate = (key: number) =>
  rowGate(stack.servers.tgt, 'tgt', `INSERT INTO public.accounts (id, balance, status, at) VALUES ($1, 0, 'gate', now())`, [key]);

const count = async (server: 'src' | 'tgt', sql: string, values: unknown[] = []) => Number((await stack.servers[server].query(server, sql, values)).rows[0].n);

test(
  'capture under faults, each held where it lands: kill -9 mid-copy, at the checkpoint, mid-apply at the gate and in the final window, a target restart mid-apply; exact at the end, nothing applied twice',
  { timeout: 420_000 },
  async () => {
    const appUrl = stack.servers.src.url('src').replace(/\/\/postgres:[^@]*@/, '//app:app@');
    const writer = await startWriter(appUrl, 'public.accounts', { perSecond: 100, firstNewId: ROWS + 1, maxId: ROWS });
    let wrote: WriterCounts;
    let beforeApproval: { total: number; refused: number };
    let wroteAtFirstKill: number;
    let bigXid: string;
    let lateXid: string;
    try {
      let w = await worker();
      const doc = {
        ...capturedSpecFor(MIGRATION, 'public.accounts', { taskQueue: TASK_QUEUE, chunk: 4_000 }),
        retries: { heartbeat: KILLED_WORKER_HEARTBEAT },
      };
      const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });

      // 1. Mid-copy: a few ranges recorded (the ledger exists), then its ranges table gated: the next
      // copies wait to record their range, rows written, in their target transaction. Killed there.
      await progressUntil(h, 'a few ranges copied', (p) => done(p) >= 4);
      const ledger = await tableGate(stack.servers.tgt, 'tgt', 'backfill.ranges');
      await holdActivity(h, ledger, 'copyRange');
      const atCopy = await h.query(progressQuery);
      assert.ok(done(atCopy) < atCopy.tables[0].ranges.total, 'ranges are left for a second epoch');
      wroteAtFirstKill = writer.total();
      await w.kill();
      w = await worker();

      // 2. The checkpoint: the gate stays, stepped through the second epoch's copies (and the
      // killed worker's leftovers) until the checkpoint's comparison waits at it. Killed there.
      await holdActivity(h, ledger, 'sweepTable', 240_000);
      const atCheckpoint = await h.query(progressQuery);
      assert.equal(atCheckpoint.phase, 'catching_up', atCheckpoint.detail);
      assert.equal(atCheckpoint.tables[0].ranges.verified, atCheckpoint.tables[0].ranges.total, 'the copy finished before the checkpoint');
      // The kill ended the first epoch; a second finished the copy; the checkpoint took a third.
      assert.ok((atCheckpoint.capture?.epochs ?? 0) >= 3, `a second snapshot epoch copied the rest (${JSON.stringify(atCheckpoint.capture)})`);
      await assertRetried(h, ['copyRange']);
      const beforeCheckpointKill = await retriedActivities(h);
      await w.kill();
      await ledger.open();
      w = await worker();
      const gate = await progressUntil(h, 'the gate', (p) => ['awaiting_approval', 'needs_attention', 'failed'].includes(p.phase));
      assert.equal(gate.phase, 'awaiting_approval', gate.detail);
      await assertRetried(h, ['sweepTable'], { since: beforeCheckpointKill });
      assert.ok((gate.capture?.epochs ?? 0) > (atCheckpoint.capture?.epochs ?? 0), 'the checkpoint ran again at a new snapshot');

      // 3. Mid-apply of a large source transaction, at the gate: its apply held at a key half-way
      // through, inside its target transaction (nothing of it committed). Killed there.
      const half = await keyGate(HELD_KEY);
      bigXid = await sourceTransaction(
        `INSERT INTO public.accounts SELECT g, g * 1.25, 'new', NULL, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
           FROM generate_series(${BIG.first}, ${BIG.first + BIG.rows - 1}) g`,
      );
      await holdActivity(h, half, 'applyCapture');
      assert.equal((await h.query(progressQuery)).phase, 'awaiting_approval', 'the stream is held while the gate waits');
      assert.equal(await count('tgt', 'SELECT count(*)::int AS n FROM public.accounts WHERE id >= $1', [BIG.first]), 0, 'nothing of it committed yet');
      const beforeApplyKill = await retriedActivities(h);
      await w.kill();
      await half.open();
      w = await worker();
      await untilRetried(h, 'applyCapture', beforeApplyKill);
      assert.deepEqual(await logged(bigXid), { times: 1, rows: BIG.rows }, 'the large transaction applied once, whole');

      // 4. The target's PostgreSQL restarted while the stream applies a transaction (held the same way).
      const late = await keyGate(LATE_KEY);
      lateXid = await sourceTransaction(`INSERT INTO public.accounts VALUES (${LATE_KEY}, 1, 'new', NULL, now())`);
      await holdActivity(h, late, 'applyCapture');
      const beforeRestart = await retriedActivities(h);
      await stack.servers.tgt.restart();
      await late.open();
      await untilRetried(h, 'applyCapture', beforeRestart);
      assert.deepEqual(await logged(lateXid), { times: 1, rows: 1 }, 'the interrupted transaction applied once');
      assert.ok(w.alive(), 'the worker lived through the restart');

      // 5. The final window: the source table gated before the approval; once the freeze is
      // recorded, the gate steps (its own transaction then began after the freeze, so the final
      // check does not wait for it as for a writer) until the window's comparison waits at it.
      const presented = await progressUntil(h, 'the gate, still', (p) => p.phase === 'awaiting_approval');
      assert.equal(writer.counts.failed, 0, `the writer met no error: ${writer.lastError()}`);
      beforeApproval = { total: writer.total(), refused: writer.counts.refused };
      const source = await tableGate(stack.servers.src, 'src', 'public.accounts');
      await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: presented.digest! }] });
      await until(
        'the freeze recorded',
        async () => (await count('tgt', `SELECT count(*)::int AS n FROM backfill.audit WHERE migration = $1 AND action = 'freeze'`, [MIGRATION])) > 0,
      );
      await source.step();
      await holdActivity(h, source, 'compareWindow');
      assert.equal((await h.query(progressQuery)).phase, 'final_check');
      const beforeWindowKill = await retriedActivities(h);
      await w.kill();
      await source.open();
      await worker();
      const r = await h.result();
      assert.equal(r.phase, 'completed', r.reason);
      await assertRetried(h, ['compareWindow'], { since: beforeWindowKill });
    } finally {
      wrote = await writer.stop();
    }
    const switched = (table: string) =>
      count('tgt', `SELECT count(*)::int AS n FROM backfill.${table} WHERE migration = $1${table === 'audit' ? ` AND action = 'switch'` : ''}`, [MIGRATION]);
    assert.equal(await switched('switches'), 1, 'switched once');
    assert.equal(await switched('audit'), 1, 'one switch in the audit');

    // The writer wrote through every fault, and was refused only after the approval: by the freeze
    // (42501, its rights revoked); any other error fails the test.
    assert.ok(
      wroteAtFirstKill > 0 && beforeApproval.total > wroteAtFirstKill,
      `the writer wrote throughout (${wroteAtFirstKill}, then ${beforeApproval.total})`,
    );
    assert.equal(beforeApproval.refused, 0, 'nothing refused before the freeze');
    assert.ok(wrote.refused > 0, 'the freeze refused the writer');
    assert.equal(wrote.failed, 0, `the writer met no other error: ${writer.lastError()}`);

    const [s, t] = await Promise.all([
      tableFingerprint(stack.servers.src.url('src'), 'public.accounts'),
      tableFingerprint(stack.servers.tgt.url('tgt'), 'public.accounts'),
    ]);
    assert.deepEqual(t, s, 'the target equals the source');
    assert.deepEqual(
      [await logged(bigXid), await logged(lateXid)],
      [
        { times: 1, rows: BIG.rows },
        { times: 1, rows: 1 },
      ],
    );
    const log = await stack.servers.tgt.query(
      'tgt',
      `SELECT count(*)::int AS n, count(DISTINCT commit_lsn)::int AS d FROM backfill.capture_log WHERE migration = $1`,
      [MIGRATION],
    );
    assert.ok(log.rows[0].n > 0);
    assert.equal(log.rows[0].n, log.rows[0].d, 'no source transaction applied twice');
    assert.equal(await count('src', 'SELECT count(*)::int AS n FROM pg_replication_slots'), 0, 'no slot left on the source');
  },
);

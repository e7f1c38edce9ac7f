// Change capture under faults injected for real, with a writer running throughout: the worker
// killed with SIGKILL while ranges copy at the snapshot (its holder dies with it: a second epoch
// finishes the copy), while the stream applies a large source transaction, at a checkpoint and in
// the final window; the target's PostgreSQL restarted while applying. After each, the migration
// goes on by itself; at the end the target equals the source exactly and no source transaction
// was applied twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WorkflowHandle } from '@temporalio/client';
import { backfillMigration } from '../src/workflows/migration';
import { approveCutoverUpdate, pauseSignal, progressQuery, resumeSignal, type Progress } from '../src/workflows/messages';
import { useStack } from './hooks';
import { capturedSpecFor } from './helpers/spec';
import { startWriter, tableFingerprint } from '../src/infra/writer';
import { FILL_WRITER_TABLE, WRITER_TABLE } from '../src/db/demo';

const TASK_QUEUE = 'capture-faults';
const ROWS = 120_000;

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
  { worker: 'none', serverPerAlias: true, env: { BACKFILL_STALL_TIMEOUT: '5' } },
);

const worker = () => stack.spawnWorker();

/** Polls the progress until `ok`; a query fails while no live worker has the workflow: poll on. */
async function until(h: WorkflowHandle, what: string, ok: (p: Progress) => boolean, ms = 150_000): Promise<Progress> {
  const end = Date.now() + ms;
  let last: Progress | undefined;
  while (Date.now() < end) {
    try {
      last = await h.query(progressQuery);
      if (ok(last)) return last;
    } catch {
      // no worker yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

const done = (p: Progress) => p.tables.reduce((a, t) => a + t.ranges.verified + t.ranges.failed, 0);

test(
  'capture under kill -9 and a target restart: a second epoch, the stream resumed, exact at the end, nothing applied twice',
  { timeout: 420_000 },
  async () => {
    const appUrl = stack.servers.src.url('src').replace(/\/\/postgres:[^@]*@/, '//app:app@');
    const writer = await startWriter(appUrl, 'public.accounts', { perSecond: 100, firstNewId: ROWS + 1, maxId: ROWS });
    try {
      let w = await worker();
      const doc = capturedSpecFor('captured-faults', 'public.accounts', { taskQueue: TASK_QUEUE, chunk: 4_000 });
      const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });

      // 1. Mid-copy: a few ranges done, the window paused until nothing is in flight, then resumed and
      // the worker killed at once (its new ranges in flight, the snapshot's holder with it).
      await until(h, 'a few ranges copied', (p) => done(p) >= 4);
      await h.signal(pauseSignal);
      const paused = await until(h, 'nothing in flight', (p) => p.tables[0].ranges.inFlight === 0);
      assert.ok(done(paused) < paused.tables[0].ranges.total, 'ranges are left for a second epoch');
      await h.signal(resumeSignal);
      await until(h, 'ranges in flight again', (p) => p.tables[0].ranges.inFlight > 0);
      await w.kill();
      w = await worker();
      const copied = await until(h, 'the copy finished in a new epoch', (p) => p.phase === 'catching_up' || p.phase === 'awaiting_approval');
      assert.ok((copied.capture?.epochs ?? 0) >= 2, `a second snapshot epoch (${JSON.stringify(copied.capture)})`);

      // 2. Mid-apply: one source transaction of 20,000 rows, the worker killed while it is applied.
      await stack.servers.src.query('src', 'UPDATE public.accounts SET balance = balance + 0.01 WHERE id <= 20000');
      await new Promise((r) => setTimeout(r, 300));
      await w.kill();
      w = await worker();
      await until(h, 'the stream applied again', (p) => (p.capture?.transactions ?? 0) > (copied.capture?.transactions ?? 0) + 1);

      // 3. The target restarted while the stream applies.
      await stack.servers.tgt.restart();
      const resumed = await until(h, 'the stream past the restart', (p) => p.phase === 'awaiting_approval' || (p.detail ?? '').startsWith('checkpoint'));

      // 4. At a checkpoint (if one is running now), or at the gate: killed again.
      void resumed;
      await w.kill();
      w = await worker();
      const gate = await until(h, 'the gate', (p) => p.phase === 'awaiting_approval' || p.phase === 'needs_attention' || p.phase === 'failed');
      assert.equal(gate.phase, 'awaiting_approval', gate.detail);

      // 5. In the final window: approved, then killed while it runs.
      await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: gate.digest! }] });
      await until(h, 'the final check', (p) => p.phase === 'final_check' || p.phase === 'completed', 60_000);
      await w.kill();
      await worker();
      const r = await h.result();
      assert.equal(r.phase, 'completed', r.reason);
    } finally {
      await writer.stop();
    }
    const [s, t] = await Promise.all([
      tableFingerprint(stack.servers.src.url('src'), 'public.accounts'),
      tableFingerprint(stack.servers.tgt.url('tgt'), 'public.accounts'),
    ]);
    assert.deepEqual(t, s, 'the target equals the source');
    const log = await stack.servers.tgt.query(
      'tgt',
      `SELECT count(*)::int AS n, count(DISTINCT commit_lsn)::int AS d FROM backfill.capture_log WHERE migration = 'captured-faults'`,
    );
    assert.ok(log.rows[0].n > 0);
    assert.equal(log.rows[0].n, log.rows[0].d, 'no source transaction applied twice');
    const slots = await stack.servers.src.query('src', 'SELECT count(*)::int AS n FROM pg_replication_slots');
    assert.equal(slots.rows[0].n, 0, 'no slot left on the source');
  },
);

// A live migration that waits at the gate for a long time: catch-up rounds keep adding events, so
// the gate continues as new whenever the server suggests it. The new run must present the same
// digest (the person approving read the old one), keep catching up, and switch once approved.
// The server here suggests continue-as-new after 200 events instead of 4,096, so it happens quickly.
// The same for the way back (cutover.reverse): phase switched continues as new, and the stream back
// goes on from where the run before left it, its counts carried.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { approveCutoverUpdate, progressQuery, type MigrationResult, type Progress } from '../src/workflows/messages';
import { fingerprint } from './helpers/sample';
import { replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';
import { backfillMigration } from '../src/workflows/migration';
import { finishUpdate } from '../src/workflows/messages';
import { capturedSpecFor } from './helpers/spec';
import { tableFingerprint } from '../src/infra/writer';
import { until } from './helpers/fault-points';
import { FILL_WRITER_TABLE, WRITER_TABLE } from '../src/db/demo';

const TASK_QUEUE = 'gate-history';
const SUGGEST_AFTER = 200;

const stack = useStack(
  TASK_QUEUE,
  async (db) => {
    const table = '(id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, updated_at timestamptz NOT NULL)';
    await db.query('src', `CREATE TABLE public.accounts ${table}`);
    await db.query('src', `INSERT INTO public.accounts SELECT g, g / 10.0, now() - interval '1 day' FROM generate_series(1, 20000) g`);
    await db.query('tgt', `CREATE TABLE public.accounts ${table}`);
    await db.query('tgt', 'CREATE TABLE public.cutover_log (migration text, at timestamptz DEFAULT now())');
    await db.query('src', `CREATE ROLE app LOGIN PASSWORD 'app'`);
    for (const d of ['src', 'tgt'] as const) await db.query(d, WRITER_TABLE('public.followed'));
    await db.query('src', FILL_WRITER_TABLE('public.followed', 5_000));
  },
  { serverArgs: ['--dynamic-config-value', `limit.historyCount.suggestContinueAsNew=${SUGGEST_AFTER}`] },
);

test('the gate continues as new while it waits: same digest, catch-up goes on, the approval of the old digest switches', { timeout: 180_000 }, async () => {
  const spec = specFor(
    'long-gate',
    { source: 'public.accounts', target: 'public.accounts', chunk: { column: 'id', size: 5000 }, delta: { column: 'updated_at', overlap: '0 seconds' } },
    {
      taskQueue: TASK_QUEUE,
      catchUp: { interval: '1 second' },
      cutover: { approval: 'required', switch: { connection: 'tgt', sql: `INSERT INTO public.cutover_log (migration) VALUES ('long-gate')` } },
    },
  );
  const client = stack.client;
  await client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  const h = client.workflow.getHandle(spec.name);
  const gate = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(gate.phase, 'awaiting_approval', JSON.stringify(gate));
  const digest = gate.digest!;
  const runAtGate = (await h.describe()).runId;

  // A write while the gate waits, before the new run: catch-up carries it.
  await stack.pg.query('src', `UPDATE public.accounts SET amount = amount + 1, updated_at = now() WHERE id = 7`);
  const end = Date.now() + 120_000;
  let p: Progress;
  for (;;) {
    assert.ok(Date.now() < end, 'the gate never continued as new');
    if ((await h.describe()).runId !== runAtGate) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  // The new run waits at the same gate, with the same evidence.
  p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(p.phase, 'awaiting_approval');
  assert.equal(p.digest, digest, 'the new run presents another digest');
  const old = await client.workflow.getHandle(spec.name, runAtGate).fetchHistory();
  const last = old.events!.at(-1)!;
  assert.ok(last.workflowExecutionContinuedAsNewEventAttributes, 'the run at the gate did not end by continuing as new');
  assert.ok(old.events!.length < SUGGEST_AFTER + 100, `the run at the gate went on for ${old.events!.length} events`);

  // And a write after it: still caught up.
  await stack.pg.query('src', `UPDATE public.accounts SET amount = amount + 2, updated_at = now() WHERE id = 12345`);
  await stack.pg.query('src', `INSERT INTO public.accounts VALUES (20001, 1, now())`);
  const rows = p.delta?.rowsApplied ?? 0;
  const caught = Date.now() + 30_000;
  while ((p = await h.query(progressQuery)).delta!.rowsApplied < rows + 2) {
    assert.ok(Date.now() < caught, `the new run does not catch up: ${JSON.stringify(p.delta)}`);
    await new Promise((r) => setTimeout(r, 300));
  }

  // The approval names the digest the person read before the new run began.
  await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'ops', digest }] });
  const result = (await h.result()) as MigrationResult;
  assert.equal(result.phase, 'completed', JSON.stringify(result));
  assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'public.accounts'), await fingerprint(stack.pg, 'src', 'public.accounts'));
  const log = await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM public.cutover_log WHERE migration = 'long-gate'`);
  assert.equal(log.rows[0].n, 1);
  await replayAndMaybeRecord(client.workflow.getHandle(spec.name, runAtGate), 'live-gate-continued-as-new');
});

test(
  'the way back continues as new in phase switched: the stream back goes on where the run before left it, its counts carried',
  { timeout: 180_000 },
  async () => {
    const doc = capturedSpecFor('followed-long', 'public.followed', { taskQueue: TASK_QUEUE, chunk: 2_000 });
    const grant = (db: string, verb: 'GRANT' | 'REVOKE') => ({
      connection: db,
      sql: `${verb} INSERT, UPDATE, DELETE ON public.followed ${verb === 'GRANT' ? 'TO' : 'FROM'} app`,
    });
    const spec = {
      ...doc,
      cutover: { ...doc.cutover, switch: grant('tgt', 'GRANT'), reverse: { freeze: grant('tgt', 'REVOKE'), switch: grant('src', 'GRANT') } },
    };
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
    const gate = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
    assert.equal(gate.phase, 'awaiting_approval', gate.detail);
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'ops', digest: gate.digest! }] });
    assert.equal((await waitForPhase(h, ['switched', 'completed', 'failed'])).phase, 'switched');
    const runSwitched = (await h.describe()).runId;
    await stack.pg.query('tgt', `UPDATE public.followed SET status = 'before' WHERE id <= 50`);
    await until('phase switched continues as new', async () => (await h.describe()).runId !== runSwitched, 60_000);
    const old = await stack.client.workflow.getHandle(spec.name, runSwitched).fetchHistory();
    assert.ok(old.events!.at(-1)!.workflowExecutionContinuedAsNewEventAttributes, 'the run in switched ended by continuing as new');
    assert.equal((await waitForPhase(h, ['switched', 'completed', 'failed'])).phase, 'switched');
    await stack.pg.query('tgt', `UPDATE public.followed SET status = 'after' WHERE id > 50 AND id <= 80`);
    await stack.pg.query('tgt', `DELETE FROM public.followed WHERE id = 99`);
    const same = async () => {
      const [a, b] = await Promise.all([tableFingerprint(stack.pg.url('src'), 'public.followed'), tableFingerprint(stack.pg.url('tgt'), 'public.followed')]);
      return a.rows === b.rows && a.md5 === b.md5;
    };
    await until('the source follows the target', same, 60_000);
    await h.executeUpdate(finishUpdate, { args: [{ actor: 'ops', reason: 'done' }] });
    const r = await h.result();
    assert.equal(r.phase, 'completed', r.reason);
    assert.ok(await same(), 'the source equals the target');
    // Every target transaction that went back is counted once, by both runs together.
    const log = await stack.pg.query('src', `SELECT count(*)::int AS n FROM backfill.capture_log WHERE migration = 'followed-long.reverse'`);
    assert.equal(log.rows[0].n, 3);
    assert.equal(r.reverse?.transactions, 3, JSON.stringify(r.reverse));
    await replayAndMaybeRecord(stack.client.workflow.getHandle(spec.name, runSwitched), 'reverse-switched-continued-as-new');
  },
);

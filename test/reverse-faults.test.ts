// The way back (`cutover.reverse`) under faults injected for real, each held where its name says
// (test/helpers/fault-points.ts) and proven there from the history:
// - mid-apply of the stream back: a target transaction of 2,000 rows whose apply to the source waits
//   at a key the test inserted first, uncommitted; the worker killed with SIGKILL: applyCapture ran
//   again, and the source's log has that transaction once, whole;
// - the source's PostgreSQL restarted in switched, then the target's: a write on the target after each
//   goes back all the same;
// - the switch back's final window: a gate on the target table stops its comparison (compareWindow)
//   on the frozen target; killed: compareWindow ran again;
// - the switch back itself: a gate on its record (backfill.switches on the source) stops runSwitch;
//   killed: runSwitch ran again, and the switch back is recorded and audited once.
// At the end the source equals the target, each switch ran once, and no slot or publication is left.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { backfillMigration } from '../src/workflows/migration';
import { approveCutoverUpdate, progressQuery, switchBackUpdate, type Progress } from '../src/workflows/messages';
import { useStack } from './hooks';
import { capturedSpecFor, KILLED_WORKER_HEARTBEAT } from './helpers/spec';
import { KILLED_WORKER_ENV } from './helpers/temporal';
import { holdActivity, loggedOn, progressUntil, retriedActivities, rowGate, tableGate, transactionOn, until, untilRetried } from './helpers/fault-points';

import { tableFingerprint } from '../src/infra/writer';
import { FILL_WRITER_TABLE, WRITER_TABLE } from '../src/db/demo';
import { ensureSchema, SWITCH_DDL } from '../src/db/ledger';

const TASK_QUEUE = 'reverse-faults';
const MIGRATION = 'reversed-faults';
const BACK = `${MIGRATION}.reverse`;
const ROWS = 20_000;
/** The large target transaction: 2,000 new rows; its apply to the source is held half-way. */
const BIG = { first: 1_000_001, rows: 2_000 };
const HELD_KEY = BIG.first + BIG.rows / 2;

const stack = useStack(
  TASK_QUEUE,
  async (_db, s) => {
    await s.src.query('src', `CREATE ROLE app LOGIN PASSWORD 'app'`);
    await s.src.query('src', WRITER_TABLE('public.accounts'));
    await s.src.query('src', FILL_WRITER_TABLE('public.accounts', ROWS));
    await s.src.query('src', 'GRANT SELECT, INSERT, UPDATE, DELETE ON public.accounts TO app');
    await s.tgt.query('tgt', `CREATE ROLE app LOGIN PASSWORD 'app'`);
    await s.tgt.query('tgt', WRITER_TABLE('public.accounts'));
    // The switch back's record, made before the migration so that the test can gate it.
    const c = new pg.Client({ connectionString: s.src.url('src') });
    await c.connect();
    try {
      await ensureSchema(c, SWITCH_DDL);
    } finally {
      await c.end();
    }
  },
  // Each database on a server of its own, so each can be restarted alone.
  { worker: 'none', serverPerAlias: true, env: { BACKFILL_STALL_TIMEOUT: '5', ...KILLED_WORKER_ENV } },
);

const worker = () => stack.spawnWorker();
const targetTransaction = (sql: string) => transactionOn(stack.servers.tgt, 'tgt', sql);
const logged = (xid: string) => loggedOn(stack.servers.src, 'src', BACK, xid);

const count = async (server: 'src' | 'tgt', sql: string, values: unknown[] = []) => Number((await stack.servers[server].query(server, sql, values)).rows[0].n);
const equal = async () => {
  const [s, t] = await Promise.all([
    tableFingerprint(stack.servers.src.url('src'), 'public.accounts'),
    tableFingerprint(stack.servers.tgt.url('tgt'), 'public.accounts'),
  ]);
  return s.rows === t.rows && s.md5 === t.md5;
};

test(
  'the way back under faults: kill -9 mid-apply, each PostgreSQL restarted in switched, kill -9 in the final window and in the switch back; exact, each switch once, nothing left',
  { timeout: 420_000 },
  async () => {
    let w = await worker();
    const base = capturedSpecFor(MIGRATION, 'public.accounts', { taskQueue: TASK_QUEUE, chunk: 4_000 });
    const writes = (db: string, verb: 'GRANT' | 'REVOKE') => ({
      connection: db,
      sql: `${verb} INSERT, UPDATE, DELETE ON public.accounts ${verb === 'GRANT' ? 'TO' : 'FROM'} app`,
    });
    const doc = {
      ...base,
      retries: { heartbeat: KILLED_WORKER_HEARTBEAT },
      cutover: { ...base.cutover, switch: writes('tgt', 'GRANT'), reverse: { freeze: writes('tgt', 'REVOKE'), switch: writes('src', 'GRANT') } },
    };
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
    const gate = await progressUntil(h, 'the gate', (p) => ['awaiting_approval', 'needs_attention', 'failed'].includes(p.phase));
    assert.equal(gate.phase, 'awaiting_approval', gate.detail);
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: gate.digest! }] });
    await progressUntil(h, 'switched', (p) => p.phase === 'switched');

    // 1. Mid-apply of the stream back: a large target transaction held half-way on the source. Killed there.
    const half = await rowGate(stack.servers.src, 'src', `INSERT INTO public.accounts (id, balance, status, at) VALUES ($1, 0, 'gate', now())`, [HELD_KEY]);
    const bigXid = await targetTransaction(
      `INSERT INTO public.accounts SELECT g, g * 1.25, 'new', NULL, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
         FROM generate_series(${BIG.first}, ${BIG.first + BIG.rows - 1}) g`,
    );
    await holdActivity(h, half, 'applyCapture');
    assert.equal(await count('src', 'SELECT count(*)::int AS n FROM public.accounts WHERE id >= $1', [BIG.first]), 0, 'nothing of it committed yet');
    const beforeKill = await retriedActivities(h);
    await w.kill();
    await half.open();
    w = await worker();
    await untilRetried(h, 'applyCapture', beforeKill);
    await until('the large transaction on the source', async () => (await logged(bigXid)).times > 0);
    assert.deepEqual(await logged(bigXid), { times: 1, rows: BIG.rows }, 'the large transaction applied once, whole');

    // 2. Each PostgreSQL restarted in switched: a write on the target after each goes back.
    for (const server of ['src', 'tgt'] as const) {
      await stack.servers[server].restart();
      await targetTransaction(`UPDATE public.accounts SET status = 'after-${server}-restart' WHERE id = 11`);
      await until(`the write after the ${server} restart on the source`, equal, 90_000);
      assert.equal((await h.query<Progress>(progressQuery)).phase, 'switched');
    }
    assert.ok(w.alive(), 'the worker lived through both restarts');

    // 3. The switch back's final window: the target table gated; once the target's freeze is
    // recorded, stepped until the window's comparison waits there. Killed.
    const p: Progress = await h.query(progressQuery);
    const target = await tableGate(stack.servers.tgt, 'tgt', 'public.accounts');
    await h.executeUpdate(switchBackUpdate, { args: [{ approver: 'bob', digest: p.reverse!.digest! }] });
    await until(
      "the target's freeze recorded",
      async () => (await count('tgt', `SELECT count(*)::int AS n FROM backfill.audit WHERE migration = $1 AND action = 'freeze'`, [MIGRATION])) >= 2,
    );
    await target.step();
    await holdActivity(h, target, 'compareWindow');
    // 4. And the switch back: its record gated on the source, so that runSwitch waits there. Killed.
    const record = await tableGate(stack.servers.src, 'src', 'backfill.switches');
    const beforeWindowKill = await retriedActivities(h);
    await w.kill();
    await target.open();
    w = await worker();
    await untilRetried(h, 'compareWindow', beforeWindowKill);
    await holdActivity(h, record, 'runSwitch');
    const beforeSwitchKill = await retriedActivities(h);
    await w.kill();
    await record.open();
    await worker();
    const r = await h.result();
    assert.equal(r.phase, 'completed', r.reason);
    assert.ok(r.reverse?.switchedBackAt, 'switched back');
    await untilRetried(h, 'runSwitch', beforeSwitchKill);

    assert.ok(await equal(), 'the source equals the target');
    assert.equal(await count('tgt', `SELECT count(*)::int AS n FROM backfill.switches WHERE migration = $1`, [MIGRATION]), 1, 'switched once');
    assert.equal(await count('src', `SELECT count(*)::int AS n FROM backfill.switches WHERE migration = $1`, [MIGRATION]), 1, 'switched back once');
    assert.deepEqual(
      (
        await stack.servers.tgt.query('tgt', `SELECT action FROM backfill.audit WHERE migration = $1 AND action LIKE 'switch%' ORDER BY id`, [MIGRATION])
      ).rows.map((x) => String(x.action)),
      ['switch', 'switch-back'],
    );
    const log = await stack.servers.src.query(
      'src',
      `SELECT count(*)::int AS n, count(DISTINCT commit_lsn)::int AS d FROM backfill.capture_log WHERE migration = $1`,
      [BACK],
    );
    assert.ok(log.rows[0].n > 0);
    assert.equal(log.rows[0].n, log.rows[0].d, 'no target transaction applied twice');
    for (const server of ['src', 'tgt'] as const) {
      assert.equal(await count(server, 'SELECT count(*)::int AS n FROM pg_replication_slots'), 0, `no slot left on ${server}`);
      assert.equal(await count(server, 'SELECT count(*)::int AS n FROM pg_publication'), 0, `no publication left on ${server}`);
    }
  },
);

// Scaling out: three `backfill worker` processes on one task queue, on a dev server with eager
// activity execution on (as the README recommends). Each worker proves a fair share of one
// migration's ranges (domain/sharing.ts), and the target ends equal to the source. Three more,
// capped at two sessions on the source (db/sessions.ts), never run more than two there at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { progressQuery, reportQuery } from '../src/workflows/messages';
import { backfillMigration } from '../src/workflows/migration';
import { fingerprint } from './helpers/sample';
import { specFor } from './helpers/spec';
import { useStack } from './hooks';
import { replayAndMaybeRecord, spawnWorker } from './helpers/temporal';
import { SESSION_SLOT_CLASS } from '../src/db/sessions';
import pg from 'pg';

const TASK_QUEUE = 'workers';
const WORKERS = 3;
const RANGES = 120;
const MANY = 30;

const stack = useStack(
  TASK_QUEUE,
  async (db) => {
    for (const d of ['src', 'tgt']) await db.query(d, 'CREATE TABLE public.shared (id bigint PRIMARY KEY, v text, n numeric)');
    await db.query('src', `INSERT INTO public.shared SELECT g, md5(g::text), g * 1.5 FROM generate_series(1, ${RANGES * 100}) g`);
    // A schema of small tables, for reconciling in batches.
    for (const d of ['src', 'tgt']) {
      await db.query(d, 'CREATE SCHEMA many');
      await db.query(
        d,
        `DO $$ BEGIN FOR i IN 1..${MANY} LOOP
           EXECUTE format('CREATE TABLE many.t%s (id bigint PRIMARY KEY, v text)', i);
           ${d === 'src' ? `EXECUTE format('INSERT INTO many.t%s SELECT g, md5(g::text) FROM generate_series(1, 20) g', i);` : ''}
         END LOOP; END $$`,
      );
    }
  },
  { worker: 'process', workers: WORKERS },
);

test(`workers: ${WORKERS} workers each prove a fair share of ${RANGES} ranges, and the copy is exact`, async () => {
  const spec = specFor(
    'shared',
    { source: 'public.shared', target: 'public.shared', chunk: { column: 'id', size: 100 } },
    { taskQueue: TASK_QUEUE, concurrency: 6, cutover: { approval: 'auto' } },
  );
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  const result = await h.result();
  assert.equal(result.phase, 'completed');
  assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'public.shared'), await fingerprint(stack.pg, 'src', 'public.shared'));

  // The ledger names the worker of every range's last attempt.
  const byWorker = await stack.pg.query('tgt', `SELECT worker, count(*)::int AS n FROM backfill.ranges WHERE migration = 'shared' GROUP BY 1 ORDER BY 2 DESC`);
  const shares = byWorker.rows.map((r) => `${r.worker}: ${r.n}`).join(', ');
  console.log(`# ranges by worker: ${shares}`);
  assert.equal(byWorker.rows.length, WORKERS, `every worker proved ranges (${shares})`);
  // A fair share is a third; each proves at least half of that (with eager execution unchecked, the
  // worker that ran the workflow proved over 90%).
  for (const r of byWorker.rows) assert.ok(r.n >= RANGES / 6, `worker ${r.worker} proved only ${r.n} of ${RANGES} ranges (${shares})`);
  assert.equal(
    byWorker.rows.reduce((a, r) => a + r.n, 0),
    RANGES,
  );
  // And the migration saw them all at work.
  assert.equal((await h.query(progressQuery)).workers, WORKERS);
  await replayAndMaybeRecord(h, 'shared-by-three-workers');
});

test(`workers: a schema of ${MANY} tables is reconciled in batches, one activity per batch, not one per table`, async () => {
  // (A schema pattern: each table keyed by its primary key, so no key given.)
  const spec = {
    name: 'many',
    source: 'src',
    target: 'tgt',
    taskQueue: TASK_QUEUE,
    concurrency: 2,
    cutover: { approval: 'auto' },
    tables: [{ source: 'many.*', target: 'many.*' }],
  };
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  assert.equal((await h.result()).phase, 'completed');
  const report = await h.query(reportQuery);
  assert.equal(report.tables.length, MANY);
  assert.ok(
    report.tables.every((t) => t.totals.match && t.totals.source?.count === '20'),
    'every table reconciled',
  );
  // Two lanes, 15 tables each: two activities reconciled them all.
  const scheduled = ((await h.fetchHistory()).events ?? []).flatMap((e) => {
    const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
    return name?.startsWith('reconcileTable') ? [name] : [];
  });
  assert.deepEqual(scheduled, ['reconcileTables', 'reconcileTables']);
  for (const i of [1, MANY]) assert.deepEqual(await fingerprint(stack.pg, 'tgt', `many.t${i}`), await fingerprint(stack.pg, 'src', `many.t${i}`));
  await replayAndMaybeRecord(h, 'schema-reconciled-in-batches');
});

test('workers: BACKFILL_SESSIONS_<ALIAS> caps our sessions on a database across three workers', async () => {
  const CAP = 2;
  const queue = 'capped';
  const workers = await Promise.all(Array.from({ length: WORKERS }, () => spawnWorker(stack.temporal.address, queue, { BACKFILL_SESSIONS_SRC: String(CAP) })));
  const sampler = new pg.Client({ connectionString: stack.pg.url('src'), application_name: 'sampler' });
  await sampler.connect();
  try {
    const spec = specFor(
      'capped',
      { source: 'public.shared', target: 'public.capped', chunk: { column: 'id', size: 200 } },
      { taskQueue: queue, concurrency: 8, cutover: { approval: 'auto' } },
    );
    await stack.pg.query('tgt', 'CREATE TABLE public.capped (id bigint PRIMARY KEY, v text, n numeric)');
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: queue, workflowId: spec.name, args: [spec] });
    // In one statement, the sessions of ours on the source holding a slot, and those running a
    // statement other than the request for one (a session waiting for a slot asks, and is closed).
    const sample = async () =>
      (
        await sampler.query<{ holders: number; working: number }>(
          `SELECT (SELECT count(*)::int FROM pg_locks l WHERE l.locktype = 'advisory' AND l.classid = $1::int::oid AND l.objsubid = 2 AND l.granted
                     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS holders,
                  (SELECT count(*)::int FROM pg_stat_activity a WHERE a.application_name = 'backfill' AND a.datname = current_database()
                     AND a.state <> 'idle' AND a.query NOT LIKE '%pg_try_advisory_lock%') AS working`,
          [SESSION_SLOT_CLASS],
        )
      ).rows[0];
    let most = { holders: 0, working: 0 };
    let samples = 0;
    let done = false;
    const ended = h.result().finally(() => (done = true));
    while (!done) {
      const s = await sample();
      samples++;
      most = { holders: Math.max(most.holders, s.holders), working: Math.max(most.working, s.working) };
      assert.ok(s.holders <= CAP, `${s.holders} sessions of ours held a slot on the source at once (cap ${CAP})`);
      assert.ok(s.working <= CAP, `${s.working} sessions of ours worked on the source at once (cap ${CAP})`);
    }
    const result = await ended;
    console.log(`# ${samples} samples; at most ${most.holders} slots held and ${most.working} sessions working at once`);
    assert.equal(result.phase, 'completed');
    // The progress says so: the cap, and that ranges waited for a session.
    const p = await h.query(progressQuery);
    assert.deepEqual(p.sessions?.caps, { src: CAP });
    assert.ok((p.sessions?.waitedMs ?? 0) > 0, `ranges waited for a session: ${JSON.stringify(p.sessions)}`);
    // The cap bound: concurrency 8 wanted more sessions than it allowed, and got as many as it allowed.
    assert.equal(most.holders, CAP, 'the sessions reached the cap');
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'public.capped'), await fingerprint(stack.pg, 'src', 'public.shared'));
    const byWorker = await stack.pg.query('tgt', `SELECT count(DISTINCT worker)::int AS n FROM backfill.ranges WHERE migration = 'capped'`);
    assert.ok(byWorker.rows[0].n >= 2, 'the ranges were shared among the capped workers');
  } finally {
    await sampler.end();
    await Promise.all(workers.map((w) => w.stop()));
  }
});

// Scale: 2,500 ranges in one migration, shared by two worker processes. The workflow continues as
// new before any run's history nears the 10,240-event warning; state and inputs stay small.
import { HISTORY_BUDGET } from '../src/workflows/state';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { progressQuery, reportQuery, type MigrationResult } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import type { WorkflowHandle } from '@temporalio/client';
import { fingerprint } from './helpers/sample';
import { replayAndMaybeRecord } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';
import { backfillMigration } from '../src/workflows/migration';

const TASK_QUEUE = 'scale';
const RANGES = 2500;

const stack = useStack(
  TASK_QUEUE,
  async (db) => {
    for (const d of ['src', 'tgt']) await db.query(d, 'CREATE TABLE public.small (id bigint PRIMARY KEY, v text)');
    await db.query('src', `INSERT INTO public.small SELECT g, 'v' || g FROM generate_series(1, ${RANGES * 2}) g`);
  },
  { worker: 'process', workers: 2 },
);

test(`scale: ${RANGES} ranges, two workers, every run within the history budget`, async () => {
  const spec = specFor(
    'scale',
    { source: 'public.small', target: 'public.small', chunk: { column: 'id', size: 2 } },
    { taskQueue: TASK_QUEUE, concurrency: 8, cutover: { approval: 'auto' } },
  );
  const client = stack.client;
  const t0 = Date.now();
  const h = await client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  const result = (await client.workflow.getHandle(spec.name).result()) as MigrationResult;
  const seconds = (Date.now() - t0) / 1000;
  assert.equal(result.phase, 'completed');
  console.log(`# ${RANGES} ranges in ${seconds.toFixed(1)} s: ${((seconds * 1000) / RANGES).toFixed(1)} ms per range`);

  // Walk the chain of runs from the first: each under the warning, each handing over to the next.
  let runId: string | undefined = h.firstExecutionRunId;
  const lengths: number[] = [];
  while (runId) {
    const history: Awaited<ReturnType<WorkflowHandle['fetchHistory']>> = await client.workflow.getHandle(spec.name, runId).fetchHistory();
    const events = history.events ?? [];
    lengths.push(events.length);
    const next: string | null | undefined = events[events.length - 1]?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
    runId = next ?? undefined;
  }
  console.log(`# runs: ${lengths.length}, events per run: ${lengths.join(', ')}`);
  // The first run, which ended by continuing as new, replays against the current code.
  await replayAndMaybeRecord(client.workflow.getHandle(spec.name, h.firstExecutionRunId), 'continued-as-new-first-run');
  assert.ok(lengths.length >= 2, 'the migration continued as new');
  assert.ok(Math.max(...lengths) <= HISTORY_BUDGET, `a run reached ${Math.max(...lengths)} events, past the budget of ${HISTORY_BUDGET}`);

  const latest = client.workflow.getHandle(spec.name);
  const p = await latest.query(progressQuery);
  assert.deepEqual(p.tables[0].ranges, { total: RANGES, pending: 0, inFlight: 0, verified: RANGES, failed: 0 });
  const report: Report = await latest.query(reportQuery);
  assert.equal(report.verdict, 'green');
  assert.ok(JSON.stringify(report).length < 2 * 2 ** 20, 'the report stays under 2 MB');
  assert.equal(report.tables[0].rangeSummary.verified, RANGES);
  assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'public.small'), await fingerprint(stack.pg, 'src', 'public.small'));

  const workers = await stack.pg.query('tgt', `SELECT worker, count(*)::int AS n FROM backfill.ranges WHERE migration = 'scale' GROUP BY 1 ORDER BY 1`);
  assert.equal(workers.rows.length, 2, `ranges by worker: ${JSON.stringify(workers.rows)}`);
  for (const w of workers.rows) assert.ok(w.n > RANGES / 10, `worker ${w.worker} took only ${w.n} ranges`);
});

// The bench's many-tables part (`--only tables`; `--tables N`, default 2000): one migration of a
// schema of N small tables (a schema pattern, each keyed by its primary key), served by one worker.
// It prints the time to completion and per table, the history (runs, events in all and the most in
// one run), the report's size, the ledger's size and the worker's peak memory: what grows with the
// number of tables, not the rows.
import type { Client } from '@temporalio/client';
import type { PostgresServer } from '../src/infra/postgres';
import { backfillMigration } from '../src/workflows/migration';
import { spawnWorker } from '../test/helpers/temporal';
import { footprint, mb, smallPages, type Footprint } from './bench-history';

export interface TablesResult extends Footprint {
  tables: number;
  rowsPerTable: number;
  ms: number;
  workerPeakRssMB: number;
}

interface TablesBench {
  src: PostgresServer;
  tgt: PostgresServer;
  client: Client;
  address: string;
  tables: number;
  concurrency: number;
  peakRssMB: (pid: number) => number;
}

const ROWS_PER_TABLE = 100;

export async function tablesBench(o: TablesBench): Promise<TablesResult> {
  for (const [db, fill] of [
    [o.src, true],
    [o.tgt, false],
  ] as const) {
    await db.query('bench', 'DROP SCHEMA IF EXISTS many CASCADE');
    await db.query('bench', 'CREATE SCHEMA many');
    await db.query(
      'bench',
      `DO $$ BEGIN FOR i IN 1..${o.tables} LOOP
         EXECUTE format('CREATE TABLE many.t%s (id bigint PRIMARY KEY, v text)', i);
         ${fill ? `EXECUTE format('INSERT INTO many.t%s SELECT g, md5(g::text) FROM generate_series(1, ${ROWS_PER_TABLE}) g', i);` : ''}
       END LOOP; END $$`,
    );
  }
  const taskQueue = 'bench-tables';
  const worker = await spawnWorker(o.address, taskQueue);
  try {
    const name = `bench-tables-${o.tables}`;
    const spec = {
      name,
      taskQueue,
      source: 'src',
      target: 'tgt',
      concurrency: o.concurrency,
      tables: [{ source: 'many.*', target: 'many.*' }],
      cutover: { approval: 'auto' },
    };
    const t0 = performance.now();
    const h = await o.client.workflow.start(backfillMigration, { taskQueue, workflowId: name, args: [spec] });
    try {
      await h.result();
    } finally {
      await printHeaviest(o.client, name);
    }
    const ms = performance.now() - t0;
    return {
      tables: o.tables,
      rowsPerTable: ROWS_PER_TABLE,
      ms,
      ...(await footprint(o.client, o.tgt, name, h.firstExecutionRunId)),
      workerPeakRssMB: o.peakRssMB(worker.pid),
    };
  } finally {
    await worker.stop();
  }
}

/** Where the history's bytes go: per event kind (activity type for scheduled and completed), in all and the largest one, over every run. */
async function printHeaviest(client: Client, workflowId: string): Promise<void> {
  const kinds = new Map<string, { n: number; bytes: number; most: number }>();
  const typeOf = new Map<string, string>();
  for (const e of await smallPages(client, workflowId)) {
    const [attr] = Object.keys(e).filter((k) => k.endsWith('EventAttributes') && (e as Record<string, unknown>)[k]);
    let kind = attr ?? 'other';
    const sched = e.activityTaskScheduledEventAttributes;
    if (sched) typeOf.set(String(e.eventId), sched.activityType?.name ?? '?');
    if (sched) kind += ` ${sched.activityType?.name}`;
    const done = e.activityTaskCompletedEventAttributes;
    if (done) kind += ` ${typeOf.get(String(done.scheduledEventId)) ?? ''}`;
    const bytes = JSON.stringify(e).length;
    const k = kinds.get(kind) ?? { n: 0, bytes: 0, most: 0 };
    kinds.set(kind, { n: k.n + 1, bytes: k.bytes + bytes, most: Math.max(k.most, bytes) });
  }
  const top = [...kinds.entries()].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 8);
  for (const [k, v] of top)
    console.log(`    ${k.replace('EventAttributes', '')}: ${v.n} events, ${(v.bytes / 2 ** 20).toFixed(2)} MB, largest ${(v.most / 1024).toFixed(0)} KB`);
}

export function printTables(r: TablesResult): void {
  console.log(
    `| ${r.tables} tables of ${r.rowsPerTable} rows: to completion | ${(r.ms / 1000).toFixed(1)} s (${(r.ms / r.tables).toFixed(1)} ms per table) | |`,
  );
  console.log(`| history: runs, events in all, most in one run | ${r.runs}, ${r.events}, ${r.mostEventsInARun} | most ≤ 10,240 (Temporal's warning) |`);
  console.log(`| report (the report query's JSON) | ${mb(r.reportBytes)}B | ≤ 2 MB |`);
  console.log(`| ledger (the migration's rows in schema backfill) | ${mb(r.ledgerBytes)}B | |`);
  console.log(`| worker peak memory (VmHWM) | ${r.workerPeakRssMB.toFixed(0)} MB | |`);
}

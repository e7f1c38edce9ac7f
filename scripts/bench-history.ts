// What a migration leaves behind, for the bench: its history's shape over every run of the chain,
// its report's size and its rows in the ledger. The figures that must not grow faster than the rows
// or the tables.
import type { Client } from '@temporalio/client';
import type { PostgresServer } from '../src/infra/postgres';
import { reportQuery } from '../src/workflows/messages';

/** The ledger's tables, each keyed by migration. */
const LEDGER_TABLES = ['ranges', 'capture_epochs', 'tables', 'reports', 'boundaries', 'differences', 'constraints', 'audit', 'switches'];

export interface Footprint {
  runs: number;
  events: number;
  mostEventsInARun: number;
  reportBytes: number;
  ledgerBytes: number;
}

/** A run's events (the latest by default), 3 to a page (a page of large events passes gRPC's 4 MB otherwise). */
export async function smallPages(client: Client, workflowId: string, runId?: string) {
  const events = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const r = await client.workflowService.getWorkflowExecutionHistory({
      namespace: 'default',
      execution: { workflowId, runId },
      maximumPageSize: 3,
      nextPageToken,
    });
    events.push(...(r.history?.events ?? []));
    nextPageToken = r.nextPageToken?.length ? r.nextPageToken : undefined;
  } while (nextPageToken);
  return events;
}

/** The history of every run of the chain from the first, the report query's JSON, and the migration's rows in the ledger (on the target). */
export async function footprint(client: Client, tgt: PostgresServer, workflowId: string, firstRunId: string): Promise<Footprint> {
  const lengths: number[] = [];
  let runId: string | undefined = firstRunId;
  while (runId) {
    const events = await smallPages(client, workflowId, runId);
    lengths.push(events.length);
    runId = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  const report = await client.workflow.getHandle(workflowId).query(reportQuery);
  const sizes = LEDGER_TABLES.map((t) => `SELECT coalesce(sum(pg_column_size(x.*)), 0) AS b FROM backfill.${t} x WHERE migration = $1`).join(' UNION ALL ');
  const ledger = await tgt.query('bench', `SELECT sum(b)::bigint AS b FROM (${sizes}) s`, [workflowId]);
  return {
    runs: lengths.length,
    events: lengths.reduce((a, b) => a + b, 0),
    mostEventsInARun: Math.max(...lengths),
    reportBytes: Buffer.byteLength(JSON.stringify(report)),
    ledgerBytes: Number(ledger.rows[0].b),
  };
}

/** A size for people: KB below a megabyte (a small report would read 0.0 MB). */
export const mb = (b: number) => (b < 2 ** 20 ? `${(b / 1024).toFixed(0)} K` : `${(b / 2 ** 20).toFixed(1)} M`);

// What the activities count: it lands on the worker's Prometheus endpoint with the activity's
// namespace, task queue and type (src/metrics/meter.ts). Called outside an activity (tests, the CLI)
// these do nothing. Labels are names from the spec, never a connection.
import { Context } from '@temporalio/activity';
import { METRICS, type MetricDef } from '../metrics/catalog';
import { activityLabels, record, type Labels } from '../metrics/meter';

export interface Where {
  migration: string;
  /** the source table, as the plan names it */
  table: string;
}

export type RangeMode = 'copy' | 'verify';
export type RangeOutcome = 'verified' | 'mismatch' | 'failed' | 'refused' | 'error';

/** The labels of the activity running now; undefined outside one. */
function running(): Labels | undefined {
  try {
    return activityLabels(Context.current().info);
  } catch {
    return undefined;
  }
}

/** Counts (or observes) `value` for the activity running now, if any. */
function add(d: MetricDef, value: number, labels: Labels): void {
  const at = running();
  if (at) record(d, value, { ...labels, ...at });
}

const tags = (w: Where) => ({ migration: w.migration, table: w.table });

/** Rows and bytes a copy wrote into the target (committed). */
export function countCopied(w: Where, rows: number, bytes: number): void {
  add(METRICS.rowsCopied, rows, tags(w));
  add(METRICS.bytesCopied, bytes, tags(w));
}

/** One range attempt's outcome, with its copy and measurement times when it got that far. */
export function countAttempt(w: Where, mode: RangeMode, outcome: RangeOutcome, t?: { copySeconds?: number; verifySeconds: number; sourceRows: string }): void {
  add(METRICS.rangeAttempts, 1, { ...tags(w), mode, outcome });
  if (!t) return;
  if (t.copySeconds !== undefined) add(METRICS.copyDuration, t.copySeconds, tags(w));
  add(METRICS.verifyDuration, t.verifySeconds, { ...tags(w), mode });
  if (outcome === 'verified') add(METRICS.rowsVerified, Number(t.sourceRows), tags(w));
}

/** A catch-up window applied: rows upserted or deleted, and the COPY bytes that brought them. */
export function countCatchUp(w: Where, rows: number, bytes: number): void {
  add(METRICS.catchupRows, rows, tags(w));
  add(METRICS.bytesCopied, bytes, tags(w));
}

/** Seconds since `start` (a `performance.now()`). */
export const secondsSince = (start: number): number => Math.max(0, (performance.now() - start) / 1000);

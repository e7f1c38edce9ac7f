// What the activities count, through the SDK's activity metric meter: it lands on the worker's
// Prometheus endpoint with the activity's namespace, task queue and type. Called outside an
// activity (tests, the CLI) these do nothing. Labels are names from the spec, never a connection.
import { Context } from '@temporalio/activity';
import { noopMetricMeter, type MetricMeter } from '@temporalio/common';
import { METRICS } from '../metrics/catalog';

export interface Where {
  migration: string;
  /** the source table, as the plan names it */
  table: string;
}

export type RangeMode = 'copy' | 'verify';
export type RangeOutcome = 'verified' | 'mismatch' | 'failed' | 'refused' | 'error';

function meter(): MetricMeter {
  try {
    return Context.current().metricMeter;
  } catch {
    return noopMetricMeter;
  }
}

const counter = (d: { name: string; help: string; unit?: string }) => meter().createCounter(d.name, d.unit, d.help);
const histogram = (d: { name: string; help: string; unit?: string }) => meter().createHistogram(d.name, 'float', d.unit, d.help);
const tags = (w: Where) => ({ migration: w.migration, table: w.table });

/** Counting must never fail the work it counts. */
function quietly(fn: () => void): void {
  try {
    fn();
  } catch {
    /* a metric lost, not a range */
  }
}

/** Rows and bytes a copy wrote into the target (committed). */
export function countCopied(w: Where, rows: number, bytes: number): void {
  quietly(() => {
    counter(METRICS.rowsCopied).add(rows, tags(w));
    counter(METRICS.bytesCopied).add(bytes, tags(w));
  });
}

/** One range attempt's outcome, with its copy and measurement times when it got that far. */
export function countAttempt(w: Where, mode: RangeMode, outcome: RangeOutcome, t?: { copySeconds?: number; verifySeconds: number; sourceRows: string }): void {
  quietly(() => {
    counter(METRICS.rangeAttempts).add(1, { ...tags(w), mode, outcome });
    if (!t) return;
    if (t.copySeconds !== undefined) histogram(METRICS.copyDuration).record(t.copySeconds, tags(w));
    histogram(METRICS.verifyDuration).record(t.verifySeconds, { ...tags(w), mode });
    if (outcome === 'verified') counter(METRICS.rowsVerified).add(Number(t.sourceRows), tags(w));
  });
}

/** A catch-up window applied: rows upserted or deleted, and the COPY bytes that brought them. */
export function countCatchUp(w: Where, rows: number, bytes: number): void {
  quietly(() => {
    counter(METRICS.catchupRows).add(rows, tags(w));
    counter(METRICS.bytesCopied).add(bytes, tags(w));
  });
}

/** Seconds since `start` (a `performance.now()`). */
export const secondsSince = (start: number): number => Math.max(0, (performance.now() - start) / 1000);

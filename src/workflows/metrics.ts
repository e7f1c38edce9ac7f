// The migration's state as Prometheus gauges, through the `metrics` sink: a sink call, not a command
// (the history does not change), and not made while replaying. The worker sets them on its endpoint
// with the workflow's namespace, task queue and type (src/metrics/meter.ts: the SDK's workflow
// metric meter would label them `taskQueue` and `workflowType`, beside its own `task_queue`). Only the
// workflow knows which phase a migration is in and how many ranges wait, so these come from here;
// the work itself (rows, bytes, durations) is counted by the activities (src/activities/metrics.ts).
import { proxySinks, workflowInfo, type Sinks } from '@temporalio/workflow';
import { METRICS, PHASE_CODES, RANGE_STATUSES } from '../metrics/catalog';
import { PHASES } from '../domain/phases';
import type { MigrationState } from './state';

export interface MetricSinks extends Sinks {
  metrics: {
    /** sets the gauge `name` of the catalog (src/metrics/catalog.ts) */
    gauge(name: string, value: number, labels: Record<string, string>): void;
  };
}

const { metrics } = proxySinks<MetricSinks>();

const gauge = (d: { name: string }) => ({
  set(value: number, labels: Record<string, string>): void {
    if (!workflowInfo().unsafe.isReplaying) metrics.gauge(d.name, value, labels);
  },
});

/** The oldest watermark as Unix seconds, when it reads as a timestamp. */
function markSeconds(marks: readonly (string | null)[]): number | undefined {
  const ms = marks
    .filter((m): m is string => m !== null)
    .map((m) => Date.parse(m))
    .filter((x) => Number.isFinite(x));
  return ms.length ? Math.min(...ms) / 1000 : undefined;
}

/** One table's ranges by status (the counts `progress` shows). */
export function showRanges(s: MigrationState, t: number): void {
  try {
    const st = s.ranges.tables[t];
    const counts: Record<(typeof RANGE_STATUSES)[number], number> = {
      pending: st.plan.rangeCount - st.verified - st.failed.size - st.inFlight.size,
      in_flight: st.inFlight.size,
      verified: st.verified,
      failed: st.failed.size,
    };
    const g = gauge(METRICS.ranges);
    for (const status of RANGE_STATUSES) g.set(Math.max(0, counts[status]), { migration: s.name, table: st.plan.source, status });
  } catch {
    // Metrics must never stop a migration.
  }
}

/**
 * Every gauge of the migration (or, with `table`, the phase and that table's ranges). Each phase is
 * set, 1 or 0, on every call: a worker that takes the workflow over from another shows it whole.
 */
export function showMetrics(s: MigrationState, table?: number): void {
  try {
    const migration = s.name;
    const phase = gauge(METRICS.phase);
    for (const p of PHASES) phase.set(p === s.phase ? 1 : 0, { migration, phase: p });
    gauge(METRICS.phaseCode).set(PHASE_CODES[s.phase], { migration });
    const l = s.live;
    if (l) {
      gauge(METRICS.catchupRemaining).set(Math.max(0, l.remaining), { migration });
      const mark = markSeconds(l.marks);
      if (mark !== undefined) {
        gauge(METRICS.catchupWatermark).set(mark, { migration });
        gauge(METRICS.catchupLag).set(Math.max(0, Date.now() / 1000 - mark), { migration });
      }
    }
    // Change capture's lag, each direction (the way back once the switch ran).
    const lag = (c: { lagSeconds: number; lagBytes: string }, direction: 'forward' | 'back') => {
      gauge(METRICS.captureLag).set(c.lagSeconds, { migration, direction });
      gauge(METRICS.captureLagBytes).set(Number(c.lagBytes), { migration, direction });
    };
    const c = s.capture.view();
    if (c) lag(c, 'forward');
    const r = s.reverse.view;
    if (r?.switchedAt) lag(r, 'back');
  } catch {
    // Metrics must never stop a migration.
  }
  if (table !== undefined) showRanges(s, table);
  else for (let t = 0; t < s.ranges.tables.length; t++) showRanges(s, t);
}

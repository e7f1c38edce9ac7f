// Every metric of ours, by name: what the worker exports next to the Temporal SDK's own, what the
// README's table documents and what the Grafana dashboard may query. Pure data (the workflow bundle
// imports it): the workflow keeps some of these from its state, the activities and the worker's
// activity interceptor count the rest, and the tests check the names and labels against Prometheus's
// naming convention, and the docs and the dashboard against this list.
import { PHASES } from '../domain/phases';

export type MetricKind = 'counter' | 'gauge' | 'histogram';

export interface MetricDef {
  name: string;
  kind: MetricKind;
  /** the metric's own labels; every metric also has the `SDK_LABELS` of where it is `from` */
  labels: readonly string[];
  help: string;
  /** 'workflow': kept by the workflow from its state; 'activity': counted where the work is done */
  from: 'workflow' | 'activity';
  /** UCUM, as the SDK takes it: 's' (the name ends in `_seconds`), 'By' (`_bytes`, before `_total`) */
  unit?: string;
  float?: boolean;
}

/**
 * The labels every metric of ours has, by where it is counted: the worker's namespace and task queue
 * and the workflow or activity type, named as the SDK's own `temporal_*` metrics name them, so that
 * one query can join ours with theirs.
 */
export const SDK_LABELS = {
  workflow: ['namespace', 'task_queue', 'workflow_type'],
  activity: ['namespace', 'task_queue', 'activity_type'],
} as const satisfies Record<MetricDef['from'], readonly string[]>;

/** Seconds: a range takes from milliseconds (tiny ranges) to many minutes (a huge one). */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

/** `backfill_phase_code`: a phase's position in the life cycle (the dashboard maps it back to a name). */
export const PHASE_CODES: Record<(typeof PHASES)[number], number> = Object.fromEntries(PHASES.map((p, i) => [p, i])) as Record<(typeof PHASES)[number], number>;

export const METRICS = {
  phase: {
    name: 'backfill_phase',
    kind: 'gauge',
    labels: ['migration', 'phase'],
    help: '1 for the phase the migration is in, 0 for every other phase',
    from: 'workflow',
  },
  phaseCode: {
    name: 'backfill_phase_code',
    kind: 'gauge',
    labels: ['migration'],
    help: `the current phase as a number: ${PHASES.map((p, i) => `${i} ${p}`).join(', ')}`,
    from: 'workflow',
  },
  ranges: {
    name: 'backfill_ranges',
    kind: 'gauge',
    labels: ['migration', 'table', 'status'],
    help: 'ranges of a table by status (pending, in_flight, verified, failed); they add up to the planned ranges',
    from: 'workflow',
  },
  catchupRemaining: {
    name: 'backfill_catchup_remaining_rows',
    kind: 'gauge',
    labels: ['migration'],
    help: 'rows the last catch-up round applied (what is left to catch up; live sources only)',
    from: 'workflow',
  },
  catchupLag: {
    name: 'backfill_catchup_lag_seconds',
    kind: 'gauge',
    labels: ['migration'],
    help: 'how far the oldest table watermark was behind the workflow clock when the last catch-up round ended',
    from: 'workflow',
    unit: 's',
    float: true,
  },
  catchupWatermark: {
    name: 'backfill_catchup_watermark_timestamp_seconds',
    kind: 'gauge',
    labels: ['migration'],
    help: 'the oldest table watermark, as Unix seconds: time() minus this is the lag right now',
    from: 'workflow',
    unit: 's',
    float: true,
  },
  captureLag: {
    name: 'backfill_capture_lag_seconds',
    kind: 'gauge',
    labels: ['migration', 'direction'],
    help: "change capture: how far the applied stream was behind its source's WAL when the last apply call ended; direction forward (source to target) or back (the way back, target to source, in phase switched)",
    from: 'workflow',
    unit: 's',
    float: true,
  },
  captureLagBytes: {
    name: 'backfill_capture_lag_bytes',
    kind: 'gauge',
    labels: ['migration', 'direction'],
    help: 'the same lag in bytes of WAL',
    from: 'workflow',
    unit: 'By',
  },
  rowsCopied: {
    name: 'backfill_rows_copied_total',
    kind: 'counter',
    labels: ['migration', 'table'],
    help: 'rows written into the target by range copies (every attempt, and repairs of a sweep)',
    from: 'activity',
  },
  rowsVerified: {
    name: 'backfill_rows_verified_total',
    kind: 'counter',
    labels: ['migration', 'table'],
    help: 'source rows of range attempts that proved equal on both sides (a sweep proves them again)',
    from: 'activity',
  },
  bytesCopied: {
    name: 'backfill_copied_bytes_total',
    kind: 'counter',
    labels: ['migration', 'table'],
    help: 'bytes of binary COPY data streamed from the source to the target (range copies, repairs, catch-up)',
    from: 'activity',
    unit: 'By',
  },
  rangeAttempts: {
    name: 'backfill_range_attempts_total',
    kind: 'counter',
    labels: ['migration', 'table', 'mode', 'outcome'],
    help: 'range attempts by mode (copy, verify) and outcome (verified, mismatch, failed, refused, error)',
    from: 'activity',
  },
  catchupRows: {
    name: 'backfill_catchup_rows_applied_total',
    kind: 'counter',
    labels: ['migration', 'table'],
    help: 'rows catch-up rounds upserted or deleted in the target',
    from: 'activity',
  },
  copyDuration: {
    name: 'backfill_range_copy_duration_seconds',
    kind: 'histogram',
    labels: ['migration', 'table'],
    help: "a range copy's delete and COPY, in seconds",
    from: 'activity',
    unit: 's',
    float: true,
  },
  verifyDuration: {
    name: 'backfill_range_verify_duration_seconds',
    kind: 'histogram',
    labels: ['migration', 'table', 'mode'],
    help: "a range's measurement of both sides (after its copy, or alone in verify mode), in seconds",
    from: 'activity',
    unit: 's',
    float: true,
  },
  activityFailures: {
    name: 'backfill_activity_failures_total',
    kind: 'counter',
    labels: ['error_type'],
    help: 'activity attempts that failed, by activity type and error type (a database error is PG and its SQLSTATE); Temporal retries the retryable ones',
    from: 'activity',
  },
  activityRetries: {
    name: 'backfill_activity_retries_total',
    kind: 'counter',
    labels: [],
    help: 'activity attempts started after an earlier attempt of the same activity failed or timed out (Temporal retries)',
    from: 'activity',
  },
} as const satisfies Record<string, MetricDef>;

export const METRIC_DEFS: readonly MetricDef[] = Object.values(METRICS);

/** Range statuses of `backfill_ranges`, in the order a dashboard stacks them. */
export const RANGE_STATUSES = ['pending', 'in_flight', 'verified', 'failed'] as const;

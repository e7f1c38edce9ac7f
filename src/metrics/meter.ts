// Our metrics onto the worker's Prometheus endpoint: the SDK runtime's meter, each value with the
// labels of where it was counted named as the SDK's own `temporal_*` metrics name theirs
// (`task_queue`, `activity_type`, `workflow_type`). The meters the SDK hands to activities and to
// workflows tag every value `taskQueue`, `activityType`, `workflowType`, and its public API cannot
// rename a tag the worker adds: so ours do not go through them. Worker side only (the workflow sends
// its gauges here through the `metrics` sink).
import { Runtime, type InjectedSinks } from '@temporalio/worker';
import type { MetricCounter, MetricGauge, MetricHistogram, MetricMeter } from '@temporalio/common';
import { METRIC_DEFS, type MetricDef, type SDK_LABELS } from './catalog';
import type { MetricSinks } from '../workflows/metrics';

export type Labels = Record<string, string>;
type SdkLabels<K extends keyof typeof SDK_LABELS> = Record<(typeof SDK_LABELS)[K][number], string>;

export const activityLabels = (i: { namespace: string; taskQueue: string; activityType: string }): SdkLabels<'activity'> => ({
  namespace: i.namespace,
  task_queue: i.taskQueue,
  activity_type: i.activityType,
});

const workflowLabels = (i: { namespace: string; taskQueue: string; workflowType: string }): SdkLabels<'workflow'> => ({
  namespace: i.namespace,
  task_queue: i.taskQueue,
  workflow_type: i.workflowType,
});

type Instrument = MetricCounter | MetricHistogram | MetricGauge;

// Creating an instrument is a call into the SDK's native runtime: once per metric and runtime.
let instrumentsOf: MetricMeter | undefined;
const instruments = new Map<string, Instrument>();

function instrument(d: MetricDef): Instrument {
  const meter = Runtime.instance().metricMeter;
  if (meter !== instrumentsOf) {
    instruments.clear();
    instrumentsOf = meter;
  }
  let i = instruments.get(d.name);
  if (!i) {
    const valueType = d.float ? 'float' : 'int';
    if (d.kind === 'counter') i = meter.createCounter(d.name, d.unit, d.help);
    else if (d.kind === 'histogram') i = meter.createHistogram(d.name, valueType, d.unit, d.help);
    else i = meter.createGauge(d.name, valueType, d.unit, d.help);
    instruments.set(d.name, i);
  }
  return i;
}

/** Counting must never fail the work it counts. */
function quietly(fn: () => void): void {
  try {
    fn();
  } catch {
    /* a metric lost, not the work */
  }
}

/** Adds to a counter, observes a histogram or sets a gauge, as `d` is. */
export function record(d: MetricDef, value: number, labels: Labels): void {
  quietly(() => {
    const i = instrument(d);
    if (i.kind === 'counter') i.add(value, labels);
    else if (i.kind === 'histogram') i.record(value, labels);
    else i.set(value, labels);
  });
}

const GAUGES = new Map(METRIC_DEFS.filter((d) => d.kind === 'gauge' && d.from === 'workflow').map((d) => [d.name, d]));

/** The workflow's gauges (src/workflows/metrics.ts), labelled with the workflow's namespace, queue and type. */
export function metricSinks(): InjectedSinks<MetricSinks> {
  return {
    metrics: {
      gauge: {
        fn: (info, name, value, labels) => {
          const d = GAUGES.get(name);
          if (d) record(d, value, { ...labels, ...workflowLabels(info) });
        },
        callDuringReplay: false,
      },
    },
  };
}

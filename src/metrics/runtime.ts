// The worker's Prometheus endpoint: the Temporal SDK's own exporter (its runtime metrics and ours
// share one /metrics), installed once per process before any connection, when
// BACKFILL_METRICS_ADDRESS asks for it.
import { SETTINGS, setting } from '../settings';
import { Runtime } from '@temporalio/worker';
import { DURATION_BUCKETS, METRIC_DEFS } from './catalog';

export const METRICS_ADDRESS_ENV = SETTINGS.metricsAddress.env;

/** `host:port` to bind, from BACKFILL_METRICS_ADDRESS (`:9464` binds every interface); undefined: off. */
export function metricsAddress(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return setting('metricsAddress', env);
}

/** Installs the SDK runtime with the Prometheus exporter; returns the address, or undefined when off. */
export function installMetrics(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const bindAddress = metricsAddress(env);
  if (!bindAddress) return undefined;
  Runtime.install({
    telemetryOptions: {
      metrics: {
        prometheus: {
          bindAddress,
          // Prometheus's convention; the SDK's latency histograms would be milliseconds otherwise.
          useSecondsForDurations: true,
          // The SDK's default buckets are milliseconds (50 … 10000): ours are seconds.
          histogramBucketOverrides: Object.fromEntries(METRIC_DEFS.filter((d) => d.kind === 'histogram').map((d) => [d.name, DURATION_BUCKETS])),
        },
      },
    },
  });
  return bindAddress;
}

// Connecting to Temporal from the CLI and the worker: TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE and the
// TLS / API key variables, read by the SDK's own envconfig (profiles in its config file work too).
import { setting } from './settings';
import { loadClientConnectConfig } from '@temporalio/envconfig';

export interface TemporalTarget {
  address: string;
  namespace: string;
  tls?: unknown;
  apiKey?: string;
  metadata?: Record<string, string>;
}

export function temporalTarget(env: NodeJS.ProcessEnv = process.env): TemporalTarget {
  let cfg: ReturnType<typeof loadClientConnectConfig> | undefined;
  try {
    cfg = loadClientConnectConfig({ overrideEnvVars: env as Record<string, string> });
  } catch {
    cfg = undefined;
  }
  const o = (cfg?.connectionOptions ?? {}) as { address?: string; tls?: unknown; apiKey?: string; metadata?: Record<string, string> };
  return {
    address: setting('temporalAddress', env) ?? o.address ?? 'localhost:7233',
    namespace: setting('temporalNamespace', env) ?? cfg?.namespace ?? 'default',
    tls: o.tls,
    apiKey: o.apiKey,
    metadata: o.metadata,
  };
}

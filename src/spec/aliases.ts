// Connection aliases are resolved on the worker only: the spec names an alias, the worker's
// environment holds the connection string. Nothing here may reach a workflow or an error message.
import { failure } from '../domain/failures';

export function envNameForAlias(alias: string): string {
  return `BACKFILL_DB_${alias.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

export function connectionStringFor(alias: string, env: NodeJS.ProcessEnv = process.env): string {
  const value = env[envNameForAlias(alias)];
  if (!value) {
    throw failure('ConfigError', `connection alias "${alias}" is not configured on the worker: set ${envNameForAlias(alias)}`);
  }
  return value;
}

export function aliasIsConfigured(alias: string, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env[envNameForAlias(alias)]);
}

/** Every connection string this process has (BACKFILL_DB_*): what `redact` takes out of every message. */
export function connectionStrings(env: NodeJS.ProcessEnv = process.env): string[] {
  return Object.entries(env).flatMap(([k, v]) => (v && /^BACKFILL_DB_/.test(k) ? [v] : []));
}

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

const CAP_PREFIX = 'BACKFILL_SESSIONS_';

/** The cap on our sessions for one alias (BACKFILL_SESSIONS_<ALIAS>), if set; a value that will not do is said. */
export function sessionCapFor(alias: string, env: NodeJS.ProcessEnv = process.env): number | undefined {
  return capOf(`${CAP_PREFIX}${alias.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`, env);
}

function capOf(name: string, env: NodeJS.ProcessEnv): number | undefined {
  const raw = env[name]?.trim();
  if (!raw) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw failure('ConfigError', `${name} must be an integer from 1 to 10000, not "${raw}"`);
  return n;
}

/** Every BACKFILL_SESSIONS_<ALIAS> that will not do, in a sentence each (the worker checks them before it polls). */
export function sessionCapProblems(env: NodeJS.ProcessEnv = process.env): string[] {
  return Object.keys(env)
    .filter((k) => k.startsWith(CAP_PREFIX))
    .flatMap((k) => {
      try {
        capOf(k, env);
        return [];
      } catch (e) {
        return [(e as Error).message];
      }
    });
}

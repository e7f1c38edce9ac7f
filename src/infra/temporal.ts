// Finding the official Temporal CLI (the dev server with its Web UI) and starting it.
// Order: TEMPORAL_CLI_PATH, then `temporal` on PATH, then the project's cache (built by
// scripts/install-temporal-cli.sh); otherwise the SDK downloads it (where there is internet).
import { executableDirs, setting } from '../settings';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTES, SEARCH_ATTRIBUTE_KEYS } from '../workflows/search-attributes';

function cacheDir(): string {
  return setting('cacheDir');
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function findTemporalCli(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const given = setting('temporalCliPath', env);
  if (given) {
    if (!executable(given)) throw new Error(`TEMPORAL_CLI_PATH=${given} is not an executable file`);
    return given;
  }
  for (const dir of executableDirs(env)) {
    if (executable(join(dir, 'temporal'))) return join(dir, 'temporal');
  }
  const cached = join(cacheDir(), 'bin', 'temporal');
  return executable(cached) ? cached : undefined;
}

export interface DevServerOptions {
  ui?: boolean;
  uiPort?: number;
  port?: number;
  /** a SQLite file: the server's state survives its restart */
  dbFilename?: string;
  /** more `start-dev` flags (tests: `--dynamic-config-value limit.historyCount.suggestContinueAsNew=200`) */
  extraArgs?: string[];
  /** hand a scheduled activity straight to the worker that scheduled it (default on; see SERVER_SETTINGS) */
  eagerActivities?: boolean;
}

/**
 * Server settings the product runs with (the dev server here, docker-compose.yml; the README asks
 * the same of a user's own server). Eager activity execution: a range's activity is handed to the
 * worker in the reply to the workflow task that scheduled it, instead of waiting in the task queue
 * (about 40 ms per range on the dev server). The bench measures it both ways; its figures are in
 * the README ("Running it for real").
 */
export const SERVER_SETTINGS = ['--dynamic-config-value', 'system.enableActivityEagerExecution=true'];

/** Starts `temporal server start-dev` with the contract's search attributes registered. */
export async function startDevServer(o: DevServerOptions = {}): Promise<TestWorkflowEnvironment> {
  const path = findTemporalCli();
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: path ? { type: 'existing-path', path } : undefined,
      ip: '127.0.0.1',
      port: o.port,
      ui: o.ui ?? false,
      uiPort: o.uiPort,
      dbFilename: o.dbFilename,
      extraArgs: [...(o.eagerActivities === false ? [] : SERVER_SETTINGS), ...(o.extraArgs ?? [])],
      searchAttributes: SEARCH_ATTRIBUTE_KEYS,
      log: { format: 'pretty', level: 'error' },
    },
  });
}

/** On a user's own server: register the search attributes if they are missing. */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string | undefined> {
  const KEYWORD = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
  try {
    const have = await connection.operatorService.listSearchAttributes({ namespace });
    const missing = Object.values(SEARCH_ATTRIBUTES).filter((n) => !(have.customAttributes && n in have.customAttributes));
    if (missing.length === 0) return undefined;
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((n) => [n, KEYWORD])),
    });
    return undefined;
  } catch (e) {
    return `could not register search attributes ${Object.values(SEARCH_ATTRIBUTES).join(', ')}: ${(e as Error).message}`;
  }
}

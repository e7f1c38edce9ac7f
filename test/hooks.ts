// The before/after pairs the test files share. Each `use*` registers a setup that starts something
// and returns a handle whose fields are filled once that setup has run: read them in tests and in
// later setups, never at a file's top level. What was started is stopped in one after() (registered
// when this module loads), in the reverse order of starting: a worker or a browser stops before the
// servers, a file's own resource (onTeardown) before what it was built on.
// Setups run one after another in the order they are registered (`setup`): node 20 starts a file's
// top-level before() hooks at once, side by side, so a plain before() cannot count on a handle.
import { after, before } from 'node:test';
import type { Client } from '@temporalio/client';
import type { Browser } from 'playwright-core';
import { launchBrowser } from './helpers/browser';
import { startDatabases, startStack, tempDir, type DatabaseOptions, type Databases, type Prepare, type Stack, type TemporalOptions } from './helpers/stack';
import { spawnWorker, type WorkerProcess } from './helpers/temporal';

const teardowns: (() => unknown)[] = [];

after(async () => {
  let failure: unknown;
  for (let stop = teardowns.pop(); stop; stop = teardowns.pop()) {
    try {
      await stop();
    } catch (e) {
      failure ??= e;
    }
  }
  if (failure !== undefined) throw failure;
});

/** Runs `stop` in after(), before everything started until now stops (call it once the thing exists). */
export function onTeardown(stop: () => unknown): void {
  teardowns.push(stop);
}

let previous: Promise<boolean> = Promise.resolve(true);

/**
 * A before() that runs once every setup registered before it has finished (and not at all after one
 * failed: the tests fail with that one's error).
 */
export function setup(run: () => unknown): void {
  const earlier = previous;
  let done!: (ok: boolean) => void;
  previous = new Promise<boolean>((r) => (done = r));
  before(async () => {
    let ok = false;
    try {
      if (!(await earlier)) return;
      await run();
      ok = true;
    } finally {
      done(ok);
    }
  });
}

interface HookOptions {
  /** set in process.env before anything starts (worker processes inherit it) */
  env?: Record<string, string>;
  /** start nothing: every test of the file skips (no browser on this machine) */
  skip?: string | boolean;
}

/** Options, or a function of them that the setup calls (for what an earlier setup found: a free port). */
type Lazy<O> = O | (() => O);

export type DatabasesHook = Omit<Databases, 'stop'>;

export interface StackHook extends Omit<Stack, 'stop'> {
  /** the dev server's client: temporal.env.client */
  client: Client;
  /** the `backfill worker` processes spawnWorker started; stopped before the stack */
  workers: WorkerProcess[];
  /** one more `backfill worker` child process on the stack's task queue */
  spawnWorker(): Promise<WorkerProcess>;
}

/** PostgreSQL with a database per alias, prepared, its connections in BACKFILL_DB_* (helpers/stack.ts startDatabases). */
export function useDatabases(prepare?: Prepare, options: Lazy<DatabaseOptions & HookOptions> = {}): DatabasesHook {
  const hook = {} as DatabasesHook;
  setup(async () => {
    const o = typeof options === 'function' ? options() : options;
    if (o.skip) return;
    Object.assign(process.env, o.env);
    const { stop, ...dbs } = await startDatabases(prepare, o);
    onTeardown(stop);
    Object.assign(hook, dbs);
  });
  return hook;
}

/** The databases, a Temporal dev server and its workers on `taskQueue` (helpers/stack.ts startStack). */
export function useStack(taskQueue: string, prepare: Prepare, options: Lazy<TemporalOptions & DatabaseOptions & HookOptions> = {}): StackHook {
  const hook = {
    workers: [] as WorkerProcess[],
    async spawnWorker() {
      const w = await spawnWorker(hook.temporal.address, taskQueue);
      hook.workers.push(w);
      return w;
    },
  } as StackHook;
  setup(async () => {
    const o = typeof options === 'function' ? options() : options;
    if (o.skip) return;
    Object.assign(process.env, o.env);
    const { stop, ...stack } = await startStack(taskQueue, prepare, o);
    onTeardown(async () => {
      await Promise.all(hook.workers.map(stopWorker));
      await stop();
    });
    Object.assign(hook, stack, { client: stack.temporal.env.client });
  });
  return hook;
}

/** SIGTERM; a worker that cannot stop within 20 s (an activity hung on a dead connection) is killed. */
async function stopWorker(w: WorkerProcess): Promise<void> {
  const kill = setTimeout(() => void w.kill(), 20_000);
  try {
    await w.stop();
  } finally {
    clearTimeout(kill);
  }
}

/** A temporary folder, made now (its path is there at once), removed in after(). */
export function useTempDir(prefix?: string): { path: string } {
  const tmp = tempDir(prefix);
  onTeardown(tmp.remove);
  return { path: tmp.path };
}

/** The machine's Chromium (helpers/browser.ts), launched unless `skip`. */
export function useBrowser(skip?: string | boolean): { browser?: Browser } {
  const hook: { browser?: Browser } = {};
  setup(async () => {
    if (skip) return;
    hook.browser = await launchBrowser();
    onTeardown(() => hook.browser?.close());
  });
  return hook;
}

// A real Temporal dev server and a worker of ours on it, for one test file.
import { spawn } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { findTemporalCli, startDevServer } from '../../src/infra/temporal';
import { createWorker, workflowSource } from '../../src/worker';
import { approveCutoverUpdate, progressQuery, type MigrationResult, type Progress } from '../../src/workflows/messages';
import { type Phase } from '../../src/domain/phases';
import { isFailure } from '../../src/domain/failures';
import { CLI, ROOT } from './cli';

export function temporalCli(): string {
  const p = findTemporalCli();
  if (!p) throw new Error('no temporal CLI: run `npm run temporal:cli` (builds it with Go) or set TEMPORAL_CLI_PATH');
  return p;
}

export interface TemporalHarness {
  env: TestWorkflowEnvironment;
  address: string;
  workerLog(): string;
  stop(): Promise<void>;
}

export interface WorkerProcess {
  pid: number;
  alive(): boolean;
  log(): string;
  /** SIGKILL: no shutdown, no cleanup, like a crashed machine */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The environment of the workers a test kills (useStack's `env`): a migration's next step waits 2 s,
 * not 10, for the dead worker that had it in memory before another worker takes it. With
 * `retries.heartbeat` (helpers/spec.ts KILLED_WORKER_HEARTBEAT) a kill costs about 6 s, not 15; with
 * the heartbeat alone, that 10 s wait would take back nearly all it saves.
 */
export const KILLED_WORKER_ENV = { BACKFILL_STICKY_TIMEOUT: '2' };

/** `backfill worker` in a child process, as users run it, with this process's BACKFILL_DB_* (and `env`). */
export async function spawnWorker(address: string, taskQueue: string, env: Record<string, string> = {}): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [CLI, 'worker'], {
    env: { ...process.env, ...env, TEMPORAL_ADDRESS: address, BACKFILL_TASK_QUEUE: taskQueue },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d) => {
    log += d;
    // For a post-mortem of a stuck test: BACKFILL_WORKER_LOG=/tmp/workers.log
    if (process.env.BACKFILL_WORKER_LOG) appendFileSync(process.env.BACKFILL_WORKER_LOG, `[${child.pid}] ${d}`);
  });
  const exited = new Promise((r) => child.once('exit', r));
  // The worker says when it polls; a worker that dies at start fails the test here.
  for (let i = 0; i < 300 && !/polling task queue/.test(log); i++) {
    if (child.exitCode !== null) throw new Error(`backfill worker exited: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    pid: child.pid!,
    alive: () => child.exitCode === null && child.signalCode === null,
    log: () => log,
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * A dev server and a worker: in this process, as `backfill worker` child processes (`process`,
 * with `workers` of them), or none (the test starts its own).
 */
export async function startTemporal(
  taskQueue: string,
  o: {
    worker?: 'in-process' | 'process' | 'none';
    workers?: number;
    dbFilename?: string;
    serverArgs?: string[];
    /** serve the Web UI on this port (test/ui.test.ts drives a browser against it) */
    uiPort?: number;
  } = {},
): Promise<TemporalHarness> {
  temporalCli();
  const env = await startDevServer({ dbFilename: o.dbFilename, extraArgs: o.serverArgs, ui: o.uiPort !== undefined, uiPort: o.uiPort });
  if (o.worker === 'process' || o.worker === 'none') {
    const procs = o.worker === 'none' ? [] : await Promise.all(Array.from({ length: o.workers ?? 1 }, () => spawnWorker(env.address, taskQueue)));
    return {
      env,
      address: env.address,
      workerLog: () => procs.map((p) => p.log()).join('\n'),
      async stop() {
        await Promise.all(procs.map((p) => p.stop()));
        await env.teardown();
      },
    };
  }
  const worker = await createWorker({ connection: env.nativeConnection, taskQueue });
  const running = worker.run();
  return {
    env,
    address: env.address,
    workerLog: () => '',
    async stop() {
      worker.shutdown();
      await running.catch(() => undefined);
      await env.teardown();
    },
  };
}

export async function waitForPhase(h: WorkflowHandle, phases: Phase[], timeoutMs = 180_000): Promise<Progress> {
  const end = Date.now() + timeoutMs;
  let last: Progress | undefined;
  while (Date.now() < end) {
    try {
      last = await h.query(progressQuery);
      if (phases.includes(last.phase)) return last;
    } catch {
      /* the first workflow task may not have run yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${phases.join('|')}; last progress: ${JSON.stringify(last)}`);
}

/** Replays a finished workflow's history against the current workflow code; saves it when asked. */
export async function replayAndMaybeRecord(h: WorkflowHandle, name: string): Promise<void> {
  const history = await h.fetchHistory();
  await Worker.runReplayHistory({ ...workflowSource() }, history, h.workflowId);
  if (process.env.BACKFILL_RECORD_HISTORY) {
    // The workflow id is part of what replays: the workflow checks it against the spec name.
    const recorded = { workflowId: h.workflowId, history: JSON.parse(historyToJSON(history)) };
    writeFileSync(join(ROOT, 'test', 'histories', `${name}.json`), JSON.stringify(recorded, null, 1));
  }
}

/**
 * How a migration ended: its result, also for one that was aborted (it ends as a failure of type
 * Aborted, not as Completed: the workflow status is checked too, so that a test that calls this
 * for an abort proves the ending the UI shows).
 */
export async function endingOf(h: WorkflowHandle): Promise<MigrationResult> {
  try {
    return (await h.result()) as MigrationResult;
  } catch (e) {
    const cause = (e as { cause?: { type?: string; details?: unknown[] } }).cause;
    if (!(e instanceof WorkflowFailedError) || !isFailure(cause, 'Aborted')) throw e;
    const status = (await h.describe()).status.name;
    if (status !== 'FAILED') throw new Error(`an aborted migration ended as ${status}`);
    return cause!.details![0] as MigrationResult;
  }
}

/**
 * Approves the digest presented, and again each new digest the migration presents after its final
 * check voided the approval (a partition that changed needs a new checkpoint), until it completes;
 * at most `max` approvals. Returns the digests approved, in order.
 */
export async function approveUntilCompleted(h: WorkflowHandle, digest: string, max = 3): Promise<string[]> {
  const approved: string[] = [];
  for (;;) {
    approved.push(digest);
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest }] });
    // Through the final check: completed, or back at the gate with new evidence.
    let next: Progress = await h.query(progressQuery);
    for (const end = Date.now() + 180_000; Date.now() < end; await new Promise((r) => setTimeout(r, 250))) {
      next = await h.query(progressQuery);
      if (['needs_attention', 'completed', 'failed', 'aborted'].includes(next.phase)) break;
      if (next.phase === 'awaiting_approval' && next.digest && next.digest !== digest) break;
    }
    if (next.phase === 'completed') return approved;
    if (next.phase !== 'awaiting_approval') throw new Error(`after approving ${digest}: ${next.phase}: ${next.detail}`);
    if (approved.length >= max) throw new Error(`${max} approvals and still not completed: ${next.detail}`);
    digest = next.digest!;
  }
}

// `backfill status`: the phase and the ranges of a migration, once or (--watch) until it ends; a
// migration no worker serves is said to be so instead of a query that cannot be answered.
import type { Command } from 'commander';
import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { BadInput } from '../../spec/load';
import { renderProgress } from '../../report/render';
import { progressQuery, type Progress } from '../../workflows/messages';
import { TERMINAL } from '../../domain/phases';
import { phaseKey } from '../../workflows/search-attributes';
import { follow } from '../follow';
import { EXIT, exitFor, type Act } from '../exit';
import { connect } from '../temporal';

/** A worker counts as polling when it asked for work within this (workers poll about once a minute). */
const POLLED_WITHIN_MS = 90_000;

/**
 * When no worker polls the migration's task queue (a running migration cannot answer a query, and
 * moves no further), the sentence that says so with the phase Temporal's search attributes keep;
 * undefined when a worker polls, or the migration has ended (its last state answers from history).
 */
async function noWorkerPolls(client: Client, h: WorkflowHandle): Promise<string | undefined> {
  let d;
  try {
    d = await h.describe();
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) throw new BadInput(`no such migration in Temporal: ${h.workflowId}`);
    throw e;
  }
  if (d.status.name !== 'RUNNING') return undefined;
  const { pollers } = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: d.taskQueue },
    taskQueueType: 1, // workflow tasks: the ones a query needs
  });
  const now = Date.now();
  const alive = (pollers ?? []).some((p) => {
    const at = p.lastAccessTime?.seconds;
    return at != null && now - Number(at) * 1000 < POLLED_WITHIN_MS;
  });
  if (alive) return undefined;
  const phase = d.typedSearchAttributes.get(phaseKey);
  return [
    `${h.workflowId}: running in Temporal${phase ? `, last phase ${String(phase)}` : ''}; no worker polls its task queue "${d.taskQueue}" (namespace ${client.options.namespace}), so it cannot answer and does not move on.`,
    `  start one where the BACKFILL_DB_<ALIAS> connections are set: backfill worker (with BACKFILL_TASK_QUEUE=${d.taskQueue} if that is not the default)`,
  ].join('\n');
}

export function registerStatus(program: Command, act: Act): void {
  program
    .command('status')
    .argument('<name>', 'the migration name')
    .option('--watch', 'keep showing progress until the migration ends')
    .option('--interval <seconds>', 'with --watch, how often to ask for progress (0.1 to 60)', '1')
    .description('show the phase and the ranges of a migration')
    .action(
      act(async (name: string, o: { watch?: boolean; interval: string }) => {
        const every = Number(o.interval);
        if (!(every >= 0.1 && every <= 60)) throw new BadInput(`--interval must be a number of seconds from 0.1 to 60, not "${o.interval}"`);
        const client = await connect();
        const h = client.workflow.getHandle(name);
        // A query needs a worker: without one, say so, and what Temporal itself knows.
        const idle = await noWorkerPolls(client, h);
        if (idle) {
          console.log(idle);
          return EXIT.red;
        }
        if (o.watch) {
          const p = await follow(h, { everyMs: every * 1000 });
          console.log(renderProgress(p));
          return TERMINAL.includes(p.phase) ? exitFor(p) : EXIT.ok;
        }
        const p: Progress = await h.query(progressQuery);
        console.log(renderProgress(p));
        return p.phase === 'failed' || p.phase === 'aborted' ? EXIT.red : EXIT.ok;
      }),
    );
}

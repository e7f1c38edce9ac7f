// The worker: polls the task queue, runs the migration workflow and its activities. Connection
// strings come from BACKFILL_DB_<ALIAS> here and nowhere else.
import { setting, settingProblems } from './settings';
import { BadInput } from './spec/load';
import { sessionCapProblems } from './spec/aliases';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import * as activities from './activities';
import { closePools } from './db/pools';
import { Client, Connection } from '@temporalio/client';
import { temporalTarget } from './client';
import { ensureSearchAttributes } from './infra/temporal';
import { appendAudit } from './gate/cutover';
import { auditRecordedSignal, type AuditSinks } from './workflows/messages';
import type { InjectedSinks } from '@temporalio/worker';
import { installMetrics } from './metrics/runtime';
import { PlainFailures } from './activities/failures';
import { metricSinks } from './metrics/meter';
import { attemptMetrics } from './metrics/attempts';

/**
 * Refused approvals and rejections, recorded in the ledger's audit by the worker (a validator cannot
 * run activities), then told to the migration (the `auditRecorded` signal) so that its report shows
 * them at once. The ledger is the record; the signal is best effort.
 */
function auditSinks(connection: NativeConnection, namespace: string): InjectedSinks<AuditSinks> {
  const client = new Client({ connection, namespace });
  return {
    audit: {
      refused: {
        fn: async (info, e) => {
          const { control, reason, ...entry } = e;
          let at: string;
          try {
            at = await appendAudit({ control, target: control }, { ...entry, detail: { reason } });
          } catch (err) {
            console.error(`backfill worker: could not record a refused ${e.action} in the audit: ${(err as Error).message}`);
            return;
          }
          const record = { at, action: e.action, ...(e.actor ? { actor: e.actor } : {}), ...(e.digest ? { digest: e.digest } : {}), note: reason };
          await client.workflow
            .getHandle(info.workflowId, info.runId)
            .signal(auditRecordedSignal, record)
            .catch((err: Error) =>
              console.error(
                `backfill worker: the refused ${e.action} is in the audit, but the migration's report will show it only when it is built again: ${err.message}`,
              ),
            );
        },
        callDuringReplay: false,
      },
    },
  };
}

export const DEFAULT_TASK_QUEUE = 'backfill';

/** The workflow code: the bundle `npm run build` made, else bundled now from the sources. */
export function workflowSource(): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  const bundle = join(__dirname, '..', 'workflow-bundle.js');
  if (existsSync(bundle) && !setting('bundleAtStart')) return { workflowBundle: { codePath: bundle } };
  return { workflowsPath: require.resolve('./workflows') };
}

export interface WorkerSetup {
  connection: NativeConnection;
  namespace?: string;
  taskQueue?: string;
  identity?: string;
}

export async function createWorker(o: WorkerSetup): Promise<Worker> {
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace ?? 'default',
    taskQueue: o.taskQueue ?? setting('taskQueue'),
    ...(o.identity ? { identity: o.identity } : {}),
    ...workflowSource(),
    activities,
    sinks: { ...auditSinks(o.connection, o.namespace ?? 'default'), ...metricSinks() },
    // Outermost first: the attempt metrics count the failure as it leaves (plain, classified).
    interceptors: { activity: [attemptMetrics, (ctx) => ({ inbound: new PlainFailures(ctx.info.activityType, ctx.cancellationSignal) })] },
    maxConcurrentActivityTaskExecutions: setting('maxActivities'),
    stickyQueueScheduleToStartTimeout: setting('stickyTimeout') * 1000,
    shutdownGraceTime: '10 seconds',
  });
}

/** `backfill worker` and `node dist/src/worker.js`: run until SIGINT/SIGTERM. */
export async function runWorker(): Promise<void> {
  // Every setting checked before anything starts: a value that will not do is said, all of them at once.
  const problems = [...settingProblems(), ...sessionCapProblems()];
  if (problems.length) throw new BadInput(`the worker's environment will not do (${problems.length} setting${problems.length === 1 ? '' : 's'})`, problems);
  // Before any connection: the SDK's runtime is created once per process, with its exporter.
  const metrics = installMetrics();
  if (metrics) console.error(`backfill worker: Prometheus metrics on http://${metrics}/metrics`);
  const t = temporalTarget();
  const connection = await NativeConnection.connect({
    address: t.address,
    tls: t.tls as never,
    apiKey: t.apiKey,
    metadata: t.metadata,
  });
  try {
    // The UI filters migrations by these; register them if the server lacks them.
    const admin = await Connection.connect({ address: t.address, tls: t.tls as never, apiKey: t.apiKey, metadata: t.metadata });
    const warning = await ensureSearchAttributes(admin, t.namespace);
    await admin.close();
    if (warning)
      console.error(
        `backfill worker: ${warning}; add them once with: temporal operator search-attribute create --name BackfillMigration --type Keyword (and BackfillPhase, BackfillAttention)`,
      );
    const worker = await createWorker({ connection, namespace: t.namespace });
    console.error(`backfill worker: polling task queue "${worker.options.taskQueue}" on ${t.address} (namespace ${t.namespace})`);
    await worker.run();
  } finally {
    await connection.close();
    await closePools();
  }
}

if (require.main === module) {
  runWorker().catch((e) => {
    const problems = e instanceof BadInput ? e.problems.map((p) => `\n  ${p}`).join('') : '';
    console.error(`backfill worker: ${(e as Error).message}${problems}`);
    process.exit(e instanceof BadInput ? 2 : 1);
  });
}

// `backfill start`: the migration's workflow started under the spec's name, and with --wait followed to its end.
import type { Command } from 'commander';
import { WorkflowExecutionAlreadyStartedError, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { BadInput } from '../../spec/load';
import { migrationKey, phaseKey } from '../../workflows/search-attributes';
import { backfillMigration } from '../../workflows/migration';
import { follow } from '../follow';
import { startDetails, startSummary } from '../summary';
import { EXIT, exitFor, type Act } from '../exit';
import { connect, finalResult } from '../temporal';
import { specOrExit } from './validate';

export function registerStart(program: Command, act: Act): void {
  program
    .command('start')
    .argument('<spec>', 'the migration spec, YAML or JSON')
    .option('--wait', 'follow the migration until it ends')
    .description('start a migration (workflow id = the spec name)')
    .action(
      act(async (file: string, o: { wait?: boolean }) => {
        const spec = specOrExit(file);
        const client = await connect();
        let h: WorkflowHandleWithFirstExecutionRunId;
        try {
          h = await client.workflow.start(backfillMigration, {
            taskQueue: spec.taskQueue,
            workflowId: spec.name,
            args: [spec],
            workflowIdConflictPolicy: 'FAIL',
            workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
            typedSearchAttributes: [
              { key: migrationKey, value: spec.name },
              { key: phaseKey, value: 'planning' },
            ],
            // What the Temporal UI shows at the top of the workflow, from the start.
            staticSummary: startSummary(spec),
            staticDetails: startDetails(spec),
          });
        } catch (e) {
          if (e instanceof WorkflowExecutionAlreadyStartedError)
            throw new BadInput(
              `migration "${spec.name}" already exists (running, or completed under this name); pick another name or follow it with: backfill status ${spec.name} --watch`,
            );
          throw e;
        }
        console.log(`started migration ${spec.name} (run ${h.firstExecutionRunId}) on task queue ${spec.taskQueue}`);
        if (!o.wait) return EXIT.ok;
        await follow(h);
        const r = await finalResult(h);
        console.log(r.phase === 'completed' ? `completed: switched at ${r.switchedAt}` : `${r.phase}: ${r.reason ?? ''}`);
        return exitFor(r);
      }),
    );
}

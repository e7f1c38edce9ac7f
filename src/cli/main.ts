// The `backfill` command: a Temporal client for operators. Exit codes: 0 done, 1 the migration is
// red or failed, 2 bad input, 130 a watch stopped with Ctrl-C. A user mistake prints a message, never
// a stack trace.
import { setting } from '../settings';
import { Command, CommanderError } from 'commander';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { BadInput } from '../spec/load';
import { redact } from '../db/redact';
import { Interrupted } from './follow';
import { EXIT, type Act } from './exit';
import { registerValidate } from './commands/validate';
import { registerStart } from './commands/start';
import { registerStatus } from './commands/status';
import { registerReport } from './commands/report';
import { registerAbort, registerApprove, registerFinish, registerPauseAndResume, registerReject, registerRerun, registerSwitchBack } from './commands/steer';
import { registerDemo, registerInit, registerWorker } from './commands/local';

let exitCode: number = EXIT.ok;
/** Each action returns its exit code; commander itself does not carry it. */
const act: Act =
  <A extends unknown[]>(fn: (...a: A) => Promise<number>) =>
  async (...a: A): Promise<void> => {
    exitCode = await fn(...a);
  };

export function buildProgram(): Command {
  const program = new Command('backfill').description('Durable, reconciled PostgreSQL backfills on Temporal').showHelpAfterError().exitOverride();
  // In this order in the help.
  for (const register of [
    registerValidate,
    registerStart,
    registerStatus,
    registerReport,
    registerApprove,
    registerReject,
    registerRerun,
    registerPauseAndResume,
    registerAbort,
    registerSwitchBack,
    registerFinish,
    registerInit,
    registerWorker,
    registerDemo,
  ])
    register(program, act);
  return program;
}

function explain(e: unknown): { code: number; text: string } {
  if (e instanceof BadInput) return { code: EXIT.badInput, text: [e.message, ...e.problems.map((p) => `  ${p}`)].join('\n') };
  if (e instanceof Interrupted) return { code: EXIT.interrupted, text: e.message };
  if (e instanceof WorkflowNotFoundError) return { code: EXIT.badInput, text: `no such migration: ${e.workflowId ?? ''}`.trim() };
  if (e instanceof WorkflowUpdateFailedError) {
    const why = e.cause?.message ?? e.message;
    return { code: EXIT.badInput, text: `refused: ${why}` };
  }
  const err = e as { name?: string; message?: string; cause?: { message?: string } };
  if (err?.name === 'QueryNotRegisteredError' || /not found/i.test(err?.message ?? '')) return { code: EXIT.badInput, text: redact(err.message ?? String(e)) };
  return { code: EXIT.red, text: redact(err?.message ?? String(e)) };
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  let code: number = EXIT.ok;
  try {
    await program.parseAsync(argv);
    code = exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      code = e.exitCode === 0 ? EXIT.ok : EXIT.badInput;
    } else {
      const { code: c, text } = explain(e);
      console.error(`backfill: ${text}`);
      if (setting('debug')) console.error(e);
      code = c;
    }
  }
  process.exit(code);
}

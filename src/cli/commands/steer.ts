// The commands that tell a running migration what to do: approve or reject the cutover, rerun ranges,
// pause, resume, abort. A migration that has ended is refused with how it ended.
import type { Command } from 'commander';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { createInterface } from 'node:readline/promises';
import { BadInput } from '../../spec/load';
import { approvalSummary, reverseLine } from '../../report/render';
import type { Report } from '../../domain/report';
import {
  abortSignal,
  approveCutoverUpdate,
  finishUpdate,
  switchBackUpdate,
  pauseSignal,
  progressQuery,
  rejectCutoverUpdate,
  reportQuery,
  rerunUpdate,
  resumeSignal,
  type Progress,
} from '../../workflows/messages';
import { EXIT, type Act } from '../exit';
import { connect, refuseIfEnded, whileRunning } from '../temporal';

/** A rerun refused for its table or ranges: the refusal, and the tables with the ranges each has. */
async function rerunRefused(h: WorkflowHandle, e: unknown): Promise<never> {
  const why = e instanceof WorkflowUpdateFailedError ? (e.cause?.message ?? e.message) : undefined;
  if (why === undefined || !/^no (table|range) /.test(why)) throw e;
  const p: Progress = await h.query(progressQuery);
  const ranges = (n: number) => (n === 0 ? 'no ranges' : n === 1 ? '--range 0' : `--range 0 to ${n - 1}`);
  throw new BadInput(
    `refused: ${why}. The tables of ${h.workflowId} (--table takes the source or the target name; without it, every table):`,
    p.tables.map((t) => `${t.source} → ${t.target}: ${ranges(t.ranges.total)}`),
  );
}

/** A yes-or-no question on the terminal; only "y" or "yes" is a yes. */
async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^(y|yes)$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export function registerApprove(program: Command, act: Act): void {
  program
    .command('approve')
    .argument('<name>', 'the migration name')
    .requiredOption('--as <who>', 'who approves (checked against cutover.approvers)')
    .option('--digest <digest>', 'the digest you reviewed (backfill report <name>); refused unless it is the evidence presented now')
    .option('--comment <text>', 'a note kept with the approval')
    .option('--yes', 'without --digest: approve the digest presented now without asking (needed when standard input is not a terminal)')
    .description(
      'approve the cutover: with --digest, exactly that evidence; without it, shows the digest and summary presented now and asks before approving them',
    )
    .action(
      act(async (name: string, o: { as: string; digest?: string; comment?: string; yes?: boolean }) => {
        const h = (await connect()).workflow.getHandle(name);
        await refuseIfEnded(h, 'approved');
        let digest = o.digest;
        if (digest === undefined) {
          // Approving what is presented, unseen, must be asked for: a question on a terminal, or --yes.
          if (!o.yes && !process.stdin.isTTY)
            throw new BadInput(
              `approve needs --digest <the digest you reviewed> (read the report: backfill report ${name}), or --yes to approve whatever evidence is presented now; standard input is not a terminal, so it cannot ask`,
            );
          const r: Report = await h.query(reportQuery);
          digest = r.digest;
          // Nothing presented: the workflow says why (and audits the attempt); nothing to ask about.
          if (r.phase === 'awaiting_approval' && r.digest) {
            console.log(approvalSummary(r));
            if (!o.yes && !(await confirm(`approve digest ${r.digest} as ${o.as}? [y/N] `))) {
              console.log('not approved');
              return EXIT.red;
            }
          }
        }
        // Every attempt goes to the workflow: its validator decides, and a refusal is audited.
        const res = await whileRunning(h, 'approved', () => h.executeUpdate(approveCutoverUpdate, { args: [{ approver: o.as, digest, comment: o.comment }] }));
        console.log(`approved digest ${digest} as ${o.as} at ${res.approvedAt}`);
        return EXIT.ok;
      }),
    );
}

export function registerReject(program: Command, act: Act): void {
  program
    .command('reject')
    .argument('<name>', 'the migration name')
    .requiredOption('--as <who>', 'who rejects')
    .requiredOption('--reason <text>', 'why')
    .description('reject the evidence presented for cutover; the migration waits for a rerun or an abort')
    .action(
      act(async (name: string, o: { as: string; reason: string }) => {
        const h = (await connect()).workflow.getHandle(name);
        const res = await whileRunning(h, 'rejected', () => h.executeUpdate(rejectCutoverUpdate, { args: [{ approver: o.as, reason: o.reason }] }));
        console.log(`rejected at ${res.rejectedAt}`);
        return EXIT.ok;
      }),
    );
}

export function registerRerun(program: Command, act: Act): void {
  program
    .command('rerun')
    .argument('<name>', 'the migration name')
    .option('--table <table>', 'the source or target table the ranges belong to (default: every table)')
    .requiredOption('--range <n...>', 'range indexes to copy and verify again')
    .description('copy and verify again exactly these ranges; nothing outside them is rewritten')
    .action(
      act(async (name: string, o: { table?: string; range: string[] }) => {
        const ranges = o.range.flatMap((s) => s.split(',')).map((s) => Number(s));
        if (ranges.some((n) => !Number.isInteger(n) || n < 0))
          throw new BadInput(`--range takes range indexes (non-negative integers), got ${o.range.join(' ')}`);
        const h = (await connect()).workflow.getHandle(name);
        const res = await whileRunning(h, 'rerun', () => h.executeUpdate(rerunUpdate, { args: [{ table: o.table, ranges }] })).catch((e: unknown) =>
          rerunRefused(h, e),
        );
        console.log(`${res.ranges} range(s) queued to be copied and verified again`);
        return EXIT.ok;
      }),
    );
}

export function registerPauseAndResume(program: Command, act: Act): void {
  for (const [cmd, what] of [
    ['pause', 'stop starting new ranges (ranges in flight finish)'],
    ['resume', 'start ranges again after a pause'],
  ] as const) {
    program
      .command(cmd)
      .argument('<name>', 'the migration name')
      .description(what)
      .action(
        act(async (name: string) => {
          const h = (await connect()).workflow.getHandle(name);
          await whileRunning(h, cmd === 'pause' ? 'paused' : 'resumed', () => h.signal(cmd === 'pause' ? pauseSignal : resumeSignal));
          console.log(`${cmd} sent to ${name}`);
          return EXIT.ok;
        }),
      );
  }
}

export function registerAbort(program: Command, act: Act): void {
  program
    .command('abort')
    .argument('<name>', 'the migration name')
    .option('--reason <text>', 'why', 'aborted by an operator')
    .description('stop the migration: ranges in flight finish, nothing is switched')
    .action(
      act(async (name: string, o: { reason: string }) => {
        const h = (await connect()).workflow.getHandle(name);
        await whileRunning(h, 'aborted', () => h.signal(abortSignal, { reason: o.reason }));
        console.log(`abort sent to ${name}`);
        return EXIT.ok;
      }),
    );
}

export function registerFinish(program: Command, act: Act): void {
  program
    .command('finish')
    .argument('<name>', 'the migration name')
    .requiredOption('--as <who>', 'who finishes (the audit names them)')
    .option('--reason <text>', 'why', 'finished by an operator')
    .description(
      'phase switched (cutover.reverse): end the way back; the stream from the target stops, its slot and publication on the target are dropped, authority stays on the target',
    )
    .action(
      act(async (name: string, o: { as: string; reason: string }) => {
        const h = (await connect()).workflow.getHandle(name);
        const res = await whileRunning(h, 'finished', () => h.executeUpdate(finishUpdate, { args: [{ actor: o.as, reason: o.reason }] }));
        console.log(`finish of the way back accepted at ${res.finishedAt}; the migration completes once its slot and publication are dropped`);
        return EXIT.ok;
      }),
    );
}

export function registerSwitchBack(program: Command, act: Act): void {
  program
    .command('switch-back')
    .argument('<name>', 'the migration name')
    .requiredOption('--as <who>', 'who approves (checked against cutover.approvers)')
    .option('--digest <digest>', "the digest of the way back's evidence you reviewed (backfill status <name>); refused unless it is the one presented now")
    .option('--comment <text>', 'a note kept with the approval')
    .option('--yes', 'without --digest: approve the way back presented now without asking (needed when standard input is not a terminal)')
    .description(
      'phase switched (cutover.reverse): switch authority back to the source; the target is frozen, its last changes applied to the source and proven, then cutover.reverse.switch runs once',
    )
    .action(
      act(async (name: string, o: { as: string; digest?: string; comment?: string; yes?: boolean }) => {
        const h = (await connect()).workflow.getHandle(name);
        await refuseIfEnded(h, 'switched back');
        let digest = o.digest;
        if (digest === undefined) {
          if (!o.yes && !process.stdin.isTTY)
            throw new BadInput(
              `switch-back needs --digest <the digest you reviewed> (backfill status ${name} shows it), or --yes to approve the way back presented now; standard input is not a terminal, so it cannot ask`,
            );
          const p: Progress = await h.query(progressQuery);
          digest = p.reverse?.digest;
          if (p.phase === 'switched' && p.reverse && digest) {
            console.log(reverseLine(p.reverse));
            if (!o.yes && !(await confirm(`switch back to the source, approving digest ${digest} as ${o.as}? [y/N] `))) {
              console.log('not switched back');
              return EXIT.red;
            }
          }
        }
        const res = await whileRunning(h, 'switched back', () =>
          h.executeUpdate(switchBackUpdate, { args: [{ approver: o.as, digest: digest ?? '', comment: o.comment }] }),
        );
        console.log(`switch back approved (digest ${digest ?? ''}) as ${o.as} at ${res.approvedAt}; backfill status ${name} --watch follows it`);
        return EXIT.ok;
      }),
    );
}

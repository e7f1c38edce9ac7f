// The `backfill` command: a Temporal client for operators. Exit codes: 0 done, 1 the migration is
// red or failed, 2 bad input, 130 a watch stopped with Ctrl-C. A user mistake prints a message, never
// a stack trace.
import { setting } from '../settings';
import { Command, CommanderError, Option } from 'commander';
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { BadInput, loadSpecFile } from '../spec/load';
import { aliasIsConfigured, envNameForAlias } from '../spec/aliases';
import { controlAlias, type MigrationSpec, type TableSpec } from '../spec/schema';
import { redact } from '../db/redact';
import { temporalTarget } from '../client';
import { approvalSummary, renderMarkdown, renderProgress } from '../report/render';
import { renderHtml } from '../report/html';
import { lastKeptReport } from '../report/build';
import { endingOf, verdictLine, type Ending, type Report } from '../domain/report';
import {
  abortSignal,
  approveCutoverUpdate,
  pauseSignal,
  progressQuery,
  rejectCutoverUpdate,
  reportQuery,
  rerunUpdate,
  resumeSignal,
  type MigrationResult,
  type Progress,
} from '../workflows/messages';
import { TERMINAL } from '../domain/phases';
import { migrationKey, phaseKey } from '../workflows/search-attributes';
import { isFailure } from '../domain/failures';
import { backfillMigration } from '../workflows/migration';
import { Interrupted, follow } from './follow';
import { constraintsToSetAside, estimatePlan, type PlanEstimate } from '../plan/plan';
import { preflight } from '../plan/preflight';
import type { ForeignKey } from '../db/catalog';
import type { Binding } from '../plan/binding';
import { describeColumn, summariseColumns } from '../domain/columns';
import { checkedLines, checkedRoles, type PrivilegeReport } from '../plan/privileges';
import { parseTableRef, showName, type TableRef } from '../spec/names';
import { expandTables } from '../plan/expand';
import { enforcePolicy } from '../plan/trust';
import { closePools, poolFor } from '../db/pools';
import { runWorker } from '../worker';
import { runDemo } from './demo';
import { startDetails, startSummary } from './summary';
import { initSpec } from './init';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';

export const EXIT = { ok: 0, red: 1, badInput: 2, interrupted: 130 } as const;

async function connect(): Promise<Client> {
  const t = temporalTarget();
  try {
    const connection = await Connection.connect({ address: t.address, tls: t.tls as never, apiKey: t.apiKey, metadata: t.metadata });
    return new Client({ connection, namespace: t.namespace });
  } catch (e) {
    throw new Error(`cannot reach Temporal at ${t.address}: ${(e as Error).message} (set TEMPORAL_ADDRESS)`);
  }
}

function specOrExit(file: string): MigrationSpec {
  const r = loadSpecFile(file);
  if (!r.ok) throw new BadInput(`${file}: the spec is not valid`, r.problems);
  return r.spec;
}

async function finalResult(h: WorkflowHandle): Promise<MigrationResult | { phase: 'failed'; reason: string }> {
  try {
    return (await h.result()) as MigrationResult;
  } catch (e) {
    const cause = (e as { cause?: { message?: string; type?: string; details?: unknown[] } }).cause;
    // An aborted migration ends as a failure of type Aborted, its result in the details.
    if (isFailure(cause, 'Aborted') && cause?.details?.[0]) return cause.details[0] as MigrationResult;
    return { phase: 'failed', reason: redact(cause?.message ?? (e as Error).message) };
  }
}

/** How a closed workflow ended: completed, or an Ending. */
type Closed = Ending | { phase: 'completed'; switchedAt?: string };

/**
 * How a closed workflow ended, or undefined while it runs: completed, an abort (a failure of type
 * Aborted, its result in the details; Canceled before that was patched), a failure, a termination.
 */
async function closedAs(h: WorkflowHandle): Promise<Closed | undefined> {
  const status = (await h.describe()).status.name;
  if (!['COMPLETED', 'FAILED', 'CANCELLED', 'TERMINATED', 'TIMED_OUT'].includes(status)) return undefined;
  if (status === 'TERMINATED') return { phase: 'failed', reason: 'terminated in Temporal, with nothing cleaned up' };
  if (status === 'TIMED_OUT') return { phase: 'failed', reason: 'timed out in Temporal' };
  if (status === 'CANCELLED') return { phase: 'aborted', reason: 'cancelled through Temporal' };
  const r = await finalResult(h);
  if (r.phase === 'aborted') return { phase: 'aborted', reason: r.reason ?? 'by an operator' };
  if (r.phase === 'completed') return { phase: 'completed', switchedAt: 'switchedAt' in r ? r.switchedAt : undefined };
  return { phase: 'failed', reason: r.reason ?? 'the migration failed' };
}

/** How a closed workflow ended, when that is not a completed migration. */
async function endingInTemporal(h: WorkflowHandle): Promise<Ending | undefined> {
  const c = await closedAs(h);
  return c && c.phase !== 'completed' ? c : undefined;
}

/** A migration that has ended cannot be told anything: bad input, saying how it ended. */
async function refuseIfEnded(h: WorkflowHandle, cannotBe: string): Promise<void> {
  const c = await closedAs(h);
  if (!c) return;
  // A reason of several lines (a spec that does not match the databases, problem by problem) follows the sentence.
  const why = c.phase === 'completed' ? [] : c.reason.split('\n').map((l) => l.trimEnd());
  const how =
    c.phase === 'completed' ? `completed${c.switchedAt ? `, switched at ${c.switchedAt}` : ''}` : why.length === 1 ? `${c.phase}: ${why[0]}` : c.phase;
  throw new BadInput(
    `${h.workflowId} has ended (${how}); it cannot be ${cannotBe} any more. What it left: backfill report ${h.workflowId}`,
    why.length > 1 ? why : [],
  );
}

/**
 * Sends a signal or an update to a migration that runs; one that has ended (before, or while this
 * was sent: Temporal then says "not found") is named as ended, with how it ended.
 */
async function whileRunning<T>(h: WorkflowHandle, cannotBe: string, send: () => Promise<T>): Promise<T> {
  await refuseIfEnded(h, cannotBe);
  try {
    return await send();
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) await refuseIfEnded(h, cannotBe);
    throw e;
  }
}

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

async function reportFromTemporal(name: string): Promise<Report> {
  const h = (await connect()).workflow.getHandle(name);
  try {
    const [r, ending] = await Promise.all([h.query(reportQuery), endingInTemporal(h)]);
    // A migration that stopped reads as its ending, never as the green of the evidence it stopped at.
    return ending ? { ...r, phase: ending.phase, verdict: 'red', ending } : r;
  } catch (e) {
    if (e instanceof WorkflowNotFoundError)
      throw new BadInput(
        `no such migration in Temporal: ${name}. If it ended longer ago than the namespace keeps workflows, the ledger still has its reports: backfill report ${name} --ledger <alias> (its control connection, with BACKFILL_DB_<ALIAS> set in this shell)`,
      );
    throw e;
  }
}

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

/** The CLI reads a database only when told to, and only through a connection this shell has. */
async function reportFromLedger(alias: string, name: string): Promise<Report> {
  if (!aliasIsConfigured(alias)) throw new BadInput(`${envNameForAlias(alias)} is not set: --ledger ${alias} reads the report from that connection's ledger`);
  let r: Report | undefined;
  try {
    r = await lastKeptReport(poolFor(alias, 'read'), name);
  } catch (e) {
    // No ledger on that database at all: no migration kept its evidence there.
    if ((e as { code?: string }).code !== '42P01') throw new Error(`reading the ledger on ${alias}: ${redact((e as Error).message)}`);
  } finally {
    await closePools();
  }
  if (!r) throw new BadInput(`the ledger on ${alias} keeps no report of migration "${name}"`);
  return r;
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

function exitFor(r: { phase: string }): number {
  return r.phase === 'completed' ? EXIT.ok : EXIT.red;
}

let exitCode: number = EXIT.ok;
/** Each action returns its exit code; commander itself does not carry it. */
const act =
  <A extends unknown[]>(fn: (...a: A) => Promise<number>) =>
  async (...a: A): Promise<void> => {
    exitCode = await fn(...a);
  };

/** The names of a table entry that had no schema, found through the search path: said next to what they resolved to. */
function searchPathNote(t: TableSpec): string {
  const bare = [t.source, t.target].flatMap((r) => {
    const n = parseTableRef(r as TableRef);
    return n && !n.schema ? [showName(n.table.name)] : [];
  });
  return bare.length ? ` (${bare.join(' and ')} found through the search path)` : '';
}

const megabytes = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`;

export function buildProgram(): Command {
  const program = new Command('backfill').description('Durable, reconciled PostgreSQL backfills on Temporal').showHelpAfterError().exitOverride();

  program
    .command('validate')
    .argument('<spec>', 'the migration spec, YAML or JSON')
    .option('--no-db', 'check the spec only, not the databases')
    .description('check a spec, and (where this shell has the BACKFILL_DB_<ALIAS> connections) check it against the databases')
    .action(
      act(async (file: string, o: { db: boolean }) => {
        const spec = specOrExit(file);
        console.log(`${file}: the spec is valid (${spec.tables.length} table${spec.tables.length === 1 ? '' : 's'}, mode ${spec.mode})`);
        const aliases = [...new Set([spec.source, spec.target, controlAlias(spec)])];
        const missing = aliases.filter((a) => !aliasIsConfigured(a));
        if (!o.db) return EXIT.ok;
        if (missing.length) {
          console.log(`databases not checked here: ${missing.map(envNameForAlias).join(', ')} not set (the worker checks them before any row is written)`);
          return EXIT.ok;
        }
        let plans: PlanEstimate[];
        let fks: ForeignKey[];
        let bindings: Binding[];
        let privileges: PrivilegeReport | undefined;
        let tables: TableSpec[];
        try {
          // This shell's worker policy (BACKFILL_POLICY…), if any: the worker applies its own.
          enforcePolicy(spec);
          // Schema patterns stand for the tables they select: each is checked on its own.
          tables = await expandTables(spec);
          const expanded = { ...spec, tables };
          bindings = await preflight(expanded, { probeValues: true, privileges: (r) => (privileges = r) });
          plans = await estimatePlan(expanded, bindings);
          fks = spec.mode === 'copy' ? await constraintsToSetAside(expanded, bindings) : [];
        } catch (e) {
          throw new BadInput(redact((e as Error).message));
        } finally {
          await closePools();
        }
        console.log('the databases match the spec: tables, columns, key, privileges and the source query all check out');
        console.log('the tables, as the databases resolve their names:');
        for (const [i, b] of bindings.entries()) console.log(`  ${b.sourceName} → ${b.targetName}${searchPathNote(tables[i])}`);
        if (privileges) {
          console.log(`privileges: checked for ${checkedRoles(privileges)}; each right the migration uses, asked of the server:`);
          for (const l of checkedLines(privileges)) console.log(`  ${l}`);
          if (privileges.unchecked.length) {
            console.log('not checked:');
            for (const u of privileges.unchecked) console.log(`  ${u}`);
          }
        }
        console.log("the columns (every source column copied or left out by name; every cast and transform evaluated over all the source's rows):");
        for (const b of bindings) {
          console.log(`  ${b.sourceName} -> ${b.targetName}: ${summariseColumns(b.columnPlan)}`);
          for (const c of b.columnPlan) console.log(`    ${describeColumn(c)}`);
        }
        console.log("the plan (row counts are the planner's estimates; nothing was written):");
        for (const p of plans) {
          const rows = p.rows === null ? 'rows unknown (never analyzed)' : `~${p.rows.toLocaleString('en-US')} rows`;
          console.log(`  ${p.table}: ${p.rangeCount.toLocaleString('en-US')} range(s), ${p.ranges}; ${rows}, ${megabytes(p.bytes)}`);
        }
        if (fks.length) {
          console.log('foreign keys on the target, set aside while ranges are written (kept in the ledger), re-created and validated once the data is proven:');
          for (const f of fks) console.log(`  ${f.name} on ${f.owner} -> ${f.referenced}${f.valid ? '' : ' (NOT VALID now: re-created NOT VALID, as it was)'}`);
        }
        return EXIT.ok;
      }),
    );

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

  program
    .command('report')
    .argument('<name>', 'the migration name')
    .addOption(new Option('--format <format>', 'md, json or html (one self-contained page)').choices(['md', 'json', 'html']).default('md'))
    .option('-o, --output <file>', 'write the report to this file instead of standard output')
    .option(
      '--ledger <alias>',
      "read the last report the ledger keeps (backfill.reports) on this connection instead of asking Temporal, for a migration past Temporal's retention; BACKFILL_DB_<ALIAS> must be set here",
    )
    .description('print the reconciliation report')
    .action(
      act(async (name: string, o: { format: 'md' | 'json' | 'html'; output?: string; ledger?: string }) => {
        const r = o.ledger ? await reportFromLedger(o.ledger, name) : await reportFromTemporal(name);
        const text =
          o.format === 'json'
            ? `${JSON.stringify(r, null, 2)}\n`
            : o.format === 'html'
              ? renderHtml(r, { from: o.ledger ? 'ledger' : 'temporal' })
              : `${renderMarkdown(r)}\n`;
        if (o.output) {
          try {
            writeFileSync(o.output, text);
          } catch (e) {
            const code = (e as NodeJS.ErrnoException).code;
            throw new BadInput(
              `cannot write ${o.output}: ${code === 'ENOENT' ? 'its folder does not exist' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : (e as Error).message}`,
            );
          }
          console.error(`wrote the report of ${name} (${verdictLine(r)}) to ${o.output}`);
        } else process.stdout.write(text);
        return r.verdict === 'green' && !endingOf(r) ? EXIT.ok : EXIT.red;
      }),
    );

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

  program
    .command('init')
    .description('write a spec for every table of a schema, from the source catalog (keys, checks), to edit and then validate')
    .requiredOption('--schema <name>', 'the source schema')
    .option('--source <alias>', 'the source connection alias (BACKFILL_DB_<ALIAS> must be set here)', 'source')
    .option('--target <alias>', 'the target connection alias', 'target')
    .option('--target-schema <name>', 'the schema of the target tables (default: the same name)')
    .option('--name <name>', 'the migration name (default: <schema>-migration)')
    .option('-o, --output <file>', 'write the spec to this file instead of standard output')
    .action(
      act(async (o: { schema: string; source: string; target: string; targetSchema?: string; name?: string; output?: string }) => {
        if (!aliasIsConfigured(o.source)) throw new BadInput(`${envNameForAlias(o.source)} is not set: init reads the source catalog`);
        let text: string;
        try {
          text = await initSpec({ schema: o.schema, source: o.source, target: o.target, targetSchema: o.targetSchema, name: o.name });
        } finally {
          await closePools();
        }
        if (o.output) {
          writeFileSync(o.output, text);
          console.error(`wrote ${o.output}; next: backfill validate ${o.output}`);
        } else process.stdout.write(text);
        return EXIT.ok;
      }),
    );

  program
    .command('worker')
    .description('run a worker: it polls BACKFILL_TASK_QUEUE (default "backfill") and resolves BACKFILL_DB_<ALIAS>')
    .action(
      act(async () => {
        await runWorker();
        return EXIT.ok;
      }),
    );

  program
    .command('demo')
    .description('run a real migration on embedded PostgreSQL and a Temporal dev server, nothing to configure')
    .option('--rows <n>', 'rows in the sample source table', '1000000')
    .option('--chunk <n>', 'key span per range', '50000')
    .option('--keep', 'keep the servers (and the Temporal UI) running until Ctrl-C')
    .option(
      '--live',
      'a writer runs through the migration; change capture by logical replication, the lag while it catches up, and how long writes were refused',
    )
    .option('--rate <n>', "with --live, the writer's writes per second", '150')
    .action(
      act(async (o: { rows: string; chunk: string; keep?: boolean; live?: boolean; rate: string }) => {
        const rows = Number(o.rows);
        const chunk = Number(o.chunk);
        const rate = Number(o.rate);
        if (!Number.isInteger(rows) || rows < 1) throw new BadInput(`--rows must be a positive integer, got ${o.rows}`);
        if (!Number.isInteger(chunk) || chunk < 1) throw new BadInput(`--chunk must be a positive integer, got ${o.chunk}`);
        if (!(rate > 0 && rate <= 5000)) throw new BadInput(`--rate must be a number of writes per second from 1 to 5000, got ${o.rate}`);
        return runDemo({ rows, chunk, keep: Boolean(o.keep), ...(o.live ? { live: { perSecond: rate } } : {}) });
      }),
    );

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

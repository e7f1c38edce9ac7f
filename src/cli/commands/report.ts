// `backfill report`: the reconciliation report (md, json or html), from the workflow in Temporal or,
// past Temporal's retention, from the last one the ledger keeps.
import { Option, type Command } from 'commander';
import { WorkflowNotFoundError } from '@temporalio/client';
import { writeFileSync } from 'node:fs';
import { BadInput } from '../../spec/load';
import { aliasIsConfigured, envNameForAlias } from '../../spec/aliases';
import { redact } from '../../db/redact';
import { renderMarkdown } from '../../report/render';
import { renderHtml } from '../../report/html';
import { lastKeptReport } from '../../report/build';
import { endingOf, verdictLine, type Report } from '../../domain/report';
import { reportQuery } from '../../workflows/messages';
import { closePools, poolFor } from '../../db/pools';
import { EXIT, type Act } from '../exit';
import { connect, endingInTemporal } from '../temporal';

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

export function registerReport(program: Command, act: Act): void {
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
}

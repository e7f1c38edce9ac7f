// The commands that work in this shell rather than on a migration: init (a spec from the source
// catalog), worker (a worker for the task queue), demo (a real migration on embedded servers).
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { BadInput } from '../../spec/load';
import { aliasIsConfigured, envNameForAlias } from '../../spec/aliases';
import { closePools } from '../../db/pools';
import { runWorker } from '../../worker';
import { runDemo } from '../demo';
import { initSpec } from '../init';
import { EXIT, type Act } from '../exit';

export function registerInit(program: Command, act: Act): void {
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
}

export function registerWorker(program: Command, act: Act): void {
  program
    .command('worker')
    .description('run a worker: it polls BACKFILL_TASK_QUEUE (default "backfill") and resolves BACKFILL_DB_<ALIAS>')
    .action(
      act(async () => {
        await runWorker();
        return EXIT.ok;
      }),
    );
}

export function registerDemo(program: Command, act: Act): void {
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
    .option(
      '--reverse',
      'with --live (implied): cutover.reverse; after the switch the application writes the target and the source follows it, then the switch back, with how long writes were refused each way',
    )
    .action(
      act(async (o: { rows: string; chunk: string; keep?: boolean; live?: boolean; reverse?: boolean; rate: string }) => {
        const rows = Number(o.rows);
        const chunk = Number(o.chunk);
        const rate = Number(o.rate);
        if (!Number.isInteger(rows) || rows < 1) throw new BadInput(`--rows must be a positive integer, got ${o.rows}`);
        if (!Number.isInteger(chunk) || chunk < 1) throw new BadInput(`--chunk must be a positive integer, got ${o.chunk}`);
        if (!(rate > 0 && rate <= 5000)) throw new BadInput(`--rate must be a number of writes per second from 1 to 5000, got ${o.rate}`);
        return runDemo({ rows, chunk, keep: Boolean(o.keep), ...(o.live || o.reverse ? { live: { perSecond: rate, reverse: Boolean(o.reverse) } } : {}) });
      }),
    );
}

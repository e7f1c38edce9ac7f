// `npm run screenshots:report`: docs/images/report.png, a real report seen in a real browser. A
// migration on embedded PostgreSQL and a Temporal dev server (a worker in this process), whose target
// alters one row and drops another on their way in, so that two ranges stay red and are located;
// its report rendered by src/report/html.ts (what `backfill report --format html` writes) and
// photographed by Debian's Chromium at 1200×900. `--html <file>` keeps the page too.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { startPostgres } from '../src/infra/postgres';
import { startDevServer } from '../src/infra/temporal';
import { createWorker } from '../src/worker';
import { closePools } from '../src/db/pools';
import { envNameForAlias } from '../src/spec/aliases';
import { MigrationSpec } from '../src/spec/schema';
import { progressQuery, reportQuery } from '../src/workflows/messages';
import { backfillMigration } from '../src/workflows/migration';
import { renderHtml } from '../src/report/html';
import { browserMissing, launchBrowser } from '../test/helpers/browser';

const ROOT = join(__dirname, '..', '..');
const OUT = join(ROOT, 'docs', 'images', 'report.png');
const TASK_QUEUE = 'screenshot-report';

const ORDERS = `(id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, amount numeric(12,2) NOT NULL, created_at timestamptz NOT NULL)`;
const FILL = `
INSERT INTO public.orders
SELECT g, 1 + g % 997, (ARRAY['new', 'paid', 'shipped', 'refunded'])[1 + g % 4], round((g % 5000) / 7.0, 2),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '17 seconds'
  FROM generate_series(1, 100000) g`;
// One row altered, one row dropped: every copy of their ranges mismatches.
const FAULTY_TARGET = `
CREATE FUNCTION public.faulty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id = 41234 THEN NEW.amount := NEW.amount + 0.01; END IF;
  IF NEW.id = 77777 THEN RETURN NULL; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER faulty BEFORE INSERT ON public.orders_v2 FOR EACH ROW EXECUTE FUNCTION public.faulty();`;

async function main(): Promise<void> {
  const missing = browserMissing();
  if (missing) throw new Error(missing);
  const keep = process.argv.indexOf('--html');
  const htmlOut = keep >= 0 ? process.argv[keep + 1] : undefined;
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const tmp = mkdtempSync(join(tmpdir(), 'backfill-screenshot-'));
  const pg = await startPostgres();
  let env: Awaited<ReturnType<typeof startDevServer>> | undefined;
  try {
    await pg.createDatabase('source');
    await pg.createDatabase('target');
    await pg.query('source', `CREATE TABLE public.orders ${ORDERS}`);
    await pg.query('source', FILL);
    await pg.query('target', `CREATE TABLE public.orders_v2 ${ORDERS}`);
    await pg.query('target', FAULTY_TARGET);
    process.env[envNameForAlias('source')] = pg.url('source');
    process.env[envNameForAlias('target')] = pg.url('target');
    env = await startDevServer();
    const spec = MigrationSpec.parse({
      name: 'orders-v2',
      taskQueue: TASK_QUEUE,
      source: 'source',
      target: 'target',
      concurrency: 2,
      retries: { rangeAttempts: 2 },
      tables: [
        {
          source: 'public.orders',
          target: 'public.orders_v2',
          key: ['id'],
          chunk: { column: 'id', size: 500 },
          checks: {
            distribution: ['status'],
            aggregates: [
              { fn: 'sum', column: 'amount' },
              { fn: 'max', column: 'created_at' },
            ],
          },
        },
      ],
      cutover: { approval: 'required', approvers: ['dba-oncall'] },
    });
    const worker = await createWorker({ connection: env.nativeConnection, taskQueue: TASK_QUEUE });
    const html = await worker.runUntil(async () => {
      const h = await env!.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
      for (const end = Date.now() + 300_000; ;) {
        const p = await h.query(progressQuery).catch(() => undefined);
        if (p && ['needs_attention', 'awaiting_approval', 'failed', 'aborted', 'completed'].includes(p.phase)) {
          if (p.phase !== 'needs_attention') throw new Error(`the sample migration ended up in ${p.phase}, not needs_attention`);
          break;
        }
        if (Date.now() > end) throw new Error('the sample migration did not reach needs_attention in 5 minutes');
        await new Promise((r) => setTimeout(r, 250));
      }
      return renderHtml(await h.query(reportQuery));
    });
    const file = join(tmp, 'report.html');
    writeFileSync(file, html);
    if (htmlOut) writeFileSync(htmlOut, html);
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 }, deviceScaleFactor: 1 });
      await page.goto(pathToFileURL(file).href);
      mkdirSync(dirname(OUT), { recursive: true });
      await page.screenshot({ path: OUT });
    } finally {
      await browser.close();
    }
    console.log(`wrote ${OUT}${htmlOut ? ` and ${htmlOut}` : ''}`);
  } finally {
    await closePools();
    await env?.teardown().catch(() => undefined);
    await pg.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(`screenshot-report: ${e.message}`);
  process.exit(1);
});

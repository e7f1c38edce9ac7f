// `npm run screenshots`: the README's pictures of the Temporal Web UI, made from a real run.
// Embedded PostgreSQL with the demo's orders table, the dev server with its UI, `backfill worker`,
// three migrations started with `backfill start` (one approved and completed, one aborted, one
// waiting for approval), then Chromium (test/helpers/browser.ts) photographs what an operator sees:
//   docs/images/ui-workflows.png          the list, with the BackfillPhase column
//   docs/images/ui-awaiting-approval.png  User Metadata: summary, details, current details at the gate
//   docs/images/ui-timeline.png           the event history's timeline, a summary on every activity
//   docs/images/ui-approve.png            More Actions → Send an Update, approveCutover filled in
// Options: --rows (default 200000), --chunk (default 10000), --out (default docs/images).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { Page } from 'playwright-core';
import { freePort, startPostgres } from '../src/infra/postgres';
import { startDevServer } from '../src/infra/temporal';
import { envNameForAlias } from '../src/spec/aliases';
import { DEMO_ANALYZE, DEMO_SOURCE_DDL, DEMO_SOURCE_FILL, DEMO_TARGET_DDL } from '../src/db/demo';
import { progressQuery } from '../src/workflows/messages';
import { type Phase } from '../src/domain/phases';
import { backfill, ROOT } from '../test/helpers/cli';
import { spawnWorker } from '../test/helpers/temporal';
import { browserMissing, launchBrowser } from '../test/helpers/browser';
import { configureListColumns, fillUpdate, listRow, markdownUnder, seenInList } from '../test/helpers/temporal-ui';

function option(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}
const ROWS = Number(option('rows', '200000'));
const CHUNK = Number(option('chunk', '10000'));
const OUT = resolve(option('out', join(ROOT, 'docs', 'images')));

const say = (s: string) => console.log(s);

/** A demo-like spec: the orders table into `target`, gated by two approvers. */
function specOf(name: string, target: string) {
  return {
    name,
    source: 'source',
    target: 'target',
    concurrency: 2,
    tables: [
      {
        source: 'public.orders',
        target,
        key: ['id'],
        chunk: { column: 'id', size: CHUNK },
        checks: {
          distribution: ['status'],
          aggregates: [
            { fn: 'sum', column: 'amount' },
            { fn: 'max', column: 'updated_at' },
          ],
        },
      },
    ],
    cutover: {
      approval: 'required',
      approvers: ['dba-oncall', 'data-lead'],
      switch: { connection: 'target', sql: `COMMENT ON TABLE ${target} IS 'authoritative since the ${name} cutover'` },
    },
  };
}

async function until(h: WorkflowHandle, phases: Phase[]): Promise<void> {
  for (const end = Date.now() + 300_000; Date.now() < end; await new Promise((r) => setTimeout(r, 300))) {
    const p = await h.query(progressQuery).catch(() => undefined);
    if (p && phases.includes(p.phase)) return;
    if (p && ['failed', 'needs_attention'].includes(p.phase)) throw new Error(`${h.workflowId} stopped in ${p.phase}: ${p.detail ?? ''}`);
  }
  throw new Error(`${h.workflowId} did not reach ${phases.join('|')}`);
}

async function shoot(page: Page, file: string): Promise<void> {
  // Transitions finished (a drawer closing, a panel collapsing), not caught half way.
  await page.screenshot({ path: join(OUT, file), animations: 'disabled' });
  say(`  ${join(OUT, file)}`);
}

async function photograph(page: Page, ui: string, client: Client): Promise<void> {
  const { runId } = await client.workflow.getHandle('orders-v2').describe();
  const row = (id: string) => listRow(page, id);

  // The list, with the phase as a column (the gear adds it); room for it at 1280 px: the run id and
  // the type say nothing the workflow id does not.
  await page.goto(`${ui}/workflows`);
  await seenInList(page, row('orders-v2-first-try').getByText('Failed', { exact: true }));
  await configureListColumns(page, { add: ['BackfillPhase'], remove: ['Run ID', 'Type'] });
  await page.getByRole('button', { name: 'Collapse saved views' }).click();
  await page.getByText('Custom Views').waitFor({ state: 'hidden' });
  await row('orders-v2-first-try').getByText('aborted', { exact: true }).waitFor();
  await shoot(page, 'ui-workflows.png');

  // User Metadata: the static summary and details from `backfill start`, the current details at the gate.
  await page.goto(`${ui}/workflows/orders-v2/${runId}/user-metadata`);
  const current = markdownUnder(page, 'Current Details');
  await current.getByText('More Actions → Send an Update').waitFor();
  await markdownUnder(page, 'Summary').getByText('backfill orders-v2').waitFor();
  await shoot(page, 'ui-awaiting-approval.png');

  // The timeline: one bar per activity, each with its summary.
  await page.goto(`${ui}/workflows/orders-v2/${runId}/history`);
  const first = page.getByText(/^copyRange • copy public\.orders range 0 of \d+ \[\d+, \d+\)$/).first();
  await first.waitFor();
  // Oldest first (the plan, then range 0, 1, …), the section at the top of the page's scrolling pane.
  await page.getByRole('button', { name: 'Descending' }).click();
  await page.getByRole('button', { name: 'Ascending' }).waitFor();
  await page.getByRole('heading', { name: 'Event History' }).evaluate((h) => {
    h.scrollIntoView({ block: 'start' });
    // Clear of the UI's sticky top bar.
    for (let a = h.parentElement; a; a = a.parentElement)
      if (a.scrollTop > 0) {
        a.scrollTop -= 72;
        break;
      }
  });
  await shoot(page, 'ui-timeline.png');

  // Approving from the UI, as Current Details says: More Actions → Send an Update → approveCutover.
  // The digest, as the operator reads it off Current Details (the report shows the same).
  await page.goto(`${ui}/workflows/orders-v2/${runId}/user-metadata`);
  const digest = (
    await current
      .locator('code')
      .filter({ hasText: /^[0-9a-f]{32}$/ })
      .first()
      .innerText()
  ).trim();
  await fillUpdate(page, 'approveCutover', /Approve the cutover/, { approver: 'dba-oncall', digest, comment: 'evidence read: report green' });
  await shoot(page, 'ui-approve.png');
}

async function main(): Promise<number> {
  const missing = browserMissing();
  if (missing) {
    console.error(`screenshots: ${missing}`);
    return 2;
  }
  mkdirSync(OUT, { recursive: true });
  say(`screenshots: ${ROWS.toLocaleString('en-US')} rows in ranges of ${CHUNK.toLocaleString('en-US')} keys, into ${OUT}`);
  const dir = mkdtempSync(join(tmpdir(), 'backfill-screenshots-'));
  const pg = await startPostgres();
  let env: Awaited<ReturnType<typeof startDevServer>> | undefined;
  let worker: Awaited<ReturnType<typeof spawnWorker>> | undefined;
  let browser: Awaited<ReturnType<typeof launchBrowser>> | undefined;
  try {
    await pg.createDatabase('source');
    await pg.createDatabase('target');
    await pg.query('source', DEMO_SOURCE_DDL);
    await pg.query('source', DEMO_SOURCE_FILL, [ROWS]);
    await pg.query('source', DEMO_ANALYZE);
    for (const t of ['orders_v2', 'orders_v2_staging', 'orders_v2_try']) await pg.query('target', DEMO_TARGET_DDL.replace('public.orders_v2', `public.${t}`));
    process.env[envNameForAlias('source')] = pg.url('source');
    process.env[envNameForAlias('target')] = pg.url('target');

    const uiPort = await freePort();
    env = await startDevServer({ ui: true, uiPort });
    const cli = { TEMPORAL_ADDRESS: env.address };
    worker = await spawnWorker(env.address, 'backfill');
    say(`  Temporal UI at http://127.0.0.1:${uiPort}`);

    const specs = [
      specOf('orders-v2-staging', 'public.orders_v2_staging'),
      specOf('orders-v2-first-try', 'public.orders_v2_try'),
      specOf('orders-v2', 'public.orders_v2'),
    ];
    for (const spec of specs) {
      const file = join(dir, `${spec.name}.json`);
      writeFileSync(file, JSON.stringify(spec));
      const r = await backfill(['start', file], cli);
      if (r.code !== 0) throw new Error(`backfill start ${spec.name}: ${r.stderr}`);
      await until(env.client.workflow.getHandle(spec.name), ['awaiting_approval']);
    }
    // One approved and switched, one aborted, one left waiting at the gate.
    const approve = await backfill(['approve', 'orders-v2-staging', '--as', 'data-lead', '--yes'], cli);
    if (approve.code !== 0) throw new Error(`backfill approve: ${approve.stderr}`);
    await until(env.client.workflow.getHandle('orders-v2-staging'), ['completed']);
    const abort = await backfill(['abort', 'orders-v2-first-try', '--reason', 'wrong target schema'], cli);
    if (abort.code !== 0) throw new Error(`backfill abort: ${abort.stderr}`);
    await until(env.client.workflow.getHandle('orders-v2-first-try'), ['aborted']);

    browser = await launchBrowser();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(30_000);
    await photograph(page, `http://127.0.0.1:${uiPort}/namespaces/default`, env.client);
    return 0;
  } finally {
    await browser?.close();
    await worker?.stop();
    await env?.teardown().catch(() => undefined);
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`screenshots: ${(e as Error).message}`);
    process.exit(1);
  },
);

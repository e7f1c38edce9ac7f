// What an operator sees in the Temporal Web UI (the dev server's UI 2.x), read by a real browser:
// the workflow list (an aborted and a cancelled migration are Failed, never Completed; the phase
// column), a gated migration's timeline (a summary per activity naming its table and key range),
// its User Metadata page (the static summary and details from `backfill start`, the current
// details with the digest and the approval steps), and the approval done through the UI itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { freePort } from '../src/infra/postgres';
import { startSummary } from '../src/cli/summary';
import { reportQuery } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { backfill } from './helpers/cli';
import { endingOf, waitForPhase } from './helpers/temporal';
import { setup, useBrowser, useStack } from './hooks';
import { parsed, specFor } from './helpers/spec';
import { browserMissing } from './helpers/browser';
import { configureListColumns, fillUpdate, listRow, markdownUnder, seenInList, visible } from './helpers/temporal-ui';

const TASK_QUEUE = 'ui';
const ROWS = 100_000;
const missing = browserMissing();

let uiPort: number;
let ui: string;

const cutover = {
  approval: 'required',
  approvers: ['dba-oncall', 'data-lead'],
  switch: { connection: 'tgt', sql: "COMMENT ON TABLE public.orders_v2 IS 'authoritative'" },
};
// Keys 0 … 99,999 in ranges of 5,000: range 0 of 20 is [0, 5000).
const gated = specFor(
  'ui-gated',
  { source: 'public.orders', target: 'public.orders_v2', chunk: { column: 'id', size: 5000 } },
  { taskQueue: TASK_QUEUE, cutover },
);
const aborted = specFor(
  'ui-aborted',
  { source: 'public.orders', target: 'public.orders_a', chunk: { column: 'id', size: 50_000 } },
  { taskQueue: TASK_QUEUE, cutover },
);
const cancelled = specFor(
  'ui-cancelled',
  { source: 'public.orders', target: 'public.orders_c', chunk: { column: 'id', size: 50_000 } },
  { taskQueue: TASK_QUEUE, cutover },
);

// The UI's port, before the stack starts on it.
setup(async () => {
  uiPort = await freePort();
  ui = `http://127.0.0.1:${uiPort}/namespaces/default`;
});

const stack = useStack(
  TASK_QUEUE,
  async (pg) => {
    await pg.query('src', 'CREATE TABLE public.orders (id bigint PRIMARY KEY, status text NOT NULL, amount numeric(12,2) NOT NULL)');
    await pg.query(
      'src',
      "INSERT INTO public.orders SELECT g, (ARRAY['new','paid','shipped'])[1 + g % 3], g % 1000 / 7.0 FROM generate_series(0, $1::int - 1) g",
      [ROWS],
    );
    for (const t of ['orders_v2', 'orders_a', 'orders_c'])
      await pg.query('tgt', `CREATE TABLE public.${t} (id bigint PRIMARY KEY, status text NOT NULL, amount numeric(12,2) NOT NULL)`);
  },
  () => ({ worker: 'process', uiPort, skip: missing }),
);
const chromium = useBrowser(missing);

async function step<T>(page: Page, name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    // For a post-mortem: what the browser showed when the step failed.
    const shot = join(tmpdir(), `backfill-ui-${name.replace(/\W+/g, '-')}.png`);
    await page.screenshot({ path: shot }).catch(() => undefined);
    throw new Error(`${name}: ${(e as Error).message} (screenshot ${shot}; ${page.url()})`);
  }
}

test('the Temporal UI shows an operator the migration: list, timeline, summary, current details, the approval', { skip: missing }, async () => {
  const { client } = stack.temporal.env;
  const env = { TEMPORAL_ADDRESS: stack.temporal.address };
  for (const spec of [gated, aborted, cancelled]) {
    const file = join(stack.dir, `${spec.name}.json`);
    writeFileSync(file, JSON.stringify(spec));
    // As operators start one: `backfill start` sets the static summary and details.
    const r = await backfill(['start', file], env);
    assert.equal(r.code, 0, r.stderr);
  }
  const [g, a, c] = [gated, aborted, cancelled].map((s) => client.workflow.getHandle(s.name));
  for (const h of [g, a, c]) assert.equal((await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed'])).phase, 'awaiting_approval');
  const abort = await backfill(['abort', aborted.name, '--reason', 'wrong target table'], env);
  assert.equal(abort.code, 0, abort.stderr);
  assert.equal((await endingOf(a)).phase, 'aborted');
  const report: Report = await g.query(reportQuery);
  const runId = (await g.describe()).runId;

  const page = await chromium.browser!.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(20_000);

  await step(page, 'the workflow list', async () => {
    await page.goto(`${ui}/workflows`);
    await seenInList(page, listRow(page, aborted.name).getByText('Failed', { exact: true }));
    await listRow(page, gated.name).getByText('Running', { exact: true }).waitFor();
    assert.equal(await listRow(page, aborted.name).getByText('Completed').count(), 0, 'an aborted migration shown as Completed');
    // The phase as a column: the gear, then the custom search attribute (kept in the browser's storage).
    await configureListColumns(page, { add: ['BackfillPhase'] });
    await listRow(page, gated.name).getByText('awaiting_approval', { exact: true }).waitFor();
    await listRow(page, aborted.name).getByText('aborted', { exact: true }).waitFor();
  });

  await step(page, 'the timeline', async () => {
    await page.goto(`${ui}/workflows/${gated.name}/${runId}/history`);
    await page.getByText('Running', { exact: true }).first().waitFor();
    // Each activity's bar reads `<type> • <summary>`: the table, the key range, its place.
    for (const s of ['copyRange • copy public.orders range 0 of 20 [0, 5000)', 'copyRange • copy public.orders range 19 of 20 [95000, 100000)'])
      await page.getByText(s, { exact: true }).first().waitFor();
    await page.getByText('reconcileTables • reconcile public.orders: totals, the sum of the ranges, rows outside them').first().waitFor();
    await page.getByText('buildReport • build the report and its digest from the ledger').first().waitFor();
  });

  const digest = await step(page, 'user metadata', async () => {
    await page
      .getByRole('link', { name: 'User Metadata' })
      .or(page.getByRole('tab', { name: 'User Metadata' }))
      .first()
      .click();
    await page.waitForURL(/\/user-metadata$/);
    await markdownUnder(page, 'Summary')
      .getByText(startSummary(parsed(gated)))
      .waitFor();
    const details = markdownUnder(page, 'Details');
    await details.getByText(/approval required \(approvers: dba-oncall, data-lead\)/).waitFor();
    await details.getByText('public.orders_v2', { exact: true }).waitFor();
    const current = markdownUnder(page, 'Current Details');
    await current.getByText('awaiting_approval', { exact: true }).waitFor();
    await current.getByText(`who may approve: dba-oncall, data-lead`).waitFor();
    const shown = (
      await current
        .locator('code')
        .filter({ hasText: /^[0-9a-f]{32}$/ })
        .first()
        .innerText()
    ).trim();
    assert.equal(shown, report.digest, "the digest in Current Details is the report's");
    // The steps render as a list of their own, not run together into the paragraph above them.
    const steps = current.locator('li');
    await steps.filter({ hasText: `backfill approve ${gated.name} --as <you> --digest ${report.digest}` }).waitFor();
    await steps.filter({ hasText: /More Actions → Send an Update.*approveCutover/ }).waitFor();
    await steps.filter({ hasText: `backfill reject ${gated.name} --as <you> --reason <why>` }).waitFor();
    // The same place lists every activity by its summary.
    await page.getByText('copy public.orders range 0 of 20 [0, 5000)', { exact: true }).first().waitFor();
    return shown;
  });

  await step(page, 'approving in the UI', async () => {
    // Following the steps Current Details gives: first as someone who may not, then as an approver.
    // The update's description is in the list the operator picks it from.
    const approve = (data: object) => fillUpdate(page, 'approveCutover', /Approve the cutover/, data);
    let dialog = await approve({ approver: 'mallory', digest });
    await dialog.getByTestId('confirm-modal-button').click();
    await dialog.getByRole('alert').getByText('"mallory" is not an allowed approver (cutover.approvers: dba-oncall, data-lead)').waitFor();
    await page.reload();
    dialog = await approve({ approver: 'dba-oncall', digest, comment: 'approved in the Temporal UI' });
    await dialog.getByTestId('confirm-modal-button').click();
    await dialog.waitFor({ state: 'hidden' });
    const done = await endingOf(g);
    assert.equal(done.phase, 'completed');
    const audit = (await g.query(reportQuery)).approvals;
    assert.deepEqual(
      audit.map((x) => [x.approver, x.digest, x.comment]),
      [['dba-oncall', digest, 'approved in the Temporal UI']],
    );
  });

  await step(page, 'cancelling in the UI', async () => {
    await page.goto(`${ui}/workflows/${cancelled.name}`);
    await page.getByRole('button', { name: 'Request Cancellation' }).click();
    await visible(page.getByTestId('cancel-confirmation-modal')).getByTestId('confirm-modal-button').click();
    const ending = await endingOf(c);
    assert.deepEqual([ending.phase, ending.reason], ['aborted', 'cancelled through Temporal']);
  });

  await step(page, 'the endings in the list', async () => {
    await page.goto(`${ui}/workflows`);
    await seenInList(page, listRow(page, gated.name).getByText('Completed', { exact: true }));
    for (const id of [aborted.name, cancelled.name]) {
      await seenInList(page, listRow(page, id).getByText('Failed', { exact: true }));
      assert.equal(
        await listRow(page, id)
          .getByText(/Completed|Canceled/)
          .count(),
        0,
        `${id} is shown as Completed or Canceled`,
      );
      await listRow(page, id).getByText('aborted', { exact: true }).waitFor();
    }
  });

  await step(page, 'an aborted migration', async () => {
    const { runId: abortedRun } = await a.describe();
    await page.goto(`${ui}/workflows/${aborted.name}/${abortedRun}/user-metadata`);
    await page.getByText('Failed', { exact: true }).first().waitFor();
    await markdownUnder(page, 'Current Details').getByText('(wrong target table)').waitFor();
    await markdownUnder(page, 'Current Details').getByText('aborted', { exact: true }).waitFor();
  });
  await page.close();
});

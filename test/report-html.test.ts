// The HTML report as a person sees it, in a real browser (Debian's Chromium): a real migration on
// PostgreSQL with a range that stays red, written by `backfill report --format html -o`, opened and
// looked at (the verdict, the red cell's colour read from a screenshot's pixels, the located key,
// the rerun command, the audit trail); the page is a rendering of the report the ledger keeps. Then
// thousands of ranges at a glance, and values that try to be markup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Page } from 'playwright-core';
import { backfillMigration } from '../src/workflows/migration';
import { approveCutoverUpdate, reportQuery } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { renderHtml } from '../src/report/html';
import { CELL_COLOURS } from '../src/report/html-strip';
import { backfill } from './helpers/cli';
import { browserMissing } from './helpers/browser';
import { colourDistance, decodePng, pixel } from './helpers/png-decode';
import { syntheticReport } from './helpers/reports';
import { useBrowser, useStack } from './hooks';
import { specFor } from './helpers/spec';
import { waitForPhase } from './helpers/temporal';

// What the page functions below use in the browser (this project compiles without the DOM's types).
declare const window: { pwned?: number };
declare const document: { querySelectorAll(selector: string): ArrayLike<{ getAttribute(name: string): string | null }> };
declare function getComputedStyle(el: unknown): { fill: string };
declare function requestAnimationFrame(f: () => void): number;

const TASK_QUEUE = 'report-html';
const skip = browserMissing();

// A target trigger that alters one row on its way in: every copy of range 2 mismatches.
const CORRUPTING_TRIGGER = `
CREATE FUNCTION public.corrupt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id = 12345 THEN NEW.balance := NEW.balance + 0.01; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER corrupt BEFORE INSERT ON public.accounts_v2 FOR EACH ROW EXECUTE FUNCTION public.corrupt();`;

const stack = useStack(
  TASK_QUEUE,
  async (db) => {
    await db.query('src', 'CREATE TABLE public.accounts (id bigint PRIMARY KEY, balance numeric(14,2) NOT NULL, owner text)');
    await db.query('src', `INSERT INTO public.accounts SELECT g, g / 100.0, 'owner ' || g FROM generate_series(1, 20000) g`);
    await db.query('tgt', 'CREATE TABLE public.accounts_v2 (id bigint PRIMARY KEY, balance numeric(14,2) NOT NULL, owner text)');
    await db.query('tgt', CORRUPTING_TRIGGER);
  },
  { skip },
);
const chromium = useBrowser(skip);

const GREEN = CELL_COLOURS.verified;
const RED = CELL_COLOURS.failed;

async function open(file: string): Promise<Page> {
  const page = await chromium.browser!.newPage({ viewport: { width: 1200, height: 900 }, deviceScaleFactor: 1 });
  await page.goto(pathToFileURL(file).href);
  return page;
}

/** The colour a person sees at the centre of an element: scrolled into view, from a screenshot's pixels. */
async function colourAt(page: Page, selector: string): Promise<string> {
  const el = page.locator(selector);
  await el.scrollIntoViewIfNeeded();
  const box = await el.boundingBox();
  assert.ok(box, `${selector} is laid out`);
  return pixel(decodePng(await page.screenshot()), box.x + box.width / 2, box.y + box.height / 2);
}

function assertColour(seen: string, want: string, what: string): void {
  assert.ok(colourDistance(seen, want) <= 8, `${what}: ${seen} on screen, ${want} expected`);
}

/** Every range of a strip is one cell, or one of a run of cells (data-n): their sum. */
const cellsOf = (page: Page, ti: number) =>
  page.evaluate((id) => Array.from(document.querySelectorAll(`#${id} rect`)).reduce((a, r) => a + Number(r.getAttribute('data-n') ?? 1), 0), `strip-${ti}`);

/** Resolves once the page has been laid out and painted: two animation frames after the load. */
const painted = (page: Page) => page.evaluate(() => new Promise<void>((r) => requestAnimationFrame(() => requestAnimationFrame(() => r()))));

const noStackTrace = (s: string) => assert.doesNotMatch(s, /\n\s+at .+:\d+:\d+|\.ts:\d+|dist\/src/, s);

test(
  'a real red migration: the page shows the verdict, the red range, its located key and rerun, the audit; the ledger keeps what it renders',
  { skip },
  async () => {
    const name = 'accounts-html';
    const spec = specFor(
      name,
      { source: 'public.accounts', target: 'public.accounts_v2', chunk: { column: 'id', size: 5000 } },
      { taskQueue: TASK_QUEUE, concurrency: 2, retries: { rangeAttempts: 2 }, cutover: { approval: 'required', approvers: ['ops'] } },
    );
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: name, args: [spec] });
    assert.equal((await waitForPhase(h, ['needs_attention', 'awaiting_approval', 'failed'])).phase, 'needs_attention');
    // An approval while red is refused; the worker records the refusal in the ledger's audit.
    await assert.rejects(h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'ops', digest: 'not-this' }] }));
    // The worker tells the workflow once it is in the ledger: the report shows it from then on.
    for (let i = 0; i < 100 && !(await h.query<Report>(reportQuery)).audit?.entries.length; i++) await new Promise((r) => setTimeout(r, 100));

    const env = { TEMPORAL_ADDRESS: stack.temporal.address };
    const file = join(stack.dir, 'red.html');
    const cli = await backfill(['report', name, '--format', 'html', '-o', file], env);
    assert.equal(cli.code, 1, `a red report exits 1: ${cli.stderr}`);
    assert.match(cli.stderr, /wrote the report of accounts-html \(RED\) to /);
    assert.equal(cli.stdout, '');
    const html = readFileSync(file, 'utf8');
    const toStdout = await backfill(['report', name, '--format', 'html'], env);
    assert.equal(toStdout.stdout, html, 'the same report renders the same page, to a file or to standard output');

    const page = await open(file);
    assert.equal(await page.title(), 'backfill accounts-html: RED');
    const verdict = page.locator('#verdict .verdict-word');
    assert.ok(await verdict.isVisible());
    assert.equal(await verdict.innerText(), 'RED');
    assertColour(await colourAt(page, '#verdict'), '#b71c1c', 'the verdict banner');
    const q: Report = await h.query(reportQuery);
    assert.equal(await page.locator('#digest').innerText(), q.digest);

    // The strip: four ranges, the third red (its colour on screen, not only in the markup), the others green.
    assert.equal(await cellsOf(page, 0), 4);
    const red = page.locator('#strip-0 rect[data-i="2"]');
    assert.equal(await red.count(), 1);
    assert.equal(await red.evaluate((el) => getComputedStyle(el).fill), 'rgb(198, 40, 40)');
    assertColour(await colourAt(page, '#strip-0 rect[data-i="2"]'), RED, 'range 2, which stays red');
    for (const i of [0, 1, 3]) assertColour(await colourAt(page, `#strip-0 rect[data-i="${i}"]`), GREEN, `range ${i}`);
    assert.match(await page.locator('#t0 ul.legend').innerText(), /not proven \(failed, mismatch, refused\): 1[\s\S]*verified: 3/);

    // The red cell leads to the range's evidence: the located key and the command that reruns it.
    await page.locator('#strip-0 a[href="#t0-r2"]').click();
    const range = page.locator('#t0-r2');
    const box = await range.boundingBox();
    assert.ok(box && box.y >= 0 && box.y < 900, `range 2's evidence is in view after the click (${JSON.stringify(box)})`);
    assert.match(await range.locator('h4').innerText(), /^Range 2 \[10001, 15001\): failed after 2 attempts$/);
    const located = range.locator('ul.keys li[data-kind="changed"]');
    assert.ok(await located.isVisible());
    assert.equal(await located.innerText(), 'changed: ["12345"]');
    assert.match(await range.innerText(), /columns that differ\s+balance \(1\)/);
    const rerun = range.locator('pre.rerun');
    assert.ok(await rerun.isVisible());
    assert.equal(await rerun.innerText(), 'backfill rerun accounts-html --table public.accounts --range 2');
    assert.ok(await page.locator('#audit h2').isVisible());
    assert.equal(await page.locator('#audit h2').innerText(), 'Audit trail');
    await page.close();

    // The ledger keeps it: the page is a rendering of the report in backfill.reports under its
    // digest, with the phase, the approvals and the audit entries recorded since (the refused
    // approval, told to the workflow by the worker) that the workflow adds when it is asked.
    const kept = JSON.parse(
      (await stack.pg.query('tgt', 'SELECT report::text AS r FROM backfill.reports WHERE migration = $1 AND digest = $2', [name, q.digest])).rows[0].r,
    ) as Report;
    assert.deepEqual(
      q.audit?.entries.map((e) => [e.action, e.actor, e.digest]),
      [['approve-refused', 'ops', 'not-this']],
      'the running report shows the refusal at once',
    );
    assert.deepEqual({ ...kept, phase: q.phase, approvals: q.approvals, audit: q.audit }, q);
    assert.equal(renderHtml({ ...kept, phase: q.phase, approvals: q.approvals, audit: q.audit }), html);

    // Read from the ledger instead of Temporal (a migration past retention): the same evidence, and
    // the audit as it stands now, with the refused approval.
    for (let i = 0; i < 40; i++) {
      const n = (await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM backfill.audit WHERE migration = $1 AND action = 'approve-refused'`, [name]))
        .rows[0].n;
      if (n > 0) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const fromLedger = join(stack.dir, 'ledger.html');
    const led = await backfill(['report', name, '--format', 'html', '--ledger', 'tgt', '-o', fromLedger], { TEMPORAL_ADDRESS: '127.0.0.1:1' });
    assert.equal(led.code, 1, led.stderr);
    const lp = await open(fromLedger);
    assert.equal(await lp.locator('#verdict .verdict-word').innerText(), 'RED');
    assert.equal(await lp.locator('#digest').innerText(), q.digest);
    assertColour(await colourAt(lp, '#strip-0 rect[data-i="2"]'), RED, 'range 2, read from the ledger');
    const refusedRow = lp.locator('#audit tr[data-action="approve-refused"]');
    assert.ok(await refusedRow.isVisible());
    assert.match(await refusedRow.innerText(), /approval refused\s+ops\s+not-this\s+cannot approve: the migration is in phase needs_attention/);
    await lp.close();

    // Fixed, rerun, rejected, rerun, approved (with a comment that looks like markup), switched.
    await stack.pg.query('tgt', 'DROP TRIGGER corrupt ON public.accounts_v2');
    assert.equal((await backfill(['rerun', name, '--range', '2'], env)).code, 0);
    assert.equal((await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed'])).phase, 'awaiting_approval');
    const reject = await backfill(['reject', name, '--as', 'ops', '--reason', 'once more, please'], env);
    assert.equal(reject.code, 0, reject.stderr);
    assert.equal((await waitForPhase(h, ['needs_attention', 'failed'])).phase, 'needs_attention');
    assert.equal((await backfill(['rerun', name, '--range', '2'], env)).code, 0);
    assert.equal((await waitForPhase(h, ['awaiting_approval', 'failed'])).phase, 'awaiting_approval');
    const approve = await backfill(['approve', name, '--as', 'ops', '--yes', '--comment', 'checked <b>twice</b> & "done"'], env);
    assert.equal(approve.code, 0, approve.stderr);
    assert.equal((await h.result()).phase, 'completed');

    const greenFile = join(stack.dir, 'green.html');
    const done = await backfill(['report', name, '--format', 'html', '-o', greenFile], env);
    assert.equal(done.code, 0, done.stderr);
    const gp = await open(greenFile);
    assert.equal(await gp.locator('#verdict .verdict-word').innerText(), 'GREEN');
    assertColour(await colourAt(gp, '#verdict'), '#1b5e20', 'the verdict banner');
    assert.equal(await gp.locator('#strip-0 a').count(), 0, 'no range is linked as not proven');
    for (const i of [0, 2]) assertColour(await colourAt(gp, `#strip-0 rect[data-i="${i}"]`), GREEN, `range ${i} once green`);
    const actions = await gp.locator('#audit tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-action')));
    assert.deepEqual(actions, ['approve-refused', 'reject', 'approve', 'switch']);
    const audit = await gp.locator('#audit').innerText();
    assert.match(audit, /rejected\s+ops\s+\S+\s+once more, please/);
    assert.ok(audit.includes('checked <b>twice</b> & "done"'), audit);
    assert.equal(await gp.locator('#audit b').count(), 0, 'the comment is text, not markup');
    assert.match(audit, /authority switched/);
    await gp.close();

    // After Temporal forgets it, the ledger tells the same ending.
    const afterFile = join(stack.dir, 'after.html');
    const after = await backfill(['report', name, '--format', 'html', '--ledger', 'tgt', '-o', afterFile], { TEMPORAL_ADDRESS: '127.0.0.1:1' });
    assert.equal(after.code, 0, after.stderr);
    const ap = await open(afterFile);
    assert.equal(await ap.locator('#verdict .verdict-word').innerText(), 'GREEN');
    assert.match(await ap.locator('#verdict').innerText(), /Phase completed \(as the ledger knows it\)/);
    assert.deepEqual(await ap.locator('#audit tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-action'))), actions);
    await ap.close();
  },
);

test('the report command: plain sentences for what it cannot do, no stack trace', { skip }, async () => {
  const env = { TEMPORAL_ADDRESS: stack.temporal.address };
  const gone = await backfill(['report', 'no-such-migration', '--format', 'html'], env);
  assert.equal(gone.code, 2);
  assert.match(gone.stderr, /no such migration in Temporal: no-such-migration\. .*--ledger <alias>/);
  const format = await backfill(['report', 'accounts-html', '--format', 'pdf'], env);
  assert.equal(format.code, 2);
  assert.match(format.stderr, /Allowed choices are md, json, html/);
  const unset = await backfill(['report', 'accounts-html', '--ledger', 'nowhere'], env);
  assert.equal(unset.code, 2);
  assert.match(unset.stderr, /BACKFILL_DB_NOWHERE is not set/);
  const none = await backfill(['report', 'no-such-migration', '--ledger', 'src'], env);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /the ledger on src keeps no report of migration "no-such-migration"/);
  const folder = await backfill(['report', 'accounts-html', '--format', 'html', '-o', join(stack.dir, 'no', 'such', 'folder', 'r.html')], env);
  assert.equal(folder.code, 2);
  assert.match(folder.stderr, /cannot write .*r\.html: its folder does not exist/);
  for (const r of [gone, format, unset, none, folder]) noStackTrace(r.stderr);
});

// Its timings are printed, not asserted: speed belongs to the benchmark, not to a test that a busy machine can fail.
test('thousands of ranges at a glance: 5,000 cells, each red one where it belongs; 100,000 stay small', { skip }, async () => {
  const failed = [0, 1234, 4999];
  const report = syntheticReport('many-ranges', [{ source: 'public.events', ranges: 5000, failed }]);
  let t0 = performance.now();
  const html = renderHtml(report);
  const renderMs = performance.now() - t0;
  const file = join(stack.dir, 'many.html');
  writeFileSync(file, html);
  const page = await chromium.browser!.newPage({ viewport: { width: 1200, height: 900 }, deviceScaleFactor: 1 });
  t0 = performance.now();
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  await painted(page);
  const shownMs = performance.now() - t0;
  assert.equal(await page.locator('#strip-0 rect').count(), 5000, 'one cell per range');
  assert.equal(await cellsOf(page, 0), 5000);
  assert.equal(await page.locator('#strip-0 a').count(), failed.length);
  for (const i of failed) assertColour(await colourAt(page, `#strip-0 rect[data-i="${i}"]`), RED, `range ${i}`);
  for (const i of [1, 2500, 4998]) assertColour(await colourAt(page, `#strip-0 rect[data-i="${i}"]`), GREEN, `range ${i}`);
  assert.match(await page.locator('#t0 ul.legend').innerText(), /verified: 4,997/);
  assert.equal(await page.locator('article.range').count(), failed.length);
  console.log(`5,000 ranges: rendered in ${renderMs.toFixed(0)} ms, ${(html.length / 1024).toFixed(0)} KiB, loaded and painted in ${shownMs.toFixed(0)} ms`);

  // 100,000 ranges: runs of one status share a rect, the red ones stand out.
  const huge = renderHtml(syntheticReport('more-ranges', [{ source: 'public.events', ranges: 100_000, failed: [7, 99_999] }]));
  assert.ok(huge.length < 200_000, `${huge.length} bytes`);
  const hugeFile = join(stack.dir, 'huge.html');
  writeFileSync(hugeFile, huge);
  t0 = performance.now();
  await page.goto(pathToFileURL(hugeFile).href, { waitUntil: 'load' });
  await painted(page);
  const hugeMs = performance.now() - t0;
  assert.equal(await cellsOf(page, 0), 100_000);
  for (const i of [7, 99_999]) assertColour(await colourAt(page, `#strip-0 rect[data-i="${i}"]`), RED, `range ${i} of 100,000`);
  console.log(`100,000 ranges: ${(huge.length / 1024).toFixed(0)} KiB, loaded and painted in ${hugeMs.toFixed(0)} ms`);
  await page.close();
});

test('values that look like markup stay text: no script, no element, no handler gets in', { skip }, async () => {
  const evil = '<script>window.pwned = 1</script>';
  const report = syntheticReport('escape-me', [
    {
      source: `public."${evil}"`,
      target: `public."a&b'c""<i>"`,
      ranges: 3,
      failed: [1],
      keyOf: () => ['<img src=x onerror="window.pwned = 2">', `it's & "quoted"`],
    },
  ]);
  report.tables[0].totals.source!.distribution.status['<iframe src="javascript:window.pwned = 3">'] = '1';
  report.audit = {
    entries: [
      {
        at: '2025-01-02T03:05:00.000Z',
        action: 'approve-refused',
        actor: '<svg onload="window.pwned = 4">',
        note: '</style><script>window.pwned = 5</script>',
      },
    ],
    total: 1,
  };
  const html = renderHtml(report);
  assert.doesNotMatch(html, /<script|<img|<iframe|<svg onload|<i>/i);
  // Without the page's script policy too: escaping alone keeps it out.
  const bare = html.replace(/<meta http-equiv="Content-Security-Policy"[^>]*>/, '');
  assert.notEqual(bare, html);
  const file = join(stack.dir, 'escape.html');
  writeFileSync(file, bare);
  const page = await open(file);
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  assert.equal(await page.locator('script, img, iframe, i').count(), 0);
  assert.equal(await page.evaluate(() => document.querySelectorAll('[onload], [onerror]').length), 0);
  assert.equal(await page.locator('#t0 h2').innerText(), `public."${evil}" → public."a&b'c""<i>"`);
  assert.equal(await page.locator('#t0-r1 code.key').innerText(), JSON.stringify(['<img src=x onerror="window.pwned = 2">', `it's & "quoted"`]));
  assert.equal(await page.locator('#t0-r1 pre.rerun').innerText(), `backfill rerun escape-me --table 'public."${evil}"' --range 1`);
  assert.match(await page.locator('#audit').innerText(), /<svg onload="window\.pwned = 4">[\s\S]*<\/style><script>window\.pwned = 5<\/script>/);
  assert.match(await page.locator('div.figures').innerText(), /<iframe src="javascript:window\.pwned = 3">/);
  await page.close();
});

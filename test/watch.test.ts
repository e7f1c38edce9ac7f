// `backfill status --watch` as a person sees it in a terminal (a real pseudo-terminal from
// util-linux `script`): a bar per table with rows/s and an ETA measured from the migration's own
// progress, and at the gate the steps to approve exactly the digest presented. The rate arithmetic
// itself is tested on a clock of our own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { backfillMigration } from '../src/workflows/migration';
import { approveCutoverUpdate, pauseSignal, progressQuery, resumeSignal, type Progress } from '../src/workflows/messages';
import { gateInstructions } from '../src/report/render';
import { Rates, etaSeconds, showDuration, showRate } from '../src/cli/rates';
import { tableFigures } from '../src/cli/progress';
import { wrapLine } from '../src/cli/region';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI } from './helpers/cli';
import { Terminal, tmuxMissing } from './helpers/terminal';
import { replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';

const TASK_QUEUE = 'watch';

test('watch: rates over a sliding window, an ETA from the ranges still to do, short units', () => {
  const r = new Rates(10_000);
  assert.equal(r.rate('t'), undefined, 'one sample tells no rate');
  r.add('t', { at: 0, rows: 0, done: 0 });
  r.add('t', { at: 2_000, rows: 20_000, done: 4 });
  assert.deepEqual(r.rate('t'), { rowsPerSec: 10_000, rangesPerSec: 2 });
  assert.equal(etaSeconds(10, r.rate('t')), 5);
  // The window forgets what is older than 10 s: the slowdown shows.
  r.add('t', { at: 12_000, rows: 30_000, done: 6 });
  r.add('t', { at: 22_000, rows: 31_000, done: 7 });
  assert.deepEqual(r.rate('t'), { rowsPerSec: 100, rangesPerSec: 0.1 });
  // A rerun lowers the counts: measuring starts again instead of showing a negative rate.
  r.add('t', { at: 23_000, rows: 1_000, done: 6 });
  assert.equal(r.rate('t'), undefined);
  assert.equal(etaSeconds(0, undefined), 0);
  assert.equal(etaSeconds(3, { rowsPerSec: 0, rangesPerSec: 0 }), undefined, 'a stalled table has no ETA, not an infinite one');
  assert.deepEqual([showDuration(45.4), showDuration(185), showDuration(7_620)], ['45s', '3m 05s', '2h 07m']);
  assert.deepEqual([showRate(950.4), showRate(12_345), showRate(4_500_000)], ['950', '12.3k', '4.5M']);

  const t = {
    source: 'public.a',
    target: 'public.b',
    rowsCopied: 31_000,
    rowsRecopied: 6_000,
    ranges: { total: 10, pending: 2, inFlight: 1, verified: 6, failed: 1 },
  };
  const rates = new Rates();
  rates.add('public.a→public.b', { at: 0, rows: 0, done: 0 });
  rates.add('public.a→public.b', { at: 7_000, rows: 31_000, done: 7 });
  // Rows copied once, and the re-copies apart: the first figure is never more than the table's rows.
  assert.deepEqual(tableFigures(t, rates), {
    table: 'public.a → public.b',
    done: 7,
    total: 10,
    rows: '25,000 rows (+6,000 re-copied)',
    rate: '4,429',
    left: '3s',
    failed: ' | 1 failed',
  });
  assert.equal(tableFigures({ ...t, rowsRecopied: 0 }, rates).rows, '31,000 rows');
});

test('watch: the approve command wraps at its words at any width, never inside the digest', () => {
  const digest = 'a958dbac9fa478cbae6a2690b00f301b';
  const base: Progress = {
    migration: 'orders-v2',
    phase: 'awaiting_approval',
    digest,
    approvers: [],
    tables: [],
    paused: false,
    concurrency: 1,
    startedAt: '',
    updatedAt: '',
  };
  const gate = gateInstructions(base);
  const approve = `    backfill approve orders-v2 --as <you> --digest ${digest}`;
  assert.ok(gate.split('\n').includes(approve), 'the approve command on a line of its own');
  for (let columns = 20; columns <= 200; columns++) {
    for (const line of gate.split('\n')) {
      const rows = wrapLine(line, columns);
      // Nothing is lost: the rows give back the line, continuation marks and indents aside.
      assert.equal(rows.map((r) => r.replace(/ \\$/, '').trim()).join(' '), line.trim(), `at ${columns} columns`);
      assert.ok(
        rows.every((r) => [...r].length < columns || !r.trim().includes(' ')),
        `a row of words wider than ${columns} columns`,
      );
      if (line !== approve) continue;
      // A command broken over rows goes on with " \\" (it pastes as one); the digest is never broken.
      assert.ok(rows.slice(0, -1).every((r) => r.endsWith(' \\')) && !rows[rows.length - 1].endsWith(' \\'), rows.join('\n'));
      assert.ok(
        rows.some((r) => r.trim() === digest || r.trim().endsWith(` ${digest}`)),
        `the digest whole on a row at ${columns} columns`,
      );
    }
  }
});

test('watch: the gate steps name who may approve and the exact digest; nothing outside the gate', () => {
  const base: Progress = { migration: 'm', phase: 'backfilling', tables: [], paused: false, concurrency: 1, startedAt: '', updatedAt: '' };
  assert.equal(gateInstructions(base), '');
  const gate = gateInstructions({ ...base, phase: 'awaiting_approval', digest: 'sha256:abc', approvers: ['alice', 'bob'] });
  assert.match(gate, /who may approve: alice, bob/);
  assert.match(gate, /backfill approve m --as <you> --digest sha256:abc/);
  assert.match(gate, /backfill report m/);
  assert.match(gateInstructions({ ...base, phase: 'awaiting_approval', digest: 'd', approvers: [] }), /who may approve: anyone/);
});

const stack = useStack(TASK_QUEUE, async (db) => {
  for (const [t, n] of [
    ['orders', 200_000],
    ['items', 60_000],
  ] as const) {
    await db.query('src', `CREATE TABLE public.${t} (id bigint PRIMARY KEY, note text)`);
    await db.query('src', `INSERT INTO public.${t} SELECT g, 'row ' || g FROM generate_series(1, ${n}) g`);
    await db.query('tgt', `CREATE TABLE public.${t} (id bigint PRIMARY KEY, note text)`);
  }
  for (const t of ['items_narrow', 'orders_started']) await db.query('tgt', `CREATE TABLE public.${t} (id bigint PRIMARY KEY, note text)`);
});

const plain = (s: string) => s.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '\n');

test('watch: in a terminal, a bar per table with rows/s and ETA, then the gate steps with the digest', async () => {
  const spec = specFor(
    'watched',
    [
      { source: 'public.orders', target: 'public.orders', chunk: { column: 'id', size: 2000 } },
      { source: 'public.items', target: 'public.items', chunk: { column: 'id', size: 2000 } },
    ],
    { taskQueue: TASK_QUEUE, concurrency: 2, cutover: { approval: 'required', approvers: ['alice'] } },
  );
  // Paused from its first task until the watch shows its bars, then resumed, and polled every 0.2 s:
  // the copy is seen running however fast this machine copies.
  const h = await stack.client.workflow.signalWithStart(backfillMigration, {
    taskQueue: TASK_QUEUE,
    workflowId: spec.name,
    args: [spec],
    signal: pauseSignal,
    signalArgs: [],
  });
  const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} status --watch --interval 0.2 watched`;
  const tty = spawn('script', ['-qfec', cmd, '/dev/null'], {
    env: { ...process.env, TEMPORAL_ADDRESS: stack.temporal.address, TERM: 'xterm', COLUMNS: '200' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  tty.stdout.on('data', (d) => (out += d));
  tty.stderr.on('data', (d) => (out += d));
  try {
    const shown = Date.now() + 30_000;
    while (!/public\.items → public\.items/.test(plain(out)) && Date.now() < shown) await new Promise((r) => setTimeout(r, 100));
    await h.signal(resumeSignal);
    const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
    assert.equal(p.phase, 'awaiting_approval');
    const deadline = Date.now() + 30_000;
    while (!plain(out).includes('approve that digest') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const seen = plain(out);
    assert.ok(!/at .*\.js:\d+/.test(seen), 'no stack trace');
    // Both tables have a bar; while copying, a measured rate and an ETA (not only dashes).
    assert.match(seen, /public\.orders → public\.orders .*\d+\/100 ranges \| [\d,]+ rows \| [\d.,]+k? rows\/s \| ETA (\d+s|\d+m \d+s)/);
    assert.match(seen, /public\.items → public\.items .*30\/30 ranges \| 60,000 rows \| .* rows\/s \| ETA done/);
    assert.match(seen, /public\.orders → public\.orders .*100\/100 ranges \| 200,000 rows/);
    const progress: Progress = await h.query(progressQuery);
    assert.ok(progress.digest);
    assert.deepEqual(progress.approvers, ['alice']);
    assert.match(seen, /watched awaits approval of digest \S+; who may approve: alice\./);
    assert.ok(seen.includes(`backfill approve watched --as <you> --digest ${progress.digest}`), seen.slice(-2000));
  } finally {
    tty.kill('SIGKILL');
  }
  const progress: Progress = await h.query(progressQuery);
  await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: progress.digest! }] });
  assert.equal((await h.result()).phase, 'completed');
  // Two tables, reconciled side by side (the patch 'reconcile-tables-in-parallel').
  await replayAndMaybeRecord(h, 'two-tables-gated-reconciled-in-parallel');
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Rows of the gate's steps: they must stand alone, with nothing of a bar beside them. */
const GATE_ROW = /awaits approval|read the evidence|approve that digest|or reject it|backfill (report|approve|reject)|--digest|Send an Update|"approver"/;
const BAR_PART = /[█░]|rows\/s|ranges \||ETA /;

test(
  'watch at 80 columns (tmux): the gate steps redraw in one region with no leftovers, the approve command whole; Ctrl-C gives the cursor back, says the migration goes on, exits 130',
  { skip: tmuxMissing() },
  async () => {
    const name = 'narrow';
    const spec = specFor(
      name,
      { source: 'public.items', target: 'public.items_narrow', chunk: { column: 'id', size: 2000 } },
      { taskQueue: TASK_QUEUE, concurrency: 2, cutover: { approval: 'required', approvers: ['alice'] } },
    );
    // Paused until the watch shows its bar: the gate's steps then come over bars drawn before them.
    const h = await stack.client.workflow.signalWithStart(backfillMigration, {
      taskQueue: TASK_QUEUE,
      workflowId: name,
      args: [spec],
      signal: pauseSignal,
      signalArgs: [],
    });
    const term = new Terminal(stack.dir, [process.execPath, CLI, 'status', '--watch', '--interval', '0.2', name], {
      columns: 80,
      rows: 40,
      env: { TEMPORAL_ADDRESS: stack.temporal.address },
    });
    try {
      await term.waitFor((rows) => rows.some((r) => r.includes('public.items → public.items_narrow')));
      await h.signal(resumeSignal);
      const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
      assert.equal(p.phase, 'awaiting_approval');
      const digest = p.digest!;
      const screen = await term.waitFor((rows) => rows.some((r) => r.includes('awaiting_approval')) && rows.some((r) => r.trim() === 'or reject it:'));
      const seen = screen.join('\n');
      assert.ok(
        screen.every((r) => [...r].length <= 80),
        seen,
      );
      // Each of the gate's rows stands alone: no piece of a bar drawn before it is left beside it.
      const gateRows = screen.filter((r) => GATE_ROW.test(r));
      assert.ok(gateRows.length >= 6, seen);
      for (const r of gateRows) assert.doesNotMatch(r, BAR_PART, `a leftover beside the gate's steps:\n${seen}`);
      // The bar below them is drawn whole, once.
      assert.equal(screen.filter((r) => r.includes('public.items → public.items_narrow')).length, 1, seen);
      assert.match(seen, /30\/30 ranges \| 60,000 rows \| [\d.,k–]+ rows\/s \| ETA done/);
      // Every digest on the screen is the real one, whole; the approve command reads back exactly.
      const digests = [...seen.matchAll(/digest(?: \\)?\s+([0-9a-f]+)/g)].map((m) => m[1]);
      assert.ok(digests.length >= 3, seen);
      assert.deepEqual(new Set(digests), new Set([digest]), seen);
      const at = screen.findIndex((r) => r.includes('backfill approve'));
      let command = '';
      for (let i = at; i < screen.length; i++) {
        command += ` ${screen[i].trim().replace(/ \\$/, '')}`;
        if (!screen[i].endsWith(' \\')) break;
      }
      assert.equal(command.trim(), `backfill approve ${name} --as <you> --digest ${digest}`, seen);

      // Ctrl-C: the watch stops, the migration does not.
      term.keys('C-c');
      assert.equal(await term.ended(), 130, term.text());
      assert.equal(term.info('#{cursor_flag}'), '1', 'the cursor is shown again');
      const raw = term.raw();
      assert.ok(raw.lastIndexOf('\u001b[?25h') > raw.lastIndexOf('\u001b[?25l'), 'the cursor-show escape after the last hide');
      const after = term.text();
      assert.ok(
        after.includes(
          `backfill: stopped watching ${name}; the migration goes on in Temporal. Follow it again: backfill status ${name} --watch; read its report: backfill report ${name}; stop it: backfill abort ${name}`,
        ),
        after,
      );
      assert.doesNotMatch(after, /\^C/);
      assert.equal((await h.query(progressQuery)).phase, 'awaiting_approval', 'the migration goes on');
    } finally {
      term.close();
      await h.terminate('test done');
    }
  },
);

test('start --wait in a terminal (tmux): Ctrl-C gives the cursor back and leaves the migration running, exit 130', { skip: tmuxMissing() }, async () => {
  const name = 'started';
  const spec = specFor(
    name,
    { source: 'public.orders', target: 'public.orders_started', chunk: { column: 'id', size: 1000 } },
    { taskQueue: TASK_QUEUE, concurrency: 1, cutover: { approval: 'required' } },
  );
  const file = join(stack.dir, 'started.json');
  writeFileSync(file, JSON.stringify(spec));
  const term = new Terminal(stack.dir, [process.execPath, CLI, 'start', file, '--wait'], {
    columns: 100,
    rows: 30,
    env: { TEMPORAL_ADDRESS: stack.temporal.address },
  });
  const h = stack.client.workflow.getHandle(name);
  try {
    await term.waitFor((rows) => rows.some((r) => r.includes('public.orders → public.orders_started')));
    await sleep(300);
    term.keys('C-c');
    assert.equal(await term.ended(), 130, term.text());
    assert.equal(term.info('#{cursor_flag}'), '1', 'the cursor is shown again');
    assert.ok(term.raw().lastIndexOf('\u001b[?25h') > term.raw().lastIndexOf('\u001b[?25l'));
    assert.match(term.text(), /backfill: stopped watching started; the migration goes on in Temporal\. Follow it again: backfill status started --watch;/);
    assert.equal((await h.describe()).status.name, 'RUNNING', 'the migration goes on');
  } finally {
    term.close();
    await h.terminate('test done');
  }
});

// What the operator reads is true: an aborted migration's report says ABORTED with its reason and
// its audit (md, json, html; exit 1), never the green of the evidence it stopped at; every approval
// from the CLI goes to the workflow, whose refusal is audited and never shows the digest to approve;
// approving without --digest off a terminal needs --yes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { backfillMigration } from '../src/workflows/migration';
import type { Report } from '../src/domain/report';
import { pauseSignal, progressQuery } from '../src/workflows/messages';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CLI, backfill, type Run } from './helpers/cli';
import { endingOf, replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';

const TASK_QUEUE = 'endings';

const stack = useStack(TASK_QUEUE, async (db) => {
  await db.query('src', 'CREATE TABLE public.items (id bigint PRIMARY KEY, qty int NOT NULL, label text)');
  await db.query('src', `INSERT INTO public.items SELECT g, g % 7, 'item ' || g FROM generate_series(1, 4000) g`);
  for (const t of ['items_a', 'items_b', 'items_c', 'items_d'])
    await db.query('tgt', `CREATE TABLE public.${t} (id bigint PRIMARY KEY, qty int NOT NULL, label text)`);
});

const itemsSpec = (name: string, target: string) =>
  specFor(
    name,
    { source: 'public.items', target, chunk: { column: 'id', size: 1000 } },
    { taskQueue: TASK_QUEUE, concurrency: 2, cutover: { approval: 'required' } },
  );

const cli = () => ({ TEMPORAL_ADDRESS: stack.temporal.address });

async function atGate(name: string, target: string) {
  const spec = itemsSpec(name, target);
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(p.phase, 'awaiting_approval', JSON.stringify(p));
  assert.ok(p.digest);
  return { h, digest: p.digest };
}

/** A command run on a pseudo-terminal (util-linux `script`), `input` typed into it. */
function onTerminal(command: string, input: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/script', ['-qec', command, '/dev/null'], { env: { ...process.env, ...cli() }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    p.stdin.end(input);
  });
}

/**
 * Every command that steers a migration, on one that has ended: bad input (exit 2) naming it as
 * ended and how, never "no such migration".
 */
async function refusedAsEnded(name: string, how: string, why: string[] = []) {
  const commands = [
    [['abort', name, '--reason', 'again'], 'aborted'],
    [['pause', name], 'paused'],
    [['resume', name], 'resumed'],
    [['rerun', name, '--range', '0'], 'rerun'],
    [['approve', name, '--as', 'ops', '--digest', 'f'.repeat(32)], 'approved'],
    [['approve', name, '--as', 'ops', '--yes'], 'approved'],
    [['reject', name, '--as', 'ops', '--reason', 'late'], 'rejected'],
  ] as const;
  // At once: each is a process of its own, and none changes what the others see.
  const runs = await Promise.all(commands.map(([args]) => backfill([...args], cli())));
  for (const [k, [args, cannotBe]] of commands.entries()) {
    const r = runs[k];
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    const said = `backfill: ${name} has ended (${how}); it cannot be ${cannotBe} any more. What it left: backfill report ${name}`;
    assert.equal(r.stderr.trimEnd(), [said, ...why.map((l) => `  ${l}`)].join('\n'), args.join(' '));
  }
}

/** Polls until `f` holds (the worker tells the migration of a refusal just after the CLI hears it). */
async function eventually<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('an aborted migration reads as ABORTED with its reason and its audit, in md, json and html, and exits 1', async () => {
  const name = 'ended-aborted';
  const { h } = await atGate(name, 'public.items_a');
  // The evidence is green at the gate: the report must still not say GREEN once it is aborted.
  const reason = 'wrong target, says ops';
  const abort = await backfill(['abort', name, '--reason', reason], cli());
  assert.equal(abort.code, 0, abort.stderr);
  assert.equal((await endingOf(h)).phase, 'aborted');
  await refusedAsEnded(name, `aborted: ${reason}`);

  const md = await backfill(['report', name], cli());
  assert.equal(md.code, 1, `an aborted migration's report exits 1\n${md.stdout}${md.stderr}`);
  assert.match(md.stdout, /^# Migration ended-aborted: ABORTED$/m);
  assert.ok(md.stdout.includes(`**ABORTED: ${reason}**`), md.stdout);
  assert.doesNotMatch(md.stdout, /GREEN/);
  assert.match(md.stdout, /## Audit trail\n\n- \S+ abort \(digest `[0-9a-f]+`\): wrong target, says ops/);
  assert.doesNotMatch(md.stdout, /Nothing recorded yet/);

  const json = await backfill(['report', name, '--format', 'json'], cli());
  assert.equal(json.code, 1);
  const r = JSON.parse(json.stdout) as Report;
  assert.deepEqual(r.ending, { phase: 'aborted', reason });
  assert.equal(r.verdict, 'red');
  assert.equal(r.phase, 'aborted');
  assert.deepEqual(
    r.audit?.entries.map((e) => [e.action, e.note]),
    [['abort', reason]],
  );

  const file = join(stack.dir, 'aborted.html');
  const html = await backfill(['report', name, '--format', 'html', '-o', file], cli());
  assert.equal(html.code, 1);
  assert.match(html.stderr, /wrote the report of ended-aborted \(ABORTED: wrong target, says ops\)/);
  const page = readFileSync(file, 'utf8');
  assert.match(page, /<span class="verdict-word">ABORTED<\/span>/);
  assert.match(page, /<header class="verdict red"/);
  assert.ok(page.includes(`<strong>ABORTED: ${reason}</strong>`), 'the reason under the verdict');
  assert.match(page, /<tr[^>]*data-action="abort"/);
  assert.doesNotMatch(page, /Nothing recorded yet|verdict-word">GREEN/);

  // The ledger, after Temporal's retention, says the same.
  const ledger = await backfill(['report', name, '--ledger', 'tgt'], cli());
  assert.equal(ledger.code, 1);
  assert.ok(ledger.stdout.includes(`**ABORTED: ${reason}**`), ledger.stdout);
  await replayAndMaybeRecord(h, 'ended-aborted-at-gate');
});

test('aborted mid-way (paused in backfilling, before any report was built): ABORTED with the abort in its audit, exit 1', async () => {
  const spec = itemsSpec('ended-midway', 'public.items_d');
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  await h.signal(pauseSignal);
  const p = await waitForPhase(h, ['backfilling', 'awaiting_approval', 'failed']);
  assert.equal(p.phase, 'backfilling', JSON.stringify(p));
  assert.equal((await backfill(['abort', spec.name, '--reason', 'stop it halfway'], cli())).code, 0);
  assert.equal((await endingOf(h)).phase, 'aborted');

  const md = await backfill(['report', spec.name], cli());
  assert.equal(md.code, 1);
  assert.ok(md.stdout.includes('**ABORTED: stop it halfway**'), md.stdout);
  assert.match(md.stdout, /## Audit trail\n\n- \S+ abort: stop it halfway\n/);
  assert.doesNotMatch(md.stdout, /Nothing recorded yet|GREEN/);
  const r = JSON.parse((await backfill(['report', spec.name, '--format', 'json'], cli())).stdout) as Report;
  assert.deepEqual([r.ending, r.verdict], [{ phase: 'aborted', reason: 'stop it halfway' }, 'red']);
  assert.deepEqual(
    r.audit?.entries.map((e) => e.action),
    ['abort'],
  );
});

test('a failed migration (its source table does not exist) is named as failed, with the reason, by every command that steers it', async () => {
  const spec = itemsSpec('ended-failed', 'public.items_a');
  const h = await stack.client.workflow.start(backfillMigration, {
    taskQueue: TASK_QUEUE,
    workflowId: spec.name,
    args: [{ ...spec, tables: [{ ...spec.tables[0], source: 'public.no_such_table' }] }],
  });
  const failure = (await h.result().then(
    () => undefined,
    (e: unknown) => e,
  )) as { cause?: { message?: string } } | undefined;
  const reason = failure?.cause?.message ?? '';
  assert.match(reason, /public\.no_such_table/);
  // The reason is several lines (the spec's problems): the sentence names the ending, the reason follows.
  await refusedAsEnded(spec.name, 'failed', reason.split('\n'));
  const unknown = await backfill(['abort', 'no-such-migration'], cli());
  assert.deepEqual([unknown.code, unknown.stderr.trim()], [2, 'backfill: no such migration: no-such-migration']);
});

test('approve --digest wrong goes to the workflow: refused without the digest to approve, audited in the ledger and the report', async () => {
  const name = 'ended-refused';
  const { h, digest } = await atGate(name, 'public.items_b');
  const wrong = 'ffffffffffffffffffffffffffffffff';
  const refused = await backfill(['approve', name, '--as', 'ops', '--digest', wrong], cli());
  assert.equal(refused.code, 2, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /^backfill: refused: digest f{32} is not the evidence presented now; read the report again and approve the digest it shows$/m);
  assert.ok(!(refused.stdout + refused.stderr).includes(digest), 'the refusal shows the digest to approve');

  const audited = await eventually(
    async () =>
      (await stack.pg.query('tgt', `SELECT action, actor, digest, detail->>'reason' AS reason FROM backfill.audit WHERE migration = $1 ORDER BY id`, [name]))
        .rows,
    (rows) => rows.length > 0,
  );
  assert.deepEqual(
    audited.map((a) => [a.action, a.actor, a.digest]),
    [['approve-refused', 'ops', wrong]],
  );
  assert.match(audited[0].reason, /is not the evidence presented now/);

  // The report (the workflow's, still at the gate) carries the refused attempt.
  const md = await eventually(
    () => backfill(['report', name], cli()),
    (m) => /approve-refused by ops/.test(m.stdout),
  );
  assert.equal(md.code, 0, md.stderr);
  assert.match(md.stdout, /- \S+ approve-refused by ops \(digest `f{32}`\): digest f{32} is not the evidence presented now/);

  await replayAndMaybeRecord(h, 'ended-refused-at-gate');
  await h.terminate('test done');
});

test('approve without --digest: off a terminal exits 2 asking for --digest or --yes; on one it shows the digest and asks (n: nothing approved); with --yes it approves the digest presented', async () => {
  const name = 'ended-unasked';
  const { h, digest } = await atGate(name, 'public.items_c');
  const unasked = await backfill(['approve', name, '--as', 'ops'], cli());
  assert.equal(unasked.code, 2);
  assert.equal(
    unasked.stderr.trim(),
    `backfill: approve needs --digest <the digest you reviewed> (read the report: backfill report ${name}), or --yes to approve whatever evidence is presented now; standard input is not a terminal, so it cannot ask`,
  );
  assert.ok(!unasked.stdout.includes(digest));
  assert.equal((await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM backfill.audit WHERE migration = $1 AND action = 'approve'`, [name])).rows[0].n, 0);

  // On a terminal (util-linux `script` gives it one): the digest and summary, then a question; "n" approves nothing.
  if (existsSync('/usr/bin/script')) {
    const asked = await onTerminal(`${process.execPath} ${CLI} approve ${name} --as ops`, 'n\n');
    assert.equal(asked.code, 1, asked.stdout);
    assert.ok(asked.stdout.includes(`digest presented for approval: ${digest}`), asked.stdout);
    assert.ok(asked.stdout.includes(`approve digest ${digest} as ops? [y/N]`), asked.stdout);
    assert.match(asked.stdout, /not approved/);
    assert.equal((await h.query(progressQuery)).phase, 'awaiting_approval');
  }

  const yes = await backfill(['approve', name, '--as', 'ops', '--yes'], cli());
  assert.equal(yes.code, 0, yes.stderr);
  assert.ok(yes.stdout.includes(`digest presented for approval: ${digest}`), yes.stdout);
  assert.match(yes.stdout, new RegExp(`approved digest ${digest} as ops at `));
  const ended = await endingOf(h);
  assert.equal(ended.phase, 'completed');
  await refusedAsEnded(name, `completed, switched at ${ended.switchedAt}`);

  const done = await backfill(['report', name, '--format', 'json'], cli());
  assert.equal(done.code, 0, done.stderr);
  const r = JSON.parse(done.stdout) as Report;
  assert.equal(r.ending, undefined);
  assert.equal(r.verdict, 'green');
  assert.deepEqual(
    r.audit?.entries.map((e) => [e.action, e.actor]).filter(([a]) => a !== 'switch'),
    [['approve', 'ops']],
  );
});

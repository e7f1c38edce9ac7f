// A range that stays wrong after its copies is marked failed with its evidence; the migration waits
// in needs_attention (it does not die); `backfill rerun` copies only that range again, and
// `backfill abort` stops a migration that needs attention.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backfillMigration } from '../src/workflows/migration';
import { progressQuery, reportQuery, type Progress } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { backfill } from './helpers/cli';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { endingOf, replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';

const TASK_QUEUE = 'rerun';

// A target trigger that alters one row on its way in: every copy of its range mismatches.
const CORRUPTING_TRIGGER = (table: string) => `
CREATE FUNCTION public.corrupt_${table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id = 12345 THEN NEW.balance := NEW.balance + 0.01; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER corrupt BEFORE INSERT ON public.${table} FOR EACH ROW EXECUTE FUNCTION public.corrupt_${table}();`;

const stack = useStack(TASK_QUEUE, async (db) => {
  await db.query('src', 'CREATE TABLE public.accounts (id bigint PRIMARY KEY, balance numeric(14,2) NOT NULL, owner text)');
  await db.query('src', `INSERT INTO public.accounts SELECT g, g / 100.0, 'owner ' || g FROM generate_series(1, 20000) g`);
  await db.query('tgt', 'CREATE TABLE public.accounts_v4 (id bigint PRIMARY KEY, balance numeric(14,2) NOT NULL, owner text)');
  for (const t of ['accounts_v2', 'accounts_v3']) {
    await db.query('tgt', `CREATE TABLE public.${t} (id bigint PRIMARY KEY, balance numeric(14,2) NOT NULL, owner text)`);
    await db.query('tgt', CORRUPTING_TRIGGER(t));
  }
});

const accountsSpec = (name: string, target: string) =>
  specFor(
    name,
    { source: 'public.accounts', target, chunk: { column: 'id', size: 5000 } },
    { taskQueue: TASK_QUEUE, concurrency: 2, retries: { rangeAttempts: 2 }, cutover: { approval: 'required' } },
  );

const versions = async (where: string) =>
  (await stack.pg.query('tgt', `SELECT string_agg(id || ':' || xmin::text, ',' ORDER BY id) AS v FROM public.accounts_v2 WHERE ${where}`)).rows[0].v as string;

test('rerun: a failed range waits in needs_attention with its evidence; rerunning it rewrites nothing else', async () => {
  const spec = accountsSpec('accounts', 'public.accounts_v2');
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  const p = await waitForPhase(h, ['needs_attention', 'awaiting_approval', 'failed']);
  assert.equal(p.phase, 'needs_attention');
  assert.deepEqual(p.tables[0].ranges, { total: 4, pending: 0, inFlight: 0, verified: 3, failed: 1 });

  const report: Report = await h.query(reportQuery);
  assert.equal(report.verdict, 'red');
  const failed = report.tables[0].ranges.filter((r) => r.status !== 'verified');
  assert.equal(failed.length, 1);
  assert.equal(failed[0].index, 2);
  assert.equal(failed[0].lo, '10001');
  assert.equal(failed[0].hi, '15001');
  assert.equal(failed[0].status, 'failed');
  assert.equal(failed[0].attempts, 2);
  assert.equal(failed[0].missing, 0);
  assert.equal(failed[0].extra, 0);
  // Located: the one row the trigger altered, and the column that differs.
  assert.equal(failed[0].changed, 1);
  assert.deepEqual(failed[0].keys.changed, [['12345']]);
  assert.deepEqual(failed[0].changedColumns, { balance: 1 });
  assert.deepEqual(failed[0].failedChecks, ['checksum']);
  assert.notEqual(failed[0].source?.checksum, failed[0].target?.checksum);
  assert.equal(failed[0].rerun, 'backfill rerun accounts --table public.accounts --range 2');

  const env = { TEMPORAL_ADDRESS: stack.temporal.address };
  const md = await backfill(['report', spec.name, '--format', 'md'], env);
  assert.equal(md.code, 1, 'a red report exits 1');
  assert.match(
    md.stdout,
    /\*\*range 2\*\* `\[10001, 15001\)`: failed after 2 attempt\(s\); failed checks: checksum; 0 missing, 0 extra, 1 changed, 0 duplicated/,
  );
  assert.match(md.stdout, /changed: \["12345"\]/);
  assert.match(md.stdout, /columns that differ: balance \(1\)/);
  assert.match(md.stdout, /backfill rerun accounts --table public\.accounts --range 2/);

  const outside = await versions('id < 10001 OR id >= 15001');
  await stack.pg.query('tgt', 'DROP TRIGGER corrupt ON public.accounts_v2');
  const rerun = await backfill(['rerun', spec.name, '--table', 'public.accounts', '--range', '2'], env);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.match(rerun.stdout, /1 range\(s\) queued/);

  const gate = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(gate.phase, 'awaiting_approval', JSON.stringify(gate));
  assert.equal(await versions('id < 10001 OR id >= 15001'), outside, 'the rerun rewrote rows outside its range');

  // A rerun of a range that does not exist is bad input.
  const bad = await backfill(['rerun', spec.name, '--range', '99'], env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /no range 99/);
  // A table the migration does not have: the refusal lists the tables it has, with their ranges.
  const table = await backfill(['rerun', spec.name, '--table', 'public.acounts', '--range', '2'], env);
  assert.equal(table.code, 2, table.stdout + table.stderr);
  assert.match(
    table.stderr,
    /^backfill: refused: no table "public\.acounts" in this migration\. The tables of accounts \(--table takes the source or the target name; without it, every table\):\n {2}public\.accounts → public\.accounts_v2: --range 0 to 3$/m,
  );
  assert.match(bad.stderr, /public\.accounts → public\.accounts_v2: --range 0 to 3/);

  // Range 2 was copied three times (two attempts, then the rerun): 20,000 rows copied once, 10,000 again.
  const progress: Progress = await h.query(progressQuery);
  assert.deepEqual([progress.tables[0].rowsCopied, progress.tables[0].rowsRecopied], [30_000, 10_000]);
  const status = await backfill(['status', spec.name], env);
  assert.match(status.stdout, /4\/4 ranges verified, 0 in flight, 0 failed, 20,000 rows copied \(\+10,000 re-copied\)$/m);
  const meta = await h.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
  assert.match(meta.currentDetails ?? '', /\| 20,000 \(\+10,000 re-copied\) \|/);

  // The UI names each copy of that range as the report and the rerun do: range 2, [10001, 15001).
  const copies = (await h.fetchHistory()).events!.flatMap((e) => {
    const a = e.activityTaskScheduledEventAttributes;
    if (a?.activityType?.name !== 'copyRange') return [];
    const summary = JSON.parse(Buffer.from(e.userMetadata!.summary!.data!).toString('utf8')) as string;
    const input = JSON.parse(Buffer.from(a.input!.payloads![0].data!).toString('utf8')) as { rangeIndex: number; attempt: number };
    return [{ summary, index: input.rangeIndex, attempt: input.attempt }];
  });
  assert.deepEqual(
    copies.filter((c) => c.index === 2).map((c) => [c.summary, c.attempt]),
    [
      ['copy public.accounts range 2 of 4 [10001, 15001)', 1],
      ['copy public.accounts range 2 of 4 [10001, 15001)', 2],
      ['copy public.accounts range 2 of 4 [10001, 15001)', 1],
    ],
  );
  for (const c of copies) assert.equal(/ range (\d+) of 4 /.exec(c.summary)?.[1], String(c.index), c.summary);

  const approve = await backfill(['approve', spec.name, '--as', 'ops', '--yes'], env);
  assert.equal(approve.code, 0, approve.stderr);
  assert.match(approve.stdout, /GREEN/);
  const result = await h.result();
  assert.equal(result.phase, 'completed');
  await replayAndMaybeRecord(h, 'located-rerun-then-approved');
});

test('abort: a migration that needs attention stops when told, and nothing is switched', async () => {
  const spec = accountsSpec('accounts-abort', 'public.accounts_v3');
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
  assert.equal((await waitForPhase(h, ['needs_attention', 'failed'])).phase, 'needs_attention');
  const env = { TEMPORAL_ADDRESS: stack.temporal.address };
  const abort = await backfill(['abort', spec.name, '--reason', 'wrong target'], env);
  assert.equal(abort.code, 0, abort.stderr);
  const result = await endingOf(h);
  assert.equal(result.phase, 'aborted');
  assert.equal(result.reason, 'wrong target');
  const status = await backfill(['status', spec.name], env);
  assert.equal(status.code, 1);
  assert.match(status.stdout, /accounts-abort: aborted – wrong target/);
  const audit = await stack.pg.query('tgt', `SELECT action FROM backfill.audit WHERE migration = $1`, [spec.name]);
  assert.deepEqual(
    audit.rows.map((r) => r.action),
    ['abort'],
  );
  await replayAndMaybeRecord(h, 'located-then-aborted');
});

test('start --wait: with automatic approval the CLI follows the migration to the end and exits 0', async () => {
  const spec = { ...accountsSpec('accounts-auto', 'public.accounts_v4'), cutover: { approval: 'auto' } };
  const file = join(stack.dir, 'spec.yaml');
  writeFileSync(file, JSON.stringify(spec));
  const r = await backfill(['start', file, '--wait'], { TEMPORAL_ADDRESS: stack.temporal.address });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /started migration accounts-auto/);
  assert.match(r.stdout, /completed: switched at/);
  assert.match(r.stderr, /accounts-auto: backfilling|accounts-auto: reconciling|accounts-auto: completed/);
  const n = await stack.pg.query('tgt', 'SELECT count(*)::int AS n FROM public.accounts_v4');
  assert.equal(n.rows[0].n, 20000);
  const status = await backfill(['status', spec.name], { TEMPORAL_ADDRESS: stack.temporal.address });
  assert.equal(status.code, 0);
  assert.match(status.stdout, /accounts-auto: completed/);
  // What the Temporal UI shows at the top of the page, from the start.
  const d = await stack.client.workflow.getHandle(spec.name).describe();
  assert.equal(await d.staticSummary(), 'backfill accounts-auto: 1 table entry, copy mode, src → tgt');
  assert.match((await d.staticDetails()) ?? '', /\| public\.accounts \| public\.accounts_v4 \|/);
});

// Never green on lost data, for columns and partitions: every source column is copied or named in
// `omit`, every target column written or filled on purpose; `validate` shows the column plan and
// evaluates every cast over the source's rows; the report lists the columns and the digest covers
// them. A column or partition that changes on either side after planning is seen at the gate and
// again before the switch, in copy mode and with a change column, and stops the migration with a
// sentence naming the table (or is followed, where a proof of the whole table still comes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { backfillMigration } from '../src/workflows/migration';
import { approveCutoverUpdate, pauseSignal, reportQuery, resumeSignal } from '../src/workflows/messages';
import type { Report, TableEvidence } from '../src/domain/report';
import { reportFromEvidence } from '../src/report/digest';
import { renderMarkdown } from '../src/report/render';
import { columnChanges } from '../src/domain/columns';
import { replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { specFor } from './helpers/spec';
import { backfill } from './helpers/cli';

const TASK_QUEUE = 'columns';

const ITEMS = (t: string, extra = '') =>
  `CREATE TABLE ${t} (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), updated_at timestamptz NOT NULL DEFAULT now()${extra})`;
const FILL = (t: string, n: number) =>
  `INSERT INTO ${t} (id, name, amount, updated_at) SELECT g, 'item ' || g, g * 1.25, '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, ${n}) g`;

const stack = useStack(TASK_QUEUE, async (db) => {
  // A source column the target lacks (the case that went green with the column's data gone).
  await db.query('src', ITEMS('public.lossy', ', legacy_code text'));
  await db.query('src', `${FILL('public.lossy', 2_000)}; UPDATE public.lossy SET legacy_code = 'L' || id`);
  await db.query('tgt', ITEMS('public.lossy'));
  // A target column the source lacks: nullable, no default.
  await db.query('src', ITEMS('public.thin'));
  await db.query('src', FILL('public.thin', 500));
  await db.query('tgt', ITEMS('public.thin', ", region text, note text DEFAULT 'none'"));
  // A cast the source's data cannot take: text holding 'cust 1' into an integer.
  await db.query('src', 'CREATE TABLE public.customers (id bigint PRIMARY KEY, ref text NOT NULL)');
  await db.query('src', `INSERT INTO public.customers SELECT g, g::text FROM generate_series(1, 1000) g`);
  await db.query('src', `UPDATE public.customers SET ref = 'cust 1' WHERE id = 777`);
  await db.query('tgt', 'CREATE TABLE public.customers (id bigint PRIMARY KEY, ref integer NOT NULL)');
  // Casts PostgreSQL makes silently: a text cut to a varchar's length, a numeric rounded to a scale.
  await db.query('src', 'CREATE TABLE public.narrow (id bigint PRIMARY KEY, code text NOT NULL, amt numeric NOT NULL)');
  await db.query('src', `INSERT INTO public.narrow SELECT g, 'c' || (g % 1000), g / 4.0 FROM generate_series(1, 3000) g`);
  await db.query('tgt', 'CREATE TABLE public.narrow (id bigint PRIMARY KEY, code varchar(5) NOT NULL, amt numeric(12,2) NOT NULL)');
  await db.query('src', `CREATE ROLE app LOGIN PASSWORD 'app'`);
  // Drift cases: static copy mode, a change column, partitions.
  for (const t of ['public.static_add', 'public.delta_retype']) {
    await db.query('src', ITEMS(t));
    await db.query('src', FILL(t, 3_000));
    await db.query('tgt', ITEMS(t));
  }
  for (const d of ['src', 'tgt']) {
    await db.query(d, `CREATE TABLE public.events (id bigint NOT NULL, at date NOT NULL, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)`);
    await db.query(d, `CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`);
    await db.query(d, `CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`);
    await db.query(d, 'CREATE TABLE public.switched (migration text)');
  }
  await db.query('src', `INSERT INTO public.events SELECT g, DATE '2025-01-01' + (g % 700), 'e' || g FROM generate_series(1, 2000) g`);
  for (const d of ['src', 'tgt']) {
    await db.query(
      d,
      `CREATE TABLE public.devents (id bigint NOT NULL, at date NOT NULL, v text, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id, at)) PARTITION BY RANGE (at)`,
    );
    await db.query(d, `CREATE TABLE public.devents_2025 PARTITION OF public.devents FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`);
  }
  await db.query('src', `INSERT INTO public.devents SELECT g, DATE '2025-01-01' + (g % 365), 'e' || g, '2025-06-01' FROM generate_series(1, 2000) g`);
  await db.query('src', `GRANT SELECT, INSERT, UPDATE, DELETE ON public.devents TO app`);
  await db.query('src', `GRANT SELECT, INSERT, UPDATE, DELETE ON public.delta_retype TO app`);
});

const env = () => ({ BACKFILL_DB_SRC: stack.pg.url('src'), BACKFILL_DB_TGT: stack.pg.url('tgt') });
const write = (name: string, doc: unknown) => {
  const p = join(stack.dir, name);
  writeFileSync(p, JSON.stringify(doc));
  return p;
};

/** The workflow's failure, as the Temporal CLI and UI show it: its type and its message. */
async function failureOf(h: WorkflowHandle): Promise<{ type?: string; message: string }> {
  try {
    await h.result();
  } catch (e) {
    assert.ok(e instanceof WorkflowFailedError, String(e));
    const cause = e.cause as { type?: string; message?: string } | undefined;
    return { type: cause?.type, message: String(cause?.message) };
  }
  assert.fail('the migration completed');
}

const switchOf = (name: string) => ({ approval: 'required', switch: { connection: 'tgt', sql: `INSERT INTO public.switched VALUES ('${name}')` } });
const switched = async (name: string) =>
  (await stack.pg.query('tgt', 'SELECT count(*)::int AS n FROM public.switched WHERE migration = $1', [name])).rows[0].n as number;

test('columns: a source column the target lacks is refused by validate and by planning, until the spec names it in omit', { timeout: 120_000 }, async () => {
  const table = { source: 'public.lossy', target: 'public.lossy', chunk: { column: 'id', size: 500 } };
  const refused = await backfill(['validate', write('lossy.json', specFor('lossy', table))], env());
  assert.equal(refused.code, 2, refused.stdout);
  assert.match(
    refused.stderr,
    /tables\[0\]: source column "legacy_code" of public\.lossy has no column in public\.lossy: its values would be lost; add the column to the target, or name it in tables\[0\]\.omit/,
  );
  assert.doesNotMatch(refused.stdout, /the databases match the spec/);

  // Started anyway: it fails in planning with the same sentence, before any row is written.
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: 'lossy', args: [specFor('lossy', table)] });
  const f = await failureOf(h);
  assert.match(f.message, /source column "legacy_code" of public\.lossy has no column/);
  assert.equal((await stack.pg.query('tgt', 'SELECT count(*)::int AS n FROM public.lossy')).rows[0].n, 0, 'nothing written');

  // Named in omit: validate shows the plan, the migration completes, the report lists the column left out.
  const doc = specFor('lossy-omit', { ...table, omit: ['legacy_code'] }, { taskQueue: TASK_QUEUE, cutover: { approval: 'auto' } });
  const ok = await backfill(['validate', write('lossy-omit.json', doc)], env());
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /public\.lossy -> public\.lossy: 4 copied, 1 left out/);
  assert.match(ok.stdout, /^ {4}legacy_code: source column left out \(omit\)$/m);
  assert.match(ok.stdout, /^ {4}amount: copied \(numeric\(12,2\)\)$/m);
  const h2 = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
  const r = await h2.result();
  assert.equal(r.phase, 'completed', r.reason);
  const report: Report = await h2.query(reportQuery);
  assert.deepEqual(
    report.tables[0].columns?.map((c) => [c.column, c.fate]),
    [
      ['id', 'copied'],
      ['name', 'copied'],
      ['amount', 'copied'],
      ['updated_at', 'copied'],
      ['legacy_code', 'omitted'],
    ],
  );
  assert.match(renderMarkdown(report), /legacy_code: source column left out \(omit\)/);
});

test('columns: a target column no source column writes needs a default or omit; validate names it', { timeout: 60_000 }, async () => {
  const table = { source: 'public.thin', target: 'public.thin' };
  const refused = await backfill(['validate', write('thin.json', specFor('thin', table))], env());
  assert.equal(refused.code, 2, refused.stdout);
  assert.match(
    refused.stderr,
    /tables\[0\]: target column "region" of public\.thin is not written \(public\.thin has no such column\) and has no default: every row would hold NULL there/,
  );
  assert.doesNotMatch(refused.stderr, /"note"/, 'a column with a default is filled by it');
  const ok = await backfill(['validate', write('thin-omit.json', specFor('thin', { ...table, omit: ['region'] }))], env());
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^ {4}region: target column left NULL \(omit\)$/m);
  assert.match(ok.stdout, /^ {4}note: not in the source, filled by the target's default$/m);
  const wrong = await backfill(['validate', write('thin-wrong.json', specFor('thin', { ...table, omit: ['region', 'colour'] }))], env());
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /tables\[0\]\.omit: column "colour" is in neither public\.thin nor public\.thin/);
});

test('columns: validate evaluates a cast over every source row and names the value it cannot take', { timeout: 60_000 }, async () => {
  const doc = specFor('customers', { source: 'public.customers', target: 'public.customers' });
  const refused = await backfill(['validate', write('customers.json', doc)], env());
  assert.equal(refused.code, 2, refused.stdout);
  assert.match(
    refused.stderr,
    /tables\[0\]\.columns: "ref" \(ref: cast text → integer\) fails on the source's rows: invalid input syntax for type integer: "cust 1"/,
  );
  await stack.pg.query('src', `UPDATE public.customers SET ref = '777' WHERE id = 777`);
  const ok = await backfill(['validate', write('customers-ok.json', doc)], env());
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^ {4}ref: cast text → integer$/m);
});

test(
  "columns: a cast that would cut a text to a varchar's length or round a numeric to a scale is named by validate, and its ranges are never green",
  { timeout: 120_000 },
  async () => {
    // Every value fits at first: validate passes and shows the casts.
    const doc = specFor('narrow', { source: 'public.narrow', target: 'public.narrow', chunk: { column: 'id', size: 1_000 } }, { taskQueue: TASK_QUEUE });
    const ok = await backfill(['validate', write('narrow-ok.json', doc)], env());
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ {4}code: cast text → character varying\(5\)$/m);
    // One value too long, one too precise.
    await stack.pg.query('src', `UPDATE public.narrow SET code = 'toolongvalue' WHERE id = 1500`);
    await stack.pg.query('src', `UPDATE public.narrow SET amt = 1.234 WHERE id = 2500`);
    const refused = await backfill(['validate', write('narrow.json', doc)], env());
    assert.equal(refused.code, 2, refused.stdout);
    assert.match(refused.stderr, /tables\[0\]\.columns: "code" \(code: cast text → character varying\(5\)\) would cut or round the value of 1 source row\(s\)/);
    assert.match(refused.stderr, /"amt" \(amt: cast numeric → numeric\(12,2\)\) would cut or round the value of 1 source row\(s\)/);
    // Run anyway: the copy casts as PostgreSQL does, and the two ranges holding those rows differ.
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
    const p = await waitForPhase(h, ['needs_attention', 'awaiting_approval', 'completed', 'failed']);
    assert.equal(p.phase, 'needs_attention', p.detail);
    const report: Report = await h.query(reportQuery);
    assert.equal(report.verdict, 'red');
    const red = report.tables[0].ranges.filter((r) => r.status !== 'verified');
    assert.deepEqual(
      red.map((r) => [r.index, Object.keys(r.changedColumns)]),
      [
        [1, ['code']],
        [2, ['amt']],
      ],
    );
    await h.terminate('the test is done');
  },
);

test('columns: the digest covers the column plan: the same ranges with another column left out present another digest', () => {
  const evidence = (omitted: string): TableEvidence => ({
    source: 'public.t',
    target: 'public.t',
    planned: 1,
    columns: [
      { column: 'id', fate: 'copied', to: 'bigint' },
      { column: omitted, fate: 'omitted', side: 'source' },
    ],
    ranges: [],
    totals: null,
  });
  const digest = (e: TableEvidence) =>
    reportFromEvidence({ migration: 'm', phase: 'awaiting_approval', generatedAt: '', evidence: [e], delta: { watermark: null, rowsApplied: 0, remaining: 0 } })
      .digest;
  assert.notEqual(digest(evidence('a')), digest(evidence('b')));
  assert.equal(digest(evidence('a')), digest(evidence('a')));
  assert.deepEqual(
    columnChanges(
      [{ column: 'id', fate: 'copied', to: 'bigint' }],
      [
        { column: 'id', fate: 'cast', from: 'integer', to: 'bigint' },
        { column: 'p', fate: 'copied', to: 'integer' },
      ],
    ),
    ['"id" was id: copied (bigint), now id: cast integer → bigint', '"p" is new (p: copied (integer))'],
  );
});

test(
  'drift, copy mode: a column added on both sides between the copy and the gate stops the migration with a sentence, nothing switched',
  { timeout: 120_000 },
  async () => {
    const name = 'static-add';
    const doc = specFor(
      name,
      { source: 'public.static_add', target: 'public.static_add', chunk: { column: 'id', size: 200 } },
      { taskQueue: TASK_QUEUE, concurrency: 1, cutover: switchOf(name) },
    );
    // Paused from its start: the column is added while ranges are still to be copied.
    const h = await stack.client.workflow.signalWithStart(backfillMigration, {
      taskQueue: TASK_QUEUE,
      workflowId: name,
      args: [doc],
      signal: pauseSignal,
      signalArgs: [],
    });
    await waitForPhase(h, ['backfilling']);
    for (const d of ['src', 'tgt']) await stack.pg.query(d, 'ALTER TABLE public.static_add ADD COLUMN priority int');
    await stack.pg.query('src', 'UPDATE public.static_add SET priority = id % 5');
    await h.signal(resumeSignal);
    const f = await failureOf(h);
    assert.equal(f.type, 'SchemaChanged');
    assert.match(f.message, /public\.static_add → public\.static_add: the columns changed after planning: "priority" is new \(priority: copied \(integer\)\)/);
    assert.match(f.message, /abort, then start the migration again under a new name/);
    assert.doesNotMatch(f.message, /\.js|\bat \w+ \(/, 'no stack, no source path');
    assert.equal(await switched(name), 0, 'nothing switched');
    await replayAndMaybeRecord(h, 'drift-column-added-before-gate');
  },
);

test('drift, copy mode: a partition attached with rows while the gate waits is seen after the approval; nothing switched', { timeout: 120_000 }, async () => {
  const name = 'events-attach';
  const doc = specFor(name, { source: 'public.events', target: 'public.events', key: ['id', 'at'] }, { taskQueue: TASK_QUEUE, cutover: switchOf(name) });
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: name, args: [doc] });
  const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(p.phase, 'awaiting_approval', p.detail);
  // Rows that arrive without a single insert into the partitioned table.
  await stack.pg.query('src', `CREATE TABLE public.events_2027 (LIKE public.events)`);
  await stack.pg.query('src', `INSERT INTO public.events_2027 SELECT g, DATE '2027-03-01', 'late' FROM generate_series(1, 50) g`);
  await stack.pg.query('src', `ALTER TABLE public.events ATTACH PARTITION public.events_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')`);
  await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
  const f = await failureOf(h);
  assert.equal(f.type, 'SchemaChanged');
  assert.match(
    f.message,
    /public\.events → public\.events: partitions changed since they were last proven: public\.events_2027 attached or created on the source/,
  );
  assert.equal(await switched(name), 0, 'nothing switched');
});

test(
  'drift, change column: a column retyped on the target while the gate waits stops the final check, unfrozen, nothing switched',
  { timeout: 120_000 },
  async () => {
    const name = 'delta-retype';
    const doc = specFor(
      name,
      {
        source: 'public.delta_retype',
        target: 'public.delta_retype',
        chunk: { column: 'id', size: 1_000 },
        delta: { column: 'updated_at', overlap: '0 seconds' },
      },
      {
        taskQueue: TASK_QUEUE,
        catchUp: { interval: '1 second', maxLag: '10 seconds' },
        cutover: {
          ...switchOf(name),
          freeze: { connection: 'src', sql: 'REVOKE INSERT, UPDATE, DELETE ON public.delta_retype FROM app' },
          unfreeze: { connection: 'src', sql: 'GRANT INSERT, UPDATE, DELETE ON public.delta_retype TO app' },
        },
      },
    );
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: name, args: [doc] });
    const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
    assert.equal(p.phase, 'awaiting_approval', p.detail);
    await stack.pg.query('tgt', 'ALTER TABLE public.delta_retype ALTER COLUMN amount TYPE numeric(14,4)');
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
    const f = await failureOf(h);
    assert.equal(f.type, 'SchemaChanged');
    assert.match(
      f.message,
      /public\.delta_retype → public\.delta_retype: the columns changed after planning: "amount" was amount: copied \(numeric\(12,2\)\), now amount: cast numeric\(12,2\) → numeric\(14,4\)/,
    );
    assert.equal(await switched(name), 0, 'nothing switched');
    // The freeze was taken back: the application may write again.
    const rights = await stack.pg.query('src', `SELECT has_table_privilege('app', 'public.delta_retype', 'UPDATE') AS ok`);
    assert.equal(rights.rows[0].ok, true, 'unfrozen');
    await replayAndMaybeRecord(h, 'drift-retyped-in-final-check');
  },
);

test(
  'drift, change column: a partition attached with rows (old change-column values) while the gate waits is followed by the final sweep; exact',
  { timeout: 120_000 },
  async () => {
    const name = 'delta-attach';
    const doc = specFor(
      name,
      { source: 'public.devents', target: 'public.devents', key: ['id', 'at'], delta: { column: 'updated_at', overlap: '0 seconds' } },
      {
        taskQueue: TASK_QUEUE,
        catchUp: { interval: '1 second', maxLag: '10 seconds' },
        cutover: {
          ...switchOf(name),
          freeze: { connection: 'src', sql: 'REVOKE INSERT, UPDATE, DELETE ON public.devents FROM app' },
          unfreeze: { connection: 'src', sql: 'GRANT INSERT, UPDATE, DELETE ON public.devents TO app' },
        },
      },
    );
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: name, args: [doc] });
    const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
    assert.equal(p.phase, 'awaiting_approval', p.detail);
    // Rows whose change column is older than every watermark: no delta round would read them.
    await stack.pg.query('src', 'CREATE TABLE public.devents_2026 (LIKE public.devents INCLUDING DEFAULTS)');
    await stack.pg.query('src', `INSERT INTO public.devents_2026 SELECT g, DATE '2026-02-01', 'late', '2020-01-01' FROM generate_series(1, 120) g`);
    await stack.pg.query('src', `ALTER TABLE public.devents ATTACH PARTITION public.devents_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`);
    await stack.pg.query('tgt', `CREATE TABLE public.devents_2026 PARTITION OF public.devents FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`);
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
    const r = await h.result();
    assert.equal(r.phase, 'completed', r.reason);
    assert.equal(await switched(name), 1);
    const md5 = async (db: string) =>
      (await stack.pg.query(db, `SELECT count(*)::int AS n, md5(string_agg(t::text, ',' ORDER BY id, at)) AS h FROM public.devents t`)).rows[0];
    assert.deepEqual(await md5('tgt'), await md5('src'));
    assert.equal((await md5('src')).n, 2120);
  },
);

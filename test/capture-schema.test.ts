// Change capture against partitioned tables and schema changes, end to end against real servers.
// A partitioned source (3 range partitions, key (id, created_on)) with writes before and after the
// checkpoint, a row moved between partitions, and a partition created mid-migration: completed,
// and the target equal to the source by an independent md5 (on PostgreSQL 17 and on 15). A column
// added, dropped or retyped on the source mid-migration: the migration stops with a sentence that
// names the table and the column; it never ends green.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startPostgres, systemPostgresBin, type PostgresServer } from '../src/infra/postgres';
import { backfillMigration } from '../src/workflows/migration';
import { progressQuery, reportQuery, type Progress } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { captureOf } from '../src/spec/schema';
import { envNameForAlias } from '../src/spec/aliases';
import { approveUntilCompleted, waitForPhase } from './helpers/temporal';
import { onTeardown, setup, useStack } from './hooks';
import { parsed, specFor, type TableDoc } from './helpers/spec';
import { until } from './helpers/fault-points';
import { tableFingerprint } from '../src/infra/writer';

const TASK_QUEUE = 'capture-schema';
const ROWS = 3_000;
const PG15 = existsSync(`${systemPostgresBin(15)}/postgres`);

let pg15: PostgresServer | undefined;

const PARTITIONED = (table: string) => `
CREATE TABLE ${table} (id bigint NOT NULL, created_on date NOT NULL, qty int NOT NULL, note text, PRIMARY KEY (id, created_on)) PARTITION BY RANGE (created_on);
CREATE TABLE ${table}_2024_01 PARTITION OF ${table} FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE ${table}_2024_02 PARTITION OF ${table} FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE TABLE ${table}_2024_03 PARTITION OF ${table} FOR VALUES FROM ('2024-03-01') TO ('2024-04-01')`;
/** 91 days: January to March 2024, the three partitions. */
const DAY_OF = (id: string) => `date '2024-01-01' + ((${id}) % 91)::int`;
const FILL = (table: string) => `INSERT INTO ${table} SELECT i, ${DAY_OF('i')}, i % 17, 'n' || i FROM generate_series(1, ${ROWS}) i`;
const PLAIN = (table: string) => `CREATE TABLE ${table} (id bigint PRIMARY KEY, qty int NOT NULL, note text)`;

async function preparePartitioned(server: PostgresServer, src: string, tgt: string): Promise<void> {
  await server.query(src, PARTITIONED('public.items'));
  await server.query(src, FILL('public.items'));
  await server.query(tgt, PARTITIONED('public.items'));
}

const stack = useStack(TASK_QUEUE, async (db) => {
  await preparePartitioned(db, 'src', 'tgt');
  for (const t of ['drift_add', 'drift_drop', 'drift_type']) {
    await db.query('src', PLAIN(`public.${t}`));
    await db.query('src', `INSERT INTO public.${t} SELECT i, i % 17, 'n' || i FROM generate_series(1, ${ROWS}) i`);
    await db.query('tgt', PLAIN(`public.${t}`));
  }
});

setup(async () => {
  if (PG15) {
    pg15 = await startPostgres({ version: 15 });
    onTeardown(() => pg15?.stop());
    for (const db of ['src15', 'tgt15']) {
      await pg15.createDatabase(db);
      process.env[envNameForAlias(db)] = pg15.url(db);
    }
    await preparePartitioned(pg15, 'src15', 'tgt15');
  }
});

function spec(name: string, table: TableDoc, o: { source?: string; target?: string } = {}) {
  return specFor(
    name,
    { chunk: { column: 'id', size: 1000 }, ...table },
    {
      source: o.source ?? 'src',
      target: o.target ?? 'tgt',
      taskQueue: TASK_QUEUE,
      concurrency: 2,
      capture: 'logical',
      catchUp: { maxLag: '3 seconds', interval: '1 second' },
      cutover: { approval: 'required' },
    },
  );
}

/** The migration's slots (its own and its epochs') and publication still on the source. */
async function leftOnSource(server: PostgresServer, db: string, doc: object): Promise<{ slots: number; publications: number }> {
  const c = captureOf(parsed(doc))!;
  const slots = await server.query(db, 'SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name LIKE $1', [`${c.slot.slice(0, 40)}%`]);
  const pubs = await server.query(db, 'SELECT count(*)::int AS n FROM pg_publication WHERE pubname = $1', [c.publication]);
  return { slots: slots.rows[0].n, publications: pubs.rows[0].n };
}

/** Inserts, updates, deletes, and updates that move a row to another partition, until stopped. */
function partitionWriter(url: string, firstId: number) {
  const counts = { inserts: 0, updates: 0, moves: 0, deletes: 0 };
  let next = firstId;
  let stopping = false;
  const pick = () => 1 + Math.floor(Math.random() * (next - 1));
  const done = (async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      while (!stopping) {
        const r = Math.random();
        if (r < 0.35) {
          await c.query(`INSERT INTO public.items VALUES ($1, ${DAY_OF('$1::bigint')}, 1, 'w')`, [next++]);
          counts.inserts++;
        } else if (r < 0.65) {
          counts.updates += (await c.query(`UPDATE public.items SET qty = qty + 1, note = note || '+' WHERE id = $1`, [pick()])).rowCount ?? 0;
        } else if (r < 0.85) {
          // 31 days on, within the three partitions: mostly into the next one.
          const moved = await c.query(`UPDATE public.items SET created_on = date '2024-01-01' + ((created_on - date '2024-01-01' + 31) % 91) WHERE id = $1`, [
            pick(),
          ]);
          counts.moves += moved.rowCount ?? 0;
        } else {
          counts.deletes += (await c.query(`DELETE FROM public.items WHERE id = $1`, [pick()])).rowCount ?? 0;
        }
        await sleep(15);
      }
    } finally {
      await c.end();
    }
  })();
  return {
    counts,
    nextId: () => next,
    async stop() {
      stopping = true;
      await done;
    },
  };
}

async function partitionedMigration(server: PostgresServer, name: string, src: string, tgt: string): Promise<void> {
  const writer = partitionWriter(server.url(src), ROWS + 1);
  let completed = false;
  try {
    const doc = spec(name, { source: 'public.items', target: 'public.items', key: ['id', 'created_on'] }, { source: src, target: tgt });
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
    const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed'], 120_000);
    assert.equal(p.phase, 'awaiting_approval', p.detail);
    assert.match(p.capture?.checkpoint ?? '', /^[0-9A-F]+\/[0-9A-F]+$/, 'the evidence is at a checkpoint');
    const pub = await server.query(src, 'SELECT pubviaroot FROM pg_publication WHERE pubname = $1', [captureOf(parsed(doc))!.publication]);
    assert.equal(pub.rows[0]?.pubviaroot, true, 'the publication sends partitions under the root');
    // Writes after the checkpoint, then a partition created on both sides (the target's first),
    // rows inserted into it and rows moved into it from the others.
    const at = { ...writer.counts };
    await until('writes of every kind after the checkpoint', async () =>
      (['inserts', 'updates', 'moves', 'deletes'] as const).every((k) => writer.counts[k] > at[k]),
    );
    await writer.stop();
    assert.ok(writer.counts.inserts > 0 && writer.counts.updates > 0 && writer.counts.moves > 0 && writer.counts.deletes > 0, JSON.stringify(writer.counts));
    const april = `CREATE TABLE public.items_2024_04 PARTITION OF public.items FOR VALUES FROM ('2024-04-01') TO ('2024-05-01')`;
    await server.query(tgt, april);
    await server.query(src, april);
    const first = writer.nextId() + 10_000;
    await server.query(
      src,
      `INSERT INTO public.items SELECT i, date '2024-04-01' + (i % 30)::int, 7, 'april' FROM generate_series($1::bigint, $1::bigint + 199) i`,
      [first],
    );
    const moved = await server.query(
      src,
      `UPDATE public.items SET created_on = date '2024-04-15', qty = qty + 100 WHERE id IN (SELECT id FROM public.items WHERE created_on < '2024-04-01' ORDER BY id LIMIT 5)`,
    );
    assert.equal(moved.rowCount, 5);
    // The last writes applied at the gate, then the evidence as it is now is approved.
    const deadline = Date.now() + 60_000;
    let now: Progress = await h.query(progressQuery);
    while (
      Date.now() < deadline &&
      !(now.phase === 'awaiting_approval' && (now.capture?.lagSeconds ?? 1) === 0 && now.capture!.transactions > p.capture!.transactions)
    ) {
      assert.ok(now.phase !== 'failed' && now.phase !== 'needs_attention', now.detail);
      await sleep(250);
      now = await h.query(progressQuery);
    }
    assert.equal(now.phase, 'awaiting_approval', now.detail);
    const report: Report = await h.query(reportQuery);
    // The partition created since the checkpoint: the final check voids the approval once, and a new
    // checkpoint proves the table with it (the gate presents it at once if it saw the change first).
    const approved = await approveUntilCompleted(h, report.digest);
    assert.ok(approved.length <= 2, `approvals: ${approved.length}`);
    const r = await h.result();
    assert.equal(r.phase, 'completed', r.reason);
    // Through the partitioned root, the rows written since the checkpoint (moved ones included)
    // prove the window on this server too.
    assert.match(r.finalWindow?.proof ?? '', /^the rows account for every write since the checkpoint/);
    completed = true;
    assert.deepEqual(await leftOnSource(server, src, doc), { slots: 0, publications: 0 });
  } finally {
    await writer.stop();
  }
  assert.ok(completed);
  // Exact: every column of every row, by a query of its own, and the new partition's rows are there.
  const [s, t] = await Promise.all([tableFingerprint(server.url(src), 'public.items'), tableFingerprint(server.url(tgt), 'public.items')]);
  assert.deepEqual(t, s);
  const april = await server.query(tgt, 'SELECT count(*)::int AS n FROM public.items_2024_04');
  assert.equal(april.rows[0].n, 205, 'the rows inserted into and moved into the partition created mid-migration');
}

test(
  'capture, partitioned: writes before and after the checkpoint, rows moved between partitions, a partition created mid-migration; completed and exact (PostgreSQL 17)',
  { timeout: 180_000 },
  async () => {
    await partitionedMigration(stack.pg, 'parted-17', 'src', 'tgt');
  },
);

test(
  'capture, partitioned, on PostgreSQL 15: the same, completed and exact',
  { timeout: 180_000, skip: !PG15 && !process.env.CI ? `PostgreSQL 15 is not installed (${systemPostgresBin(15)}; apt-get install postgresql-15)` : false },
  async () => {
    assert.ok(PG15 && pg15, `PostgreSQL 15 must be installed under CI (${systemPostgresBin(15)}/postgres is missing)`);
    const v = await pg15.query('src15', `SELECT current_setting('server_version_num')::int AS v`);
    assert.ok(v.rows[0].v >= 150000 && v.rows[0].v < 160000, String(v.rows[0].v));
    await partitionedMigration(pg15, 'parted-15', 'src15', 'tgt15');
  },
);

/** The sentence a failed migration ends with. */
async function failure(h: { result(): Promise<unknown> }): Promise<string> {
  const err = await h.result().then(
    (r) => assert.fail(`the migration must not complete: ${JSON.stringify(r)}`),
    (e: Error) => e,
  );
  return String((err as { cause?: { message?: string } }).cause?.message ?? err.message);
}

test(
  'capture, schema drift: a column added (and filled) on the source at the gate, one dropped, one retyped: each migration stops with a sentence naming table and column, and leaves no slot',
  { timeout: 180_000 },
  async () => {
    const cases = [
      {
        table: 'drift_add',
        change: async () => {
          await stack.pg.query('tgt', 'ALTER TABLE public.drift_add ADD COLUMN priority int');
          await stack.pg.query('src', 'ALTER TABLE public.drift_add ADD COLUMN priority int');
          await stack.pg.query('src', 'UPDATE public.drift_add SET priority = id % 3 WHERE id <= 500');
        },
        says: /a column "priority" was added to public\.drift_add on the source after planning; its values would not reach the target: abort, then start the migration again with a new name \(add the column to the target, or name it in omit\)/,
      },
      {
        table: 'drift_drop',
        change: async () => {
          await stack.pg.query('src', 'ALTER TABLE public.drift_drop DROP COLUMN note');
          await stack.pg.query('src', 'UPDATE public.drift_drop SET qty = qty + 1 WHERE id <= 10');
        },
        says: /the column "note" of public\.drift_drop was dropped or renamed on the source after planning/,
      },
      {
        table: 'drift_type',
        change: async () => {
          await stack.pg.query('src', 'ALTER TABLE public.drift_type ALTER COLUMN qty TYPE bigint');
          await stack.pg.query('src', 'UPDATE public.drift_type SET qty = qty + 1 WHERE id <= 10');
        },
        says: /the column "qty" of public\.drift_type changed type on the source after planning \(type OID 23 then, 20 now\)/,
      },
    ];
    // The three at once: each on its own table, slot and publication.
    await Promise.all(
      cases.map(async (c) => {
        const doc = spec(c.table.replace('_', '-'), { source: `public.${c.table}`, target: `public.${c.table}` });
        const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
        const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed'], 120_000);
        assert.equal(p.phase, 'awaiting_approval', p.detail);
        await c.change();
        const why = await failure(h);
        if (process.env.BACKFILL_SHOW_MESSAGES) console.log(`${c.table}: ${why}`);
        assert.match(why, c.says);
        assert.doesNotMatch(why, /postgres(ql)?:\/\/|\n\s+at /, 'no connection string, no stack trace');
        assert.deepEqual(await leftOnSource(stack.pg, 'src', doc), { slots: 0, publications: 0 }, 'the failed migration left nothing on the source');
      }),
    );
  },
);

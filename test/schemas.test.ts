// Real schemas, as users bring them: foreign keys between most tables on the target (a table that
// references itself, a two-table cycle, a composite key), names of every kind, no chunk settings,
// and a target constraint that refuses a row. Real PostgreSQL, real Temporal, a worker killed once
// (inside copies held at a gate, test/helpers/fault-points.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backfillMigration } from '../src/workflows/migration';
import { approveCutoverUpdate, progressQuery, reportQuery, rerunUpdate } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { fingerprint } from './helpers/sample';
import { KILLED_WORKER_HEARTBEAT } from './helpers/spec';
import { backfill } from './helpers/cli';
import { useStack } from './hooks';
import { endingOf, KILLED_WORKER_ENV, replayAndMaybeRecord, spawnWorker, waitForPhase, type WorkerProcess } from './helpers/temporal';
import { assertRanAgain, holdEvery, tableGate } from './helpers/fault-points';

const TASK_QUEUE = 'schemas';

/** An online music store, as in the well-known sample database, plus a two-table cycle and a Prisma-style table. */
const STORE = `
CREATE TABLE artist (artist_id int PRIMARY KEY, name text);
CREATE TABLE album (album_id int PRIMARY KEY, title text NOT NULL, artist_id int NOT NULL REFERENCES artist ON DELETE CASCADE);
CREATE TABLE genre (genre_id int PRIMARY KEY, name text);
CREATE TABLE media_type (media_type_id int PRIMARY KEY, name text);
CREATE TABLE track (track_id int PRIMARY KEY, name text NOT NULL, album_id int REFERENCES album ON DELETE CASCADE,
                    media_type_id int NOT NULL REFERENCES media_type, genre_id int REFERENCES genre, unit_price numeric(10,2) NOT NULL);
CREATE TABLE employee (employee_id int PRIMARY KEY, last_name text NOT NULL, reports_to int REFERENCES employee);
CREATE TABLE customer (customer_id int PRIMARY KEY, email text NOT NULL, support_rep_id int REFERENCES employee);
CREATE TABLE invoice (invoice_id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customer, total numeric(10,2) NOT NULL, status text NOT NULL);
CREATE TABLE invoice_line (invoice_line_id int PRIMARY KEY, invoice_id int NOT NULL REFERENCES invoice ON DELETE CASCADE,
                           track_id int NOT NULL REFERENCES track, unit_price numeric(10,2) NOT NULL, quantity int NOT NULL);
CREATE TABLE playlist (playlist_id int PRIMARY KEY, name text);
CREATE TABLE playlist_track (playlist_id int NOT NULL REFERENCES playlist, track_id int NOT NULL REFERENCES track, PRIMARY KEY (playlist_id, track_id));
CREATE TABLE dept (dept_id int PRIMARY KEY, name text, head_id int);
CREATE TABLE person (person_id int PRIMARY KEY, dept_id int REFERENCES dept);
ALTER TABLE dept ADD CONSTRAINT dept_head_fkey FOREIGN KEY (head_id) REFERENCES person;
CREATE TABLE "User" ("userId" text PRIMARY KEY, "createdAt" timestamptz NOT NULL, "displayName" text);`;

const FILL = `
INSERT INTO artist SELECT g, 'artist ' || g FROM generate_series(1, 300) g;
INSERT INTO album SELECT g, 'album ' || g, 1 + g % 300 FROM generate_series(1, 600) g;
INSERT INTO genre SELECT g, 'genre ' || g FROM generate_series(1, 25) g;
INSERT INTO media_type SELECT g, 'type ' || g FROM generate_series(1, 5) g;
INSERT INTO track SELECT g, 'track ' || g, CASE WHEN g % 97 = 0 THEN NULL ELSE 1 + g % 600 END, 1 + g % 5, 1 + g % 25, (g % 200) / 100.0 + 0.99 FROM generate_series(1, 6000) g;
INSERT INTO employee SELECT g, 'emp ' || g, CASE WHEN g = 1 THEN NULL ELSE 1 + (g * 7) % (g - 1) END FROM generate_series(1, 400) g;
INSERT INTO customer SELECT g, 'c' || g || '@example.com', CASE WHEN g % 5 = 0 THEN NULL ELSE 1 + g % 400 END FROM generate_series(1, 3000) g;
INSERT INTO invoice SELECT g, 1 + g % 3000, 0, (ARRAY['paid', 'open', 'void'])[1 + g % 3] FROM generate_series(1, 8000) g;
INSERT INTO invoice_line SELECT g, 1 + g % 8000, 1 + (g * 13) % 6000, 0.99, 1 + g % 3 FROM generate_series(1, 20000) g;
UPDATE invoice i SET total = l.t FROM (SELECT invoice_id, sum(unit_price * quantity) AS t FROM invoice_line GROUP BY 1) l WHERE l.invoice_id = i.invoice_id;
INSERT INTO playlist SELECT g, 'list ' || g FROM generate_series(1, 50) g;
INSERT INTO playlist_track SELECT p, t FROM generate_series(1, 50) p, generate_series(1, 6000, 37) t;
INSERT INTO dept SELECT g, 'dept ' || g, NULL FROM generate_series(1, 40) g;
INSERT INTO person SELECT g, 1 + g % 40 FROM generate_series(1, 2000) g;
UPDATE dept SET head_id = dept_id * 10;
INSERT INTO "User" SELECT 'u' || md5(g::text), timestamptz '2024-01-01' + g * interval '1 minute', 'User ' || g FROM generate_series(1, 5000) g;
ANALYZE;`;

const STORE_TABLES = [
  'artist',
  'album',
  'genre',
  'media_type',
  'track',
  'employee',
  'customer',
  'invoice',
  'invoice_line',
  'playlist',
  'playlist_track',
  'dept',
  'person',
  '"User"',
];

/** Names of every kind: a schema with a space and a dot, a table with a space, a quote in a column, unicode, 63 bytes. */
const LONG = 'l'.repeat(60) + 'ong'; // 63 bytes
const ODD = `
CREATE SCHEMA "Odd .Schema";
CREATE TABLE "Odd .Schema"."Order Items" ("Item Id" bigint PRIMARY KEY, "x""y" text, "Größe" numeric(8,2), "${LONG}" int);
CREATE TABLE public.refusing (id int PRIMARY KEY, qty int NOT NULL);`;
const ODD_FILL = `
INSERT INTO "Odd .Schema"."Order Items" SELECT g, 'q"' || g || '''', g / 4.0, g FROM generate_series(1, 1200) g;
INSERT INTO public.refusing SELECT g, g % 50 FROM generate_series(1, 3000) g;`;

const stack = useStack(
  TASK_QUEUE,
  async (server) => {
    for (const db of ['src', 'tgt']) {
      await server.query(db, STORE);
      await server.query(db, ODD);
    }
    await server.query('src', FILL);
    await server.query('src', ODD_FILL);
    // The target refuses one row: a rule the source never had.
    await server.query('tgt', 'ALTER TABLE public.refusing ADD CONSTRAINT refusing_qty_small CHECK (id <> 142)');
  },
  { worker: 'none', env: KILLED_WORKER_ENV },
);

async function constraintsOf(db: string): Promise<{ name: string; valid: boolean }[]> {
  const r = await stack.pg.query(db, `SELECT conname AS name, convalidated AS valid FROM pg_constraint WHERE contype = 'f' ORDER BY 1`);
  return r.rows.map((x) => ({ name: String(x.name), valid: x.valid === true || x.valid === 't' }));
}

test(
  'a schema with foreign keys everywhere (self-reference, cycle, composite key) migrates with default chunks, survives kill -9, and ends with every constraint validated',
  { timeout: 300_000 },
  async () => {
    const before = await constraintsOf('tgt');
    assert.equal(before.length, 13, `the target has its foreign keys: ${JSON.stringify(before)}`);
    const spec = {
      name: 'music-store',
      taskQueue: TASK_QUEUE,
      source: 'src',
      target: 'tgt',
      concurrency: 4,
      tables: [
        // The whole schema, each table keyed by its primary key, no chunk settings...
        { source: 'public.*', exclude: ['refusing'] },
        // ...but the self-referencing table in many ranges (rows of one range point into others):
        // listed on its own, it wins over the pattern.
        { source: 'public.employee', target: 'public.employee', chunk: { size: 10 } },
      ],
      cutover: { approval: 'required' },
      retries: { heartbeat: KILLED_WORKER_HEARTBEAT },
    };
    // `validate` says what it would plan and what happens to each constraint.
    const file = join(stack.dir, 'music-store.json');
    writeFileSync(file, JSON.stringify(spec));
    const v = await backfill(['validate', file]);
    assert.equal(v.code, 0, v.stderr + v.stdout);
    assert.match(v.stdout, /public\."User": \d+ range\(s\), about [\d,]+ rows each on \(userId\) \(chosen from the table size\)/);
    assert.match(v.stdout, /public\.employee: 40 range\(s\), key spans of 10 on employee_id/);
    assert.match(v.stdout, /employee_reports_to_fkey on "public"\."employee" -> "public"\."employee"/);
    assert.match(v.stdout, /dept_head_fkey on "public"\."dept" -> "public"\."person"/);

    let worker: WorkerProcess = await spawnWorker(stack.temporal.address, TASK_QUEUE);
    // kill -9 in the middle of the copy: the copies of the self-referencing table (planned last) held
    // at a gate on it, once the other tables' ranges are proven and the constraints set aside.
    const gate = await tableGate(stack.pg, 'tgt', 'public.employee');
    const h = await stack.temporal.env.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
    const held = await holdEvery(h, gate, 'copyRange');
    const tables = held.map((r) => String((r.input.plan as { source?: unknown }).source));
    assert.ok(
      tables.every((t) => /employee/.test(t)),
      `the copies held are of public.employee: ${tables.join(', ')}`,
    );
    const p = await h.query(progressQuery);
    assert.ok(p.tables.reduce((a, t) => a + t.ranges.verified, 0) >= 8, JSON.stringify(p.tables));
    const aside = await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM backfill.constraints WHERE migration = 'music-store' AND state = 'set-aside'`);
    assert.equal(aside.rows[0].n, before.length, 'every foreign key set aside, its definition kept');
    await worker.kill();
    worker = await spawnWorker(stack.temporal.address, TASK_QUEUE);
    await gate.open();
    let report: Report;
    try {
      const gate = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed'], 240_000);
      assert.equal(gate.phase, 'awaiting_approval', JSON.stringify(gate));
      assert.ok(
        (await constraintsOf('tgt')).every((c) => c.valid),
        'the constraints hold at the gate',
      );
      // A rerun of a parent's range once the constraints are back: its delete must not cascade to
      // the albums (album_artist_id_fkey is ON DELETE CASCADE), nor trip a constraint.
      const albums = await fingerprint(stack.pg, 'tgt', 'public.album');
      const copiedAt = async () =>
        String(
          (await stack.pg.query('tgt', `SELECT copied_at::text AS at FROM backfill.ranges WHERE migration = 'music-store' AND source_table = 'public.artist'`))
            .rows[0].at,
        );
      const first = await copiedAt();
      await h.executeUpdate(rerunUpdate, { args: [{ table: 'public.artist', ranges: [0] }] });
      let again = gate;
      let copied = first;
      for (let i = 0; i < 600 && (copied === first || again.phase !== 'awaiting_approval'); i++) {
        await new Promise((r) => setTimeout(r, 100));
        copied = await copiedAt();
        again = await h.query(progressQuery);
        assert.ok(!['needs_attention', 'failed'].includes(again.phase), JSON.stringify(again));
      }
      assert.notEqual(copied, first, 'the range was copied again');
      assert.equal(again.phase, 'awaiting_approval');
      // The same rows give the same evidence, and so the same digest.
      assert.equal(again.digest, gate.digest);
      assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'public.album'), albums, 'the children are untouched');
      const back = await stack.pg.query(
        'tgt',
        `SELECT count(*)::int AS n FROM backfill.constraints WHERE migration = 'music-store' AND state = 'restored' AND detail IS NULL`,
      );
      assert.equal(back.rows[0].n, before.length, 'set aside for the rerun, restored and validated again');
      await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'dba', digest: again.digest! }] });
      const result = await h.result();
      assert.equal(result.phase, 'completed', JSON.stringify(result));
      // The kill landed inside the held copies: each completed on a later attempt.
      await assertRanAgain(h, held);
      report = await h.query(reportQuery);
      await replayAndMaybeRecord(h, 'foreign-keys-set-aside-rerun-restored');
    } finally {
      await worker.stop();
    }
    for (const t of STORE_TABLES) {
      const q = t === '"User"' ? 'public."User"' : `public.${t}`;
      assert.deepEqual(await fingerprint(stack.pg, 'tgt', q), await fingerprint(stack.pg, 'src', q), `${t} equal`);
    }
    const afterwards = await constraintsOf('tgt');
    assert.deepEqual(
      afterwards.map((c) => c.name),
      before.map((c) => c.name),
      'every constraint is back, by its own name',
    );
    assert.ok(
      afterwards.every((c) => c.valid),
      `every constraint validated: ${JSON.stringify(afterwards.filter((c) => !c.valid))}`,
    );
    assert.equal(report.constraints?.length, before.length);
    assert.ok(report.constraints.every((c) => c.state === 'restored' && c.valid));
  },
);

test('names of every kind: a schema with a space and a dot, a table with a space, a quote, unicode and a 63-byte column', { timeout: 120_000 }, async () => {
  const spec = {
    name: 'odd-names',
    taskQueue: TASK_QUEUE,
    source: 'src',
    target: 'tgt',
    tables: [
      {
        source: '"Odd .Schema"."Order Items"',
        target: { schema: 'Odd .Schema', table: 'Order Items' },
        key: ['Item Id'],
        checks: {
          aggregates: [
            { fn: 'sum', column: 'Größe' },
            { fn: 'max', column: LONG },
          ],
        },
      },
    ],
    cutover: { approval: 'auto' },
  };
  const worker = await spawnWorker(stack.temporal.address, TASK_QUEUE);
  try {
    const h = await stack.temporal.env.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
    const result = await h.result();
    assert.equal(result.phase, 'completed', JSON.stringify(result));
    const report: Report = await h.query(reportQuery);
    assert.equal(report.tables[0].source, '"Odd .Schema"."Order Items"');
    assert.match(report.tables[0].ranges[0].rerun, /--table '"Odd \.Schema"\."Order Items"'/);
  } finally {
    await worker.stop();
  }
  const q = '"Odd .Schema"."Order Items"';
  assert.deepEqual(await fingerprint(stack.pg, 'tgt', q), await fingerprint(stack.pg, 'src', q));
});

test('a row the target refuses: needs_attention names the table, range, constraint and key; fixed, rerun, green', { timeout: 120_000 }, async () => {
  const spec = {
    name: 'refusing',
    taskQueue: TASK_QUEUE,
    source: 'src',
    target: 'tgt',
    tables: [{ source: 'public.refusing', target: 'public.refusing', key: ['id'], chunk: { size: 500 } }],
    cutover: { approval: 'auto' },
  };
  const worker = await spawnWorker(stack.temporal.address, TASK_QUEUE);
  try {
    const h = await stack.temporal.env.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
    const p = await waitForPhase(h, ['needs_attention', 'failed', 'completed']);
    assert.equal(p.phase, 'needs_attention', JSON.stringify(p));
    // Range 0 holds ids 1..500, and so the one row the target refuses.
    assert.match(p.detail ?? '', /public\.refusing range 0 refused by refusing_qty_small at key \["142"\]/);
    assert.deepEqual(p.tables[0].ranges, { total: 6, pending: 0, inFlight: 0, verified: 5, failed: 1 });
    const report: Report = await h.query(reportQuery);
    const r0 = report.tables[0].ranges.find((r) => r.index === 0)!;
    assert.equal(r0.status, 'refused');
    assert.equal(r0.refused?.constraint, 'refusing_qty_small');
    assert.deepEqual(r0.refused?.key, ['142']);
    assert.match(r0.refused?.message ?? '', /violates check constraint "refusing_qty_small"/);
    const ledger = await stack.pg.query('tgt', `SELECT status, last_error FROM backfill.ranges WHERE migration = 'refusing' AND range_index = 0`);
    assert.equal(ledger.rows[0].status, 'refused');
    assert.match(String(ledger.rows[0].last_error), /refusing_qty_small/);

    // The operator fixes the target, then reruns only that range.
    await stack.pg.query('tgt', 'ALTER TABLE public.refusing DROP CONSTRAINT refusing_qty_small');
    await h.executeUpdate(rerunUpdate, { args: [{ ranges: [0] }] });
    const result = await h.result();
    assert.equal(result.phase, 'completed');
    await replayAndMaybeRecord(h, 'refused-row-fixed-and-rerun');
  } finally {
    await worker.stop();
  }
  assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'public.refusing'), await fingerprint(stack.pg, 'src', 'public.refusing'));
});

test(
  'a foreign key on a partitioned target table (no NOT VALID there before PostgreSQL 18) is set aside and restored validated, on the table and every partition',
  { timeout: 120_000 },
  async () => {
    const ddl = `
CREATE SCHEMA parted;
CREATE TABLE parted.customer (id int PRIMARY KEY, name text);
CREATE TABLE parted.lines (id bigint NOT NULL, region text NOT NULL, cust int REFERENCES parted.customer (id), PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE parted.lines_eu PARTITION OF parted.lines FOR VALUES IN ('eu');
CREATE TABLE parted.lines_us PARTITION OF parted.lines FOR VALUES IN ('us');`;
    for (const db of ['src', 'tgt']) await stack.pg.query(db, ddl);
    await stack.pg.query('src', 'INSERT INTO parted.customer SELECT g, $1 || g FROM generate_series(1, 200) g', ['c']);
    await stack.pg.query('src', `INSERT INTO parted.lines SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, 1 + g % 200 FROM generate_series(1, 3000) g`);
    const keys = `SELECT conrelid::regclass::text AS owner, convalidated AS valid FROM pg_constraint WHERE contype = 'f' AND connamespace = 'parted'::regnamespace ORDER BY 1`;
    const setUp = (await stack.pg.query('tgt', keys)).rows;
    assert.equal(setUp.length, 3, JSON.stringify(setUp));
    const spec = {
      name: 'parted',
      taskQueue: TASK_QUEUE,
      source: 'src',
      target: 'tgt',
      tables: [
        { source: 'parted.customer', target: 'parted.customer', key: ['id'] },
        { source: 'parted.lines', target: 'parted.lines', key: ['id', 'region'], chunk: { column: 'id', rows: 1000 } },
      ],
      cutover: { approval: 'auto' },
    };
    const worker = await spawnWorker(stack.temporal.address, TASK_QUEUE);
    try {
      const h = await stack.temporal.env.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
      const result = await endingOf(h);
      assert.equal(result.phase, 'completed', result.reason);
    } finally {
      await worker.stop();
    }
    const restored = (await stack.pg.query('tgt', keys)).rows.map((r) => ({ owner: String(r.owner), valid: r.valid === true || r.valid === 't' }));
    assert.deepEqual(restored, [
      { owner: 'parted.lines', valid: true },
      { owner: 'parted.lines_eu', valid: true },
      { owner: 'parted.lines_us', valid: true },
    ]);
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'parted.lines'), await fingerprint(stack.pg, 'src', 'parted.lines'));
  },
);

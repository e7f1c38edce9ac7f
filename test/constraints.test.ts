// What the target's own rules do to a migration, as README's "Real schemas" and "Crashes, faults and
// scale" say: foreign keys set aside at planning (one owned by a spec table, one from a table outside
// the spec) and restored as they were (validated, or NOT VALID when they were NOT VALID); a key the
// rows break turns the report red and the migration waits, naming the constraint and the key; an
// abort and a failure leave none dropped; rows the target refuses (a unique index, a NOT NULL, a
// foreign key) mark their range refused with the constraint and the key; a privilege revoked
// mid-migration fails it at once, not retried; a transient error is retried by Temporal with the
// policy README states (1 s, 2 s, 4 s, 8 s: 5 attempts). Real PostgreSQL, real Temporal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { backfillMigration } from '../src/workflows/migration';
import { abortSignal, progressQuery, reportQuery, rerunUpdate, type MigrationResult } from '../src/workflows/messages';
import { renderMarkdown } from '../src/report/render';
import type { Report } from '../src/domain/report';
import { failureTypeOf } from '../src/domain/failures';
import { envNameForAlias } from '../src/spec/aliases';
import { fingerprint } from './helpers/sample';
import { specFor } from './helpers/spec';
import { endingOf, waitForPhase } from './helpers/temporal';
import { holdActivity, retriedActivities, tableGate, until } from './helpers/fault-points';
import { setup, useStack } from './hooks';

const TASK_QUEUE = 'constraints';

// shop: orders (in the spec) references customers (outside it) with a NOT VALID key that some orders
// break; notes (outside the spec) references orders, ON DELETE CASCADE. The target already holds the
// orders of an earlier load (stale notes), and notes that point at them.
const SHOP = `
CREATE SCHEMA shop;
CREATE TABLE shop.orders (id int PRIMARY KEY, customer_id int NOT NULL, note text);`;
const SHOP_SOURCE = `INSERT INTO shop.orders SELECT g, 1 + g % 50, 'order ' || g FROM generate_series(1, 3000) g;`;
const SHOP_TARGET = `
CREATE TABLE shop.customers (id int PRIMARY KEY);
INSERT INTO shop.customers SELECT generate_series(1, 25);
INSERT INTO shop.orders SELECT g, 1 + g % 50, 'stale ' || g FROM generate_series(1, 3000) g;
ALTER TABLE shop.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES shop.customers NOT VALID;
CREATE TABLE shop.notes (id int PRIMARY KEY, order_id int NOT NULL REFERENCES shop.orders ON DELETE CASCADE, body text);
INSERT INTO shop.notes SELECT g, g * 7, 'note ' || g FROM generate_series(1, 400) g;`;

// fam: a child row whose parent the source does not have; the target's foreign key refuses it.
const FAM = `
CREATE SCHEMA fam;
CREATE TABLE fam.parents (id int PRIMARY KEY, name text);
CREATE TABLE fam.kids (id int PRIMARY KEY, parent_id int NOT NULL, name text);`;
const FAM_SOURCE = `
INSERT INTO fam.parents SELECT g, 'p' || g FROM generate_series(1, 100) g;
INSERT INTO fam.kids SELECT g, CASE WHEN g = 777 THEN 9999 ELSE 1 + g % 100 END, 'k' || g FROM generate_series(1, 2000) g;`;
const FAM_TARGET = `ALTER TABLE fam.kids ADD CONSTRAINT kids_parent_fk FOREIGN KEY (parent_id) REFERENCES fam.parents;`;

// rules: rows the target refuses. people: two rows of range 0 share an email (unique on the target),
// row 742 (range 1) has no nick (NOT NULL on the target). owners: fine, until a foreign key appears.
const RULES_SOURCE = `
CREATE SCHEMA rules;
CREATE TABLE rules.people (id int PRIMARY KEY, email text NOT NULL, nick text);
INSERT INTO rules.people SELECT g, 'p' || g || '@example.com', 'nick' || g FROM generate_series(1, 1000) g;
UPDATE rules.people SET email = 'p10@example.com' WHERE id = 20;
UPDATE rules.people SET nick = NULL WHERE id = 742;
CREATE TABLE rules.owners (id int PRIMARY KEY, name text);
INSERT INTO rules.owners SELECT g, 'o' || g FROM generate_series(1, 300) g;`;
const RULES_TARGET = `
CREATE SCHEMA rules;
CREATE TABLE rules.people (id int PRIMARY KEY, email text NOT NULL UNIQUE, nick text NOT NULL);
CREATE TABLE rules.owners (id int PRIMARY KEY, name text);`;

// rev: the target role `mover` owns lines (with a foreign key to heads, outside the spec), not a superuser.
const REV = `
CREATE SCHEMA rev;
CREATE TABLE rev.lines (id int PRIMARY KEY, head_id int NOT NULL, qty int);`;
const REV_SOURCE = `INSERT INTO rev.lines SELECT g, 1 + g % 50, g FROM generate_series(1, 2000) g;`;
const REV_TARGET = `
CREATE ROLE mover LOGIN PASSWORD 'mover-pw';
CREATE TABLE rev.heads (id int PRIMARY KEY);
INSERT INTO rev.heads SELECT generate_series(1, 50);
ALTER TABLE rev.lines ADD CONSTRAINT lines_head_fk FOREIGN KEY (head_id) REFERENCES rev.heads;
ALTER TABLE rev.lines OWNER TO mover;
GRANT USAGE ON SCHEMA rev TO mover;
GRANT REFERENCES ON rev.heads TO mover;`;

// flaky: the target fails the first 4 inserts with a serialization failure (40001, transient).
const FLAKY = `CREATE SCHEMA flaky; CREATE TABLE flaky.t (id int PRIMARY KEY, v text);`;
const FLAKY_TARGET = `
CREATE SEQUENCE flaky.failures;
CREATE FUNCTION flaky.fail_four() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('flaky.failures') <= 4 THEN RAISE EXCEPTION 'could not serialize access (injected)' USING ERRCODE = '40001'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER fail_four BEFORE INSERT ON flaky.t FOR EACH ROW EXECUTE FUNCTION flaky.fail_four();`;

// parts: a partitioned table whose key references another table of the spec; PostgreSQL keeps a
// copy of the key on each partition, which goes and comes back with the declared one (the partitions'
// names sort before the table's, as "Lines 2024H1" before "Order Lines": a copy may not be dropped).
const PARTS = `
CREATE SCHEMA parts;
CREATE TABLE parts.units (id int PRIMARY KEY, label text);
CREATE TABLE parts.lines (id bigint NOT NULL, day date NOT NULL, unit int REFERENCES parts.units, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE parts.early_h1 PARTITION OF parts.lines FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
CREATE TABLE parts.early_h2 PARTITION OF parts.lines FOR VALUES FROM ('2024-07-01') TO ('2025-01-01');`;

const stack = useStack(
  TASK_QUEUE,
  async (db) => {
    for (const d of ['src', 'tgt']) for (const ddl of [SHOP, FAM, REV, FLAKY, PARTS]) await db.query(d, ddl);
    await db.query('src', `INSERT INTO parts.units SELECT i, 'u' || i FROM generate_series(1, 20) i`);
    await db.query('src', `INSERT INTO parts.lines SELECT i, date '2024-01-01' + (i % 360), 1 + i % 20 FROM generate_series(1, 2000) i`);
    for (const sql of [SHOP_SOURCE, FAM_SOURCE, RULES_SOURCE, REV_SOURCE, `INSERT INTO flaky.t SELECT g, 'v' || g FROM generate_series(1, 100) g`])
      await db.query('src', sql);
    for (const sql of [SHOP_TARGET, FAM_TARGET, RULES_TARGET, REV_TARGET, FLAKY_TARGET]) await db.query('tgt', sql);
    // The target as `mover` (the in-process worker reads it from here); the ledger on `ctl`, as postgres.
    process.env[envNameForAlias('tgt_mover')] = db.url('tgt').replace(/\/\/postgres:[^@]*@/, '//mover:mover-pw@');
  },
  { aliases: ['src', 'tgt', 'ctl'] },
);

/** The foreign keys of `schema` on the target: name, owner and whether validated. */
async function foreignKeys(schema: string): Promise<{ name: string; owner: string; valid: boolean }[]> {
  const r = await stack.pg.query(
    'tgt',
    `SELECT conname AS name, conrelid::regclass::text AS owner, convalidated AS valid FROM pg_constraint WHERE contype = 'f' AND connamespace = $1::regnamespace ORDER BY 1`,
    [schema],
  );
  return r.rows.map((x) => ({ name: String(x.name), owner: String(x.owner), valid: x.valid === true }));
}

/** The ledger's constraints of a migration: name, state, whether valid before. */
async function ledgerConstraints(db: string, migration: string): Promise<{ name: string; state: string; was_valid: boolean }[]> {
  const r = await stack.pg.query(db, `SELECT name, state, was_valid FROM backfill.constraints WHERE migration = $1 ORDER BY name`, [migration]);
  return r.rows.map((x) => ({ name: String(x.name), state: String(x.state), was_valid: x.was_valid === true }));
}

const start = (doc: { name: string }) => stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });

// Started before the other tests, so that its retries' backoff (1 + 2 + 4 + 8 s) passes while they run;
// its own test, last, reads how it went.
let flaky: WorkflowHandle<typeof backfillMigration>;
setup(async () => {
  flaky = await start(specFor('flaky', { source: 'flaky.t', target: 'flaky.t' }, { taskQueue: TASK_QUEUE, cutover: { approval: 'auto' } }));
});

test(
  'foreign keys: a partitioned table referencing another table of the spec; the key its partitions inherit is set aside and restored with it',
  { timeout: 120_000 },
  async () => {
    const doc = specFor(
      'parts',
      [
        { source: 'parts.units', target: 'parts.units' },
        { source: 'parts.lines', target: 'parts.lines', key: ['id', 'day'] },
      ],
      { taskQueue: TASK_QUEUE, cutover: { approval: 'auto' } },
    );
    const result = await endingOf(await start(doc));
    assert.equal(result.phase, 'completed', result.reason);
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'parts.lines'), await fingerprint(stack.pg, 'src', 'parts.lines'));
    const keys = await foreignKeys('parts');
    assert.ok(keys.length >= 1 && keys.every((k) => k.valid), JSON.stringify(keys));
    assert.ok(
      keys.some((k) => k.owner === 'parts.lines'),
      'the declared key is back',
    );
  },
);

test(
  'foreign keys: one from a table outside the spec (ON DELETE CASCADE) is set aside, so re-copying the rows it points at cascades nowhere, and restored validated; a NOT VALID one is re-created NOT VALID',
  { timeout: 120_000 },
  async () => {
    const doc = specFor(
      'shop',
      { source: 'shop.orders', target: 'shop.orders', chunk: { column: 'id', size: 500 } },
      { taskQueue: TASK_QUEUE, cutover: { approval: 'auto' } },
    );
    const h = await start(doc);
    const result = await endingOf(h);
    assert.equal(result.phase, 'completed', result.reason);
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'shop.orders'), await fingerprint(stack.pg, 'src', 'shop.orders'));
    // Every range deleted its target rows, then copied them: had the notes' key been in place, the
    // delete would have removed the notes (cascade) or been refused.
    assert.equal((await stack.pg.query('tgt', 'SELECT count(*)::int AS n FROM shop.notes')).rows[0].n, 400, 'no note deleted by a cascade');
    assert.deepEqual(await foreignKeys('shop'), [
      { name: 'notes_order_id_fkey', owner: 'shop.notes', valid: true },
      // Orders of customers 26..50 break it (the target has customers 1..25): validating it would fail.
      { name: 'orders_customer_fk', owner: 'shop.orders', valid: false },
    ]);
    assert.deepEqual(await ledgerConstraints('tgt', 'shop'), [
      { name: 'notes_order_id_fkey', state: 'restored', was_valid: true },
      { name: 'orders_customer_fk', state: 'restored', was_valid: false },
    ]);
    const report: Report = await h.query(reportQuery);
    assert.equal(report.verdict, 'green');
    assert.deepEqual(
      report.constraints?.map((c) => [c.name, c.state, c.valid, c.wasValid]),
      [
        ['notes_order_id_fkey', 'restored', true, true],
        ['orders_customer_fk', 'restored', false, false],
      ],
    );
  },
);

test(
  'foreign keys: a key the copied rows break turns the report red and the migration waits in needs_attention, naming the constraint and the key; an abort leaves it in place (NOT VALID), never dropped',
  { timeout: 120_000 },
  async () => {
    const doc = specFor(
      'family',
      [
        { source: 'fam.parents', target: 'fam.parents' },
        { source: 'fam.kids', target: 'fam.kids', chunk: { column: 'id', size: 500 } },
      ],
      { taskQueue: TASK_QUEUE, cutover: { approval: 'auto' } },
    );
    const h = await start(doc);
    const p = await waitForPhase(h, ['needs_attention', 'completed', 'failed']);
    assert.equal(p.phase, 'needs_attention', JSON.stringify(p));
    assert.match(
      p.detail ?? '',
      /rows break "?fam"?\."?kids"? constraint kids_parent_fk: .*violates foreign key constraint "kids_parent_fk".*Key \(parent_id\)=\(9999\) is not present in table "parents"/,
    );
    // Every range was copied and proven: it is the key that is red.
    assert.deepEqual(
      p.tables.map((t) => [t.ranges.verified, t.ranges.failed]),
      [
        [1, 0],
        [4, 0],
      ],
    );
    const report: Report = await h.query(reportQuery);
    assert.equal(report.verdict, 'red');
    const fk = report.constraints?.find((c) => c.name === 'kids_parent_fk');
    assert.ok(fk, JSON.stringify(report.constraints));
    assert.deepEqual([fk.state, fk.valid, fk.wasValid], ['restored', false, true]);
    assert.match(fk.detail ?? '', /Key \(parent_id\)=\(9999\) is not present/);
    // The Markdown report lists it too, with the rows that break it.
    assert.match(renderMarkdown(report), /\| "?fam"?\."?kids"? \| kids_parent_fk \| .* \| restored \| no \| .*Key \(parent_id\)=\(9999\) is not present/);
    // Re-created NOT VALID while the rows break it: present, not dropped.
    assert.deepEqual(await foreignKeys('fam'), [{ name: 'kids_parent_fk', owner: 'fam.kids', valid: false }]);

    await h.signal(abortSignal, { reason: 'a kid without a parent' });
    assert.equal((await endingOf(h)).phase, 'aborted');
    assert.deepEqual(await foreignKeys('fam'), [{ name: 'kids_parent_fk', owner: 'fam.kids', valid: false }], 'the abort left the key in place');
    assert.deepEqual(await ledgerConstraints('tgt', 'family'), [{ name: 'kids_parent_fk', state: 'restored', was_valid: true }]);
  },
);

test(
  'a row the target refuses by a unique index, a NOT NULL or a foreign key: its range is refused (not retried), naming the constraint and the key the database names',
  { timeout: 120_000 },
  async () => {
    const doc = specFor(
      'refusals',
      [
        { source: 'rules.people', target: 'rules.people', chunk: { column: 'id', size: 500 } },
        { source: 'rules.owners', target: 'rules.owners', chunk: { column: 'id', size: 100 } },
      ],
      { taskQueue: TASK_QUEUE, cutover: { approval: 'auto' } },
    );
    const h = await start(doc);
    const p = await waitForPhase(h, ['needs_attention', 'completed', 'failed']);
    assert.equal(p.phase, 'needs_attention', JSON.stringify(p));
    // Range 0 (ids 1..500) holds both rows of one email; range 1 the row without a nick.
    assert.match(p.detail ?? '', /rules\.people range 0 refused by people_email_key \(duplicate key value violates unique constraint "people_email_key"/);
    assert.match(p.detail ?? '', /rules\.people range 1 refused by the target at key \["742"\] \(null value in column "nick"/);
    const people = (await h.query(reportQuery)).tables[0].ranges;
    const unique = people.find((r) => r.index === 0)!;
    assert.equal(unique.status, 'refused');
    assert.equal(unique.refused?.constraint, 'people_email_key');
    // The database names the duplicated value, not the row's key: no key is made up.
    assert.equal(unique.refused?.key, null);
    assert.match(unique.refused?.message ?? '', /Key \(email\)=\(p10@example\.com\) already exists/);
    const notNull = people.find((r) => r.index === 1)!;
    assert.equal(notNull.status, 'refused');
    // PostgreSQL names no constraint for a NOT NULL before version 18: the column and the row say it.
    assert.deepEqual(notNull.refused?.key, ['742']);
    assert.match(notNull.refused?.message ?? '', /violates not-null constraint/);

    // A foreign key created on the target after planning (the migration did not set it aside): a
    // note points at owner 5. Copying owners' range 0 again deletes that owner first: refused.
    await stack.pg.query(
      'tgt',
      'CREATE TABLE rules.pets (id int PRIMARY KEY, owner_id int NOT NULL REFERENCES rules.owners); INSERT INTO rules.pets VALUES (1, 5)',
    );
    await h.executeUpdate(rerunUpdate, { args: [{ table: 'rules.owners', ranges: [0] }] });
    let report: Report | undefined;
    await until('owners range 0 refused', async () => {
      report = await h.query(reportQuery);
      return report.tables[1].ranges.find((r) => r.index === 0)?.status === 'refused' && (await h.query(progressQuery)).phase === 'needs_attention';
    });
    const fk = report!.tables[1].ranges.find((r) => r.index === 0)!;
    assert.equal(fk.refused?.constraint, 'pets_owner_id_fkey');
    assert.deepEqual(fk.refused?.key, ['5']);
    assert.match(
      fk.refused?.message ?? '',
      /violates foreign key constraint "pets_owner_id_fkey" on table "pets" \(Key \(id\)=\(5\) is still referenced from table "pets"/,
    );
    assert.match((await h.query(progressQuery)).detail ?? '', /rules\.owners range 0 refused by pets_owner_id_fkey at key \["5"\]/);
    // Refused once each, never retried: one attempt of each range, and no activity retried.
    const attempts = await stack.pg.query(
      'tgt',
      `SELECT source_table, range_index, attempts, status FROM backfill.ranges WHERE migration = 'refusals' AND status = 'refused' ORDER BY 1, 2`,
    );
    assert.deepEqual(
      attempts.rows.map((r) => [r.source_table, r.range_index, r.attempts]),
      [
        ['rules.owners', 0, 1],
        ['rules.people', 0, 1],
        ['rules.people', 1, 1],
      ],
    );
    assert.ok(![...(await retriedActivities(h)).values()].includes('copyRange'), 'no copy retried');
    // The refused copy rolled back: the owners and the pet are all there.
    assert.equal((await stack.pg.query('tgt', 'SELECT count(*)::int AS n FROM rules.owners')).rows[0].n, 300);
    await h.signal(abortSignal, { reason: 'the test is done' });
    assert.equal((await endingOf(h)).phase, 'aborted');
  },
);

test(
  'a privilege revoked mid-migration (INSERT on the target table) fails the migration at once with the database message, not retried; the foreign key set aside is restored',
  { timeout: 120_000 },
  async () => {
    const doc = specFor(
      'revoked',
      { source: 'rev.lines', target: 'rev.lines', chunk: { column: 'id', size: 500 } },
      { taskQueue: TASK_QUEUE, target: 'tgt_mover', control: 'ctl', concurrency: 1, cutover: { approval: 'auto' } },
    );
    // Every statement on the target table stops at the gate; the revoke lands while a copy waits there.
    const gate = await tableGate(stack.pg, 'tgt', 'rev.lines');
    const h = await start(doc);
    try {
      await holdActivity(h, gate, 'copyRange');
      assert.deepEqual(await foreignKeys('rev'), [], 'the key is set aside while the copy runs');
      // (a lock timeout: a REVOKE that had to wait behind the gate would fail here, not hang)
      await stack.pg.query('tgt', `SET lock_timeout = '5s'; REVOKE INSERT ON rev.lines FROM mover`);
    } finally {
      await gate.open();
    }
    const ended = await h.result().then(
      (r: MigrationResult) => r,
      (e: unknown) => e,
    );
    assert.ok(ended instanceof WorkflowFailedError, `the migration fails, not ${JSON.stringify(ended)}`);
    assert.equal(failureTypeOf(ended.cause), 'PG42501');
    assert.match(ended.cause!.message, /copying rev\.lines range 0: permission denied for table lines/);
    assert.equal((await h.query(progressQuery)).phase, 'failed');
    // At once: the copy that met the refusal was not tried again, by Temporal or by the workflow.
    assert.ok(![...(await retriedActivities(h)).values()].includes('copyRange'), 'no copy retried');
    const history = await h.fetchHistory();
    const copies = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'copyRange');
    assert.equal(copies.length, 1, 'one copy scheduled, none after it');
    const ledger = await stack.pg.query('ctl', `SELECT range_index, last_error FROM backfill.ranges WHERE migration = 'revoked'`);
    assert.match(String(ledger.rows[0]?.last_error), /permission denied for table lines/);
    // The failure restored the key it had set aside (as mover, the table's owner).
    assert.deepEqual(await foreignKeys('rev'), [{ name: 'lines_head_fk', owner: 'rev.lines', valid: true }]);
    assert.deepEqual(await ledgerConstraints('ctl', 'revoked'), [{ name: 'lines_head_fk', state: 'restored', was_valid: true }]);
  },
);

test(
  'a transient error (SQLSTATE 40001) four times: Temporal retries the copy with 1 s, 2 s, 4 s, 8 s between attempts, and the fifth attempt completes it',
  { timeout: 120_000 },
  async () => {
    const result = await flaky.result();
    assert.equal(result.phase, 'completed', result.reason);
    assert.deepEqual(await fingerprint(stack.pg, 'tgt', 'flaky.t'), await fingerprint(stack.pg, 'src', 'flaky.t'));
    const events = (await flaky.fetchHistory()).events ?? [];
    const scheduled = events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'copyRange');
    assert.equal(scheduled.length, 1, 'one copy, retried by Temporal (not scheduled again by the workflow)');
    const policy = scheduled[0].activityTaskScheduledEventAttributes!.retryPolicy!;
    const seconds = (d: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(String(d?.seconds ?? 0)) + (d?.nanos ?? 0) / 1e9;
    assert.equal(seconds(policy.initialInterval), 1);
    assert.equal(policy.backoffCoefficient, 2);
    assert.equal(policy.maximumAttempts, 5);
    // The waits between the five attempts, as Temporal computes them from the policy.
    const waits = [1, 2, 3, 4].map((n) => Math.min(seconds(policy.initialInterval) * policy.backoffCoefficient! ** (n - 1), seconds(policy.maximumInterval)));
    assert.deepEqual(waits, [1, 2, 4, 8]);
    const started = events.find((e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId) === String(scheduled[0].eventId));
    assert.equal(started?.activityTaskStartedEventAttributes?.attempt, 5, 'completed on its fifth attempt');
    assert.match(started?.activityTaskStartedEventAttributes?.lastFailure?.message ?? '', /could not serialize access \(injected\)/);
    assert.ok(
      events.some((e) => String(e.activityTaskCompletedEventAttributes?.scheduledEventId) === String(scheduled[0].eventId)),
      'the copy completed',
    );
    const failures = (await stack.pg.query('tgt', `SELECT last_value::int AS n FROM flaky.failures`)).rows[0].n;
    assert.ok(failures > 4, 'the trigger failed four attempts, then let the fifth through');
  },
);

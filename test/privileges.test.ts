// Roles that are not superusers, as an operator runs them: `backfill validate` asks each server for
// every right the migration uses (has_*_privilege), names the alias, the role, the object, the
// privilege and the GRANT that fixes it, and exits 2; planning refuses the same way before any row
// is written. A name without a schema that a role named backfill finds in the ledger schema is
// refused. A role with exactly the documented rights passes, and the migration's own statements
// then succeed with it: the check asks for what the code runs, no more and no less.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { planMigration } from '../src/plan/plan';
import { copyRange } from '../src/range/copy';
import { reconcileTable } from '../src/gate/reconcile';
import { advanceSequences, appendAudit, runSwitch } from '../src/gate/cutover';
import { buildReport } from '../src/report/build';
import { restoreConstraints } from '../src/schema/constraints';
import { envNameForAlias } from '../src/spec/aliases';
import { setup, useDatabases } from './hooks';
import { parsed, specFor } from './helpers/spec';
import { backfill } from './helpers/cli';

const ORDERS = 'id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, note text';
const ORDERS_V2 = 'id bigserial PRIMARY KEY, amount numeric(12,2) NOT NULL, note text';

/** Each role's own connections: alias `<db>_<role>` is database <db> as <role>. */
const ROLES = ['mover', 'nocreate', 'peeker', 'looker', 'backfill', 'keeper'];
const DATABASES = ['src', 'tgt', 'ctl', 'tgtb', 'ctlk'];
const aliasOf = (db: string, role: string) => `${db}_${role}`;
/** Not the role's name: a password is redacted wherever it appears. */
const password = (role: string) => `pw-${role}-secret`;

const dbs = useDatabases(
  async (db) => {
    for (const r of ROLES) await db.query('postgres', `CREATE ROLE ${r} LOGIN PASSWORD '${password(r)}'`);
    await db.query('src', `CREATE TABLE public.orders (${ORDERS})`);
    await db.query('src', `INSERT INTO public.orders SELECT g, g * 1.5, 'n' || g FROM generate_series(1, 2000) g`);
    await db.query('src', 'ANALYZE public.orders');
    for (const r of ['mover', 'nocreate', 'looker', 'backfill']) await db.query('src', `GRANT SELECT ON public.orders TO ${r}`);
    // peeker may read two of the three columns.
    await db.query('src', 'GRANT SELECT (id, amount) ON public.orders TO peeker');
    for (const t of ['orders_v2', 'orders_nc', 'orders_peek', 'orders_look']) await db.query('tgt', `CREATE TABLE public.${t} (${ORDERS_V2})`);
    const writer = (r: string, t: string) => `GRANT SELECT, INSERT, DELETE ON public.${t} TO ${r}; GRANT SELECT, UPDATE ON SEQUENCE public.${t}_id_seq TO ${r}`;
    await db.query('tgt', writer('mover', 'orders_v2'));
    await db.query('tgt', 'GRANT CREATE ON DATABASE tgt TO mover');
    await db.query('tgt', writer('nocreate', 'orders_nc'));
    await db.query('tgt', writer('peeker', 'orders_peek'));
    await db.query('tgt', 'GRANT CREATE ON DATABASE tgt TO peeker');
    // looker may only read its target.
    await db.query('tgt', 'GRANT SELECT ON public.orders_look TO looker; GRANT SELECT, UPDATE ON SEQUENCE public.orders_look_id_seq TO looker');
    await db.query('tgt', 'GRANT CREATE ON DATABASE tgt TO looker');
    // A role named like the ledger schema: its default search path ("$user", public) finds schema backfill first.
    await db.query('tgtb', 'CREATE SCHEMA backfill AUTHORIZATION backfill');
    for (const s of ['backfill', 'public']) await db.query('tgtb', `CREATE TABLE ${s}.orders_v2 (${ORDERS_V2})`);
    // As if the role had made it with an unqualified name: in its own schema, and its own.
    await db.query('tgtb', 'ALTER TABLE backfill.orders_v2 OWNER TO backfill');
    await db.query(
      'tgtb',
      `GRANT SELECT, INSERT, DELETE ON public.orders_v2 TO backfill; GRANT SELECT, UPDATE ON SEQUENCE public.orders_v2_id_seq TO backfill`,
    );
    // A target table with a foreign key, owned by another role.
    await db.query('src', 'CREATE TABLE public.lines (id bigint PRIMARY KEY, order_id bigint NOT NULL)');
    await db.query('src', 'INSERT INTO public.lines SELECT g, g FROM generate_series(1, 300) g; GRANT SELECT ON public.lines TO keeper');
    await db.query('tgt', 'CREATE TABLE public.parents (id bigint PRIMARY KEY); INSERT INTO public.parents SELECT generate_series(1, 300)');
    await db.query('tgt', 'CREATE TABLE public.lines (id bigint PRIMARY KEY, order_id bigint NOT NULL REFERENCES public.parents (id))');
    await db.query('tgt', 'GRANT SELECT, INSERT, DELETE ON public.lines TO keeper');
    await db.query('ctlk', 'GRANT CREATE ON DATABASE ctlk TO keeper');
    // A table with a change column (catch-up by delta).
    for (const d of ['src', 'tgt']) await db.query(d, 'CREATE TABLE public.events (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now())');
    await db.query('src', 'INSERT INTO public.events (id) SELECT generate_series(1, 100); GRANT SELECT ON public.events TO mover');
    await db.query('tgt', 'GRANT SELECT, INSERT, DELETE ON public.events TO mover');
    // A source table whose row-level security hides rows from looker.
    await db.query(
      'src',
      'CREATE TABLE public.secrets (id bigint PRIMARY KEY, v text); INSERT INTO public.secrets SELECT g, g::text FROM generate_series(1, 100) g',
    );
    await db.query(
      'src',
      'ALTER TABLE public.secrets ENABLE ROW LEVEL SECURITY; CREATE POLICY few ON public.secrets USING (id <= 10); GRANT SELECT ON public.secrets TO looker',
    );
    await db.query('tgt', 'CREATE TABLE public.secrets (id bigint PRIMARY KEY, v text); GRANT SELECT ON public.secrets TO looker');
  },
  { aliases: DATABASES },
);

setup(() => {
  for (const r of ROLES)
    for (const d of DATABASES) process.env[envNameForAlias(aliasOf(d, r))] = dbs.pg.url(d).replace(/\/\/postgres:[^@]*@/, `//${r}:${password(r)}@`);
});

/** A spec for `role`: source and target (and control, when given) connect as it. */
function specDoc(name: string, role: string, table: Record<string, unknown>, over: Record<string, unknown> = {}) {
  return specFor(
    name,
    { source: 'public.orders', target: 'public.orders_v2', chunk: { column: 'id', size: 500 }, ...table },
    {
      source: aliasOf('src', role),
      target: aliasOf('tgt', role),
      ...over,
    },
  );
}

function file(name: string, doc: unknown): string {
  const p = join(dbs.dir, `${name}.json`);
  writeFileSync(p, JSON.stringify(doc));
  return p;
}

const validate = (name: string, doc: unknown) => backfill(['validate', file(name, doc)]);

async function planningRefusal(doc: unknown): Promise<string> {
  const spec = parsed(doc);
  try {
    await planMigration({ migration: spec.name, spec });
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail('planning accepted the spec');
}

const count = async (db: string, sql: string) => Number((await dbs.pg.query(db, sql)).rows[0].n);

test('privileges: a role without CREATE on the control database is refused by validate and planning, with the GRANT; a schema made for it is enough', async () => {
  const doc = specDoc('nocreate', 'nocreate', { target: 'public.orders_nc' }, { control: aliasOf('ctl', 'nocreate') });
  const sentence =
    'control: role nocreate on connection "ctl_nocreate" has no CREATE on database ctl (the ledger: its schema backfill does not exist on database ctl yet, and is created there); ' +
    'fix: GRANT CREATE ON DATABASE ctl TO nocreate, or create the schema for it: CREATE SCHEMA backfill AUTHORIZATION nocreate';
  const r = await validate('nocreate', doc);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.ok(r.stderr.includes(sentence), r.stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.doesNotMatch(r.stderr, /pw-nocreate-secret|postgresql:/, 'no connection string');
  // Planning refuses with the same sentence, before anything is written.
  assert.ok((await planningRefusal(doc)).includes(sentence));
  assert.equal(await count('ctl', `SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'backfill'`), 0);

  // The second fix it offers: the schema, made for the role; validate passes and planning creates the ledger in it.
  await dbs.pg.query('ctl', 'CREATE SCHEMA backfill AUTHORIZATION nocreate');
  const ok = await validate('nocreate', doc);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /control: role nocreate on connection "ctl_nocreate": USAGE on schema backfill; CREATE on schema backfill/);
  const spec = parsed(doc);
  const { plans } = await planMigration({ migration: spec.name, spec });
  assert.equal(plans[0].rangeCount, 4);
  assert.equal(await count('ctl', `SELECT count(*) AS n FROM backfill.tables WHERE migration = 'nocreate'`), 1);
});

test('privileges: a role that may not read a source column is refused with that column; leaving the column out (omit) needs no more', async () => {
  const doc = specDoc('peek', 'peeker', { target: 'public.orders_peek' });
  const r = await validate('peek', doc);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.ok(
    r.stderr.includes(
      'tables[0].source: role peeker on connection "src_peeker" has no SELECT on column "note" of public.orders (every range reads these columns); fix: GRANT SELECT ("note") ON public.orders TO peeker',
    ),
    r.stderr,
  );
  assert.ok((await planningRefusal(doc)).includes('has no SELECT on column "note" of public.orders'));
  // Column privileges are enough for the columns that are read.
  const ok = await validate('peek-omit', specDoc('peek-omit', 'peeker', { target: 'public.orders_peek', omit: ['note'] }));
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  // A filter that reads the column is run once, and says what it may not read.
  const filtered = await validate('peek-where', specDoc('peek-where', 'peeker', { target: 'public.orders_peek', omit: ['note'], where: "note <> 'x'" }));
  assert.equal(filtered.code, 2, filtered.stdout + filtered.stderr);
  assert.match(
    filtered.stderr,
    /tables\[0\]\.where or \.transform: the source role may not run the source query: permission denied for table orders \(a column, table or function the expression reads/,
  );
  assert.equal(await count('tgt', 'SELECT count(*) AS n FROM public.orders_peek'), 0);
});

test('privileges: a role that may only read the target is refused in copy mode (INSERT, DELETE) and passes in verify mode', async () => {
  const doc = specDoc('look', 'looker', { target: 'public.orders_look' });
  const r = await validate('look', doc);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.ok(
    r.stderr.includes(
      'tables[0].target: role looker on connection "tgt_looker" has no INSERT on public.orders_look (each range is copied into these columns by COPY); fix: GRANT INSERT ON public.orders_look TO looker',
    ),
    r.stderr,
  );
  assert.ok(
    r.stderr.includes(
      'tables[0].target: role looker on connection "tgt_looker" has no DELETE on public.orders_look (each range is deleted before it is copied, so a retry leaves it as once); fix: GRANT DELETE ON public.orders_look TO looker',
    ),
    r.stderr,
  );
  assert.ok((await planningRefusal(doc)).includes('has no DELETE on public.orders_look'));
  // Verify mode writes no row of the target.
  const v = await validate('look-verify', { ...doc, name: 'look-verify', mode: 'verify' });
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(
    v.stdout,
    /target: role looker on connection "tgt_looker": USAGE on schema public; SELECT on public\.orders_look; no row-level security on public\.orders_look; SELECT, UPDATE on sequence public\.orders_look_id_seq/,
  );
});

test('privileges: a role named backfill finds an unqualified target in the ledger schema; refused with the schema-qualified name, which then passes', async () => {
  const doc = specDoc('bf', 'backfill', { target: 'orders_v2' }, { target: aliasOf('tgtb', 'backfill') });
  const r = await validate('bf', doc);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.ok(
    r.stderr.includes(
      'tables[0].target: "orders_v2" names no schema, and the search path of role backfill on connection "tgtb_backfill" ("$user", public; the role is named backfill, so "$user" there is that schema) ' +
        'finds it in schema backfill, where this tool keeps its own ledger; name the table with its schema: public.orders_v2',
    ),
    r.stderr,
  );
  const ok = await validate('bf-qualified', { ...doc, name: 'bf-qualified', tables: [{ ...doc.tables[0], target: 'public.orders_v2' }] });
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /\n {2}public\.orders → public\.orders_v2\n/);
});

test('privileges: a non-superuser with exactly the documented rights passes; validate shows the resolved names and what it checked; the migration then runs with it', async () => {
  const doc = specDoc('mover', 'mover', { source: 'orders' }, { cutover: { switch: { connection: aliasOf('tgt', 'mover'), sql: 'SELECT 1' } } });
  const r = await validate('mover', doc);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(
    r.stdout,
    /the tables, as the databases resolve their names:\n {2}public\.orders → public\.orders_v2 \(orders found through the search path\)\n/,
  );
  assert.match(
    r.stdout,
    /privileges: checked for role mover on source \(connection "src_mover"\), role mover on target \(connection "tgt_mover"\), role mover on control \(connection "tgt_mover"\);/,
  );
  assert.match(
    r.stdout,
    /\n {2}source: role mover on connection "src_mover": USAGE on schema public; SELECT on public\.orders; no row-level security on public\.orders\n/,
  );
  assert.match(
    r.stdout,
    /\n {2}target: role mover on connection "tgt_mover": USAGE on schema public; SELECT on public\.orders_v2; INSERT on public\.orders_v2; DELETE on public\.orders_v2; no row-level security on public\.orders_v2; SELECT, UPDATE on sequence public\.orders_v2_id_seq\n/,
  );
  assert.match(r.stdout, /\n {2}control: role mover on connection "tgt_mover": CREATE on database tgt\n/);
  assert.match(
    r.stdout,
    /not checked:\n {2}cutover\.switch: the rights its own SQL needs on connection "tgt_mover" \(role mover\) are not known before it runs\n/,
  );

  // What validate asked for is what the migration's statements need: planning, every range, the
  // whole-table check, the report, the sequences and the switch all run as this role.
  const spec = parsed(doc);
  const { plans } = await planMigration({ migration: spec.name, spec });
  const plan = plans[0];
  for (let i = 0; i < plan.rangeCount; i++) {
    const res = await copyRange({ migration: spec.name, spec, table: spec.tables[0], tableIndex: 0, plan, rangeIndex: i, attempt: 1, finalAttempt: true });
    assert.equal(res.status, 'verified');
  }
  assert.equal((await reconcileTable({ migration: spec.name, spec, tableIndex: 0, plan })).failed.length, 0);
  const report = await buildReport({ migration: spec.name, spec, phase: 'awaiting_approval', plans, generatedAt: new Date().toISOString() });
  assert.equal(report.verdict, 'green');
  await appendAudit(spec, { migration: spec.name, execution: 'e1', action: 'approve', actor: 'test', digest: report.digest });
  assert.deepEqual(await advanceSequences({ spec }), [{ sequence: 'public.orders_v2_id_seq', value: '2000' }]);
  assert.equal((await runSwitch({ migration: spec.name, execution: 'e1', spec, digest: report.digest, approver: 'test' })).applied, true);
  assert.equal(await count('tgt', 'SELECT count(*) AS n FROM public.orders_v2'), 2000);
});

test('privileges: row-level security that hides source rows from the role is refused (the evidence would agree on the rows it sees)', async () => {
  const doc = specDoc('rls', 'looker', { source: 'public.secrets', target: 'public.secrets' }, { mode: 'verify' });
  const r = await validate('rls', doc);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.ok(
    r.stderr.includes(
      'tables[0].source: role looker on connection "src_looker" is subject to row-level security on public.secrets, which hides rows from it ' +
        "(rows its policies hide would be neither copied nor compared, and both sides would still agree); fix: ALTER ROLE looker BYPASSRLS (or connect as the table's owner, postgres)",
    ),
    r.stderr,
  );
});

test('privileges: foreign keys on the target need their table owned and the referenced key REFERENCES; with both, planning sets them aside and restores them as that role', async () => {
  const doc = specDoc('keeper', 'keeper', { source: 'public.lines', target: 'public.lines' }, { control: aliasOf('ctlk', 'keeper') });
  const r = await validate('keeper', doc);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  const why =
    '(planning sets aside the foreign key lines_order_id_fkey of public.lines (drops it, kept in the ledger) and re-creates it once the data is proven)';
  assert.ok(
    r.stderr.includes(
      `target: role keeper on connection "tgt_keeper" does not own public.lines ${why}; fix: ALTER TABLE public.lines OWNER TO keeper (its owner now: postgres)`,
    ),
    r.stderr,
  );
  assert.ok(
    r.stderr.includes(
      `target: role keeper on connection "tgt_keeper" has no REFERENCES on column "id" of public.parents ${why}; fix: GRANT REFERENCES ("id") ON public.parents TO keeper`,
    ),
    r.stderr,
  );
  assert.ok((await planningRefusal(doc)).includes('does not own public.lines'));
  assert.equal(await count('tgt', `SELECT count(*) AS n FROM pg_constraint WHERE conname = 'lines_order_id_fkey'`), 1, 'nothing set aside');

  await dbs.pg.query('tgt', 'ALTER TABLE public.lines OWNER TO keeper; GRANT REFERENCES ON public.parents TO keeper');
  const ok = await validate('keeper', doc);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /target: role keeper on connection "tgt_keeper": .*ownership of public\.lines; REFERENCES on public\.parents/);
  const spec = parsed(doc);
  const { plans } = await planMigration({ migration: spec.name, spec });
  assert.deepEqual(plans[0].setAside, ['lines_order_id_fkey']);
  for (let i = 0; i < plans[0].rangeCount; i++)
    assert.equal(
      (await copyRange({ migration: spec.name, spec, table: spec.tables[0], tableIndex: 0, plan: plans[0], rangeIndex: i, attempt: 1, finalAttempt: true }))
        .status,
      'verified',
    );
  const restored = await restoreConstraints({ spec, migration: spec.name });
  assert.deepEqual(
    restored.map((c) => [c.name, c.valid]),
    [['lines_order_id_fkey', true]],
  );
});

test('privileges: catch-up by a change column needs a source role that sees other sessions (pg_read_all_stats); granted, it passes', async () => {
  const doc = specDoc('events', 'mover', { source: 'public.events', target: 'public.events', delta: { column: 'updated_at' } });
  const r = await validate('events', doc);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.ok(
    r.stderr.includes(
      'tables[0].delta: role mover on connection "src_mover" cannot see the transactions of other sessions (the watermark must never pass the oldest open writing transaction, ' +
        "which only a role that sees other sessions' transactions can find); fix: GRANT pg_read_all_stats TO mover",
    ),
    r.stderr,
  );
  await dbs.pg.query('src', 'GRANT pg_read_all_stats TO mover');
  const ok = await validate('events', doc);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /source: role mover on connection "src_mover": .*; member of pg_read_all_stats\n/);
  assert.match(ok.stdout, /target: role mover on connection "tgt_mover": .*; TEMPORARY on database tgt\n/);
});

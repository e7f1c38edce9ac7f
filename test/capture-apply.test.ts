// Change capture's apply engine against a real PostgreSQL: a slot and its exported snapshot give the
// initial copy, the stream brings everything after it, and the target must end equal to the source
// by an independent query, whatever is killed on the way, with nothing applied twice.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { startPostgres, type PostgresServer } from '../src/infra/postgres';
import { qualifiedName, quoteLiteral } from '../src/db/sql';
import { applyChanges } from '../src/capture/apply';
import { emitStop } from '../src/capture/apply-source';
import { type ApplyOptions } from '../src/capture/apply-types';
import { type CaptureTable } from '../src/capture/tables';
import { createSlot, openStream } from '../src/capture/replication';
import { parseLsn } from '../src/capture/lsn';
import { bindRelation, StatementCache } from '../src/capture/tables';
import type { RelationMessage } from '../src/capture/pgoutput';

let server: PostgresServer;
let target: pg.Pool;

before(async () => {
  server = await startPostgres({ quiet: true });
  await server.createDatabase('src');
  await server.createDatabase('tgt');
  target = new pg.Pool({ connectionString: server.url('tgt'), max: 4 });
  target.on('error', () => undefined);
});

after(async () => {
  await target?.end();
  await server?.stop();
});

const src = (sql: string, values?: unknown[]) => server.query('src', sql, values);
const tgt = (sql: string, values?: unknown[]) => server.query('tgt', sql, values);

/** One session on the source for a workload: many transactions without a connection each. */
async function sourceSession<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: server.url('src') });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function inTx(c: pg.Client, statements: [string, unknown[]?][]): Promise<void> {
  await c.query('BEGIN');
  for (const [sql, values] of statements) await c.query(sql, values);
  await c.query('COMMIT');
}

interface Setup {
  table: CaptureTable;
  options: (over?: Partial<ApplyOptions>) => ApplyOptions;
  /** the same rows, printed alike, on both sides */
  fingerprints: () => Promise<{ source: string; target: string }>;
}

/**
 * A source table `name` and a target `name_v2` (same columns, minus `sourceOnly`, plus a
 * target-only one), a publication, a slot, and the initial copy through the slot's snapshot.
 * `whileSnapshotHeld` writes after the slot exists and before the copy: the copy must not see
 * them, the stream must bring them.
 */
async function prepare(
  name: string,
  o: { columns: string; copied: string[]; fill?: string; sourceOnly?: string; alsoPublished?: string[]; whileSnapshotHeld?: () => Promise<void> },
): Promise<Setup> {
  await src(`CREATE TABLE public.${name} (${o.columns}${o.sourceOnly ? `, ${o.sourceOnly}` : ''})`);
  if (o.fill) await src(o.fill);
  await tgt(`CREATE TABLE public.${name}_v2 (${o.columns}, tgt_only text DEFAULT 'kept')`);
  const published = [`public.${name}`, ...(o.alsoPublished ?? [])].join(', ');
  await src(`CREATE PUBLICATION ${name}_pub FOR TABLE ${published}`);
  const slot = await createSlot(server.url('src'), { slot: `${name}_slot`, temporary: false });
  assert.match(slot.consistentPoint, /^[0-9A-F]+\/[0-9A-F]+$/);
  await o.whileSnapshotHeld?.();
  const list = o.copied.join(', ');
  const reader = new pg.Client({ connectionString: server.url('src') });
  const writer = new pg.Client({ connectionString: server.url('tgt') });
  await Promise.all([reader.connect(), writer.connect()]);
  try {
    await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await reader.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(slot.snapshot)}`);
    await pipeline(
      reader.query(copyTo(`COPY (SELECT ${list} FROM public.${name}) TO STDOUT`)),
      writer.query(copyFrom(`COPY public.${name}_v2 (${list}) FROM STDIN`)),
    );
    await reader.query('COMMIT');
  } finally {
    await Promise.all([reader.end(), writer.end()]);
  }
  // Releases the snapshot (it holds back the source's vacuum); the slot stays.
  await slot.client.end();

  const types = await tgt(
    `SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
    [`public.${name}_v2`],
  );
  const typeOf = new Map(types.rows.map((r) => [r.attname as string, r.type as string]));
  const planned = await src(
    `SELECT attname AS name, atttypid::int AS "typeOid" FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [`public.${name}`],
  );
  const table: CaptureTable = {
    index: 0,
    sourceSchema: 'public',
    sourceName: name,
    target: qualifiedName('public', `${name}_v2`),
    columns: o.copied.map((c) => ({ source: c, target: c, type: typeOf.get(c) as string })),
    key: ['id'],
    sourceColumns: planned.rows as { name: string; typeOid: number }[],
  };
  const fp = (sql: string) => `SELECT count(*)::text || ':' || coalesce(md5(string_agg(row(${list})::text, ',' ORDER BY id)), '') AS fp FROM ${sql}`;
  return {
    table,
    options: (over = {}) => ({
      migration: name,
      slot: `${name}_slot`,
      publication: `${name}_pub`,
      source: server.url('src'),
      target,
      tables: [table],
      // The publication is this test's own: the tables it also publishes are known to be outside.
      relations: {
        publication: `${name}_pub`,
        managed: true,
        partitions: [],
        outside: (o.alsoPublished ?? []).map((q) => ({ schema: q.split('.')[0], name: q.split('.')[1] })),
      },
      maxMs: 20_000,
      ...over,
    }),
    fingerprints: async () => ({
      source: (await src(fp(`public.${name}`))).rows[0].fp as string,
      target: (await tgt(fp(`public.${name}_v2`))).rows[0].fp as string,
    }),
  };
}

const confirmedFlush = async (slot: string) =>
  (await src(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rows[0].lsn as string;

const logDuplicates = async (migration: string) =>
  (
    await tgt(`SELECT count(*)::int AS n FROM (SELECT commit_lsn FROM backfill.capture_log WHERE migration = $1 GROUP BY commit_lsn HAVING count(*) > 1) d`, [
      migration,
    ])
  ).rows[0].n as number;

/** A small deterministic generator: the workload is the same on every run. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}

const MIXED_COLUMNS = `id bigint PRIMARY KEY, amount numeric(20,6), ratio float8, at timestamptz, day date, ref uuid,
  doc jsonb, blob bytea, note text, flag boolean, tags int[]`;
const MIXED = ['id', 'amount', 'ratio', 'at', 'day', 'ref', 'doc', 'blob', 'note', 'flag', 'tags'];
const AWKWARD_TEXTS = [`l'été "☃" 😀`, 'back\\slash\ttab\nnewline', '', "''", 'ünïcödé ß 中文'];
const FLOATS = ['0.1', '1e-300', '-2.5e+100', '0.30000000000000004', '1.7976931348623157e+308', '-0'];

function mixedRow(id: number, r: () => number): unknown[] {
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const maybe = <T>(v: T) => (r() < 0.15 ? null : v);
  const micros = String(Math.floor(r() * 1e6)).padStart(6, '0');
  return [
    id,
    maybe(`${Math.floor(r() * 1e13)}.${String(Math.floor(r() * 1e6)).padStart(6, '0')}`),
    maybe(pick(FLOATS)),
    maybe(`2024-0${1 + Math.floor(r() * 9)}-1${Math.floor(r() * 9)} 0${Math.floor(r() * 9)}:34:56.${micros}+0${Math.floor(r() * 9)}`),
    maybe(`19${10 + Math.floor(r() * 89)}-12-3${Math.floor(r() * 2)}`),
    maybe(
      `${Math.floor(r() * 0xffffffff)
        .toString(16)
        .padStart(8, '0')}-1234-4abc-8def-0123456789ab`,
    ),
    maybe(JSON.stringify({ n: r(), s: pick(AWKWARD_TEXTS), deep: { a: [1, 'two', null] } })),
    maybe(
      `\\x${Math.floor(r() * 0xffffff)
        .toString(16)
        .padStart(6, '0')}00ff`,
    ),
    maybe(pick(AWKWARD_TEXTS) + id),
    maybe(r() < 0.5),
    maybe(`{${Math.floor(r() * 100)},-7,${Math.floor(r() * 1e6)}}`),
  ];
}

const INSERT_MIXED = `INSERT INTO public.mixed (${MIXED.join(', ')}, src_only) VALUES (${MIXED.map((_, i) => `$${i + 1}`).join(', ')}, 'not copied')`;

test('inserts, updates, deletes and key changes of exact mixed types arrive equal; a second call with nothing new returns at once', async () => {
  await src(`CREATE TABLE public.other (id int PRIMARY KEY, v text)`);
  const r = rng(7);
  const ids = new Set<number>();
  let nextId = 1;
  const insertRow = () => {
    const id = nextId++;
    ids.add(id);
    return [INSERT_MIXED, mixedRow(id, r)] as [string, unknown[]];
  };
  const anyId = () => [...ids][Math.floor(r() * ids.size)];
  const writeTransactions = (c: pg.Client, n: number) =>
    (async () => {
      for (let t = 0; t < n; t++) {
        const ops: [string, unknown[]?][] = [];
        for (let k = 0; k < 1 + Math.floor(r() * 4); k++) {
          const p = r();
          if (p < 0.35 || ids.size < 5) ops.push(insertRow());
          else if (p < 0.7) {
            const id = anyId();
            ops.push([
              `UPDATE public.mixed SET amount = $2, ratio = $3, note = $4, tags = $5, src_only = 'changed' WHERE id = $1`,
              [id, ...[1, 2, 8, 10].map((i) => mixedRow(id, r)[i])],
            ]);
          } else if (p < 0.85) {
            const id = anyId();
            ids.delete(id);
            ops.push([`DELETE FROM public.mixed WHERE id = $1`, [id]]);
          } else if (p < 0.93) {
            // A primary key change: the stream sends the old key with the new row.
            const id = anyId();
            const moved = nextId++;
            ids.delete(id);
            ids.add(moved);
            ops.push([`UPDATE public.mixed SET id = $2, flag = NOT coalesce(flag, false) WHERE id = $1`, [id, moved]]);
          } else {
            ops.push([`INSERT INTO public.other VALUES ($1, 'not ours') ON CONFLICT (id) DO UPDATE SET v = 'again'`, [t]]);
          }
        }
        await inTx(c, ops);
      }
    })();

  const s = await prepare('mixed', {
    columns: MIXED_COLUMNS,
    copied: MIXED,
    sourceOnly: 'src_only text',
    alsoPublished: ['public.other'],
    whileSnapshotHeld: () =>
      sourceSession(async (c) => {
        for (let i = 0; i < 150; i++) await c.query(...insertRow());
        // Exact edge values, pinned rather than drawn.
        await c.query(
          `INSERT INTO public.mixed (${MIXED.join(', ')}) VALUES (0, 99999999999999.999999, 0.1, '2024-02-29 23:59:59.999999+00', '0001-01-01', '00000000-0000-0000-0000-000000000000', '{"a": 1e-7}', '\\x', $1, false, '{}')`,
          [`quote ' and "double" and \\ backslash`],
        );
        await c.query(`INSERT INTO public.mixed (id, ratio) VALUES (-1, 1e-300)`);
        await writeTransactions(c, 40);
      }),
  });
  // More after the copy: the snapshot did not include the ones above, the stream brings them all.
  await sourceSession((c) => writeTransactions(c, 200));
  await sourceSession((c) => inTx(c, [[`UPDATE public.mixed SET id = 1000000 WHERE id = 0`]]));

  const first = await applyChanges(s.options());
  assert.equal(first.reached, true);
  assert.ok(first.transactions >= 240, `${first.transactions} transactions`);
  assert.ok(first.rows[0].inserted >= 150 && first.rows[0].updated > 0 && first.rows[0].deleted > 0, JSON.stringify(first.rows));
  assert.equal(first.unmatched[0], 0);
  assert.ok(first.skippedChanges > 0, 'changes to public.other are skipped');
  assert.equal(first.lagSeconds, 0);
  const fp = await s.fingerprints();
  assert.equal(fp.target, fp.source);
  assert.equal((await tgt(`SELECT ratio::text AS r FROM public.mixed_v2 WHERE id = -1`)).rows[0].r, '1e-300');
  assert.equal((await tgt(`SELECT count(*)::int AS n FROM public.mixed_v2 WHERE tgt_only <> 'kept'`)).rows[0].n, 0, 'target-only columns are left alone');

  // The key change is recorded under both its old and new key, in one transaction.
  const moved = await tgt(
    `SELECT k.key FROM backfill.capture_keys k JOIN backfill.capture_keys n USING (migration, commit_lsn)
      WHERE k.migration = 'mixed' AND n.key = '{1000000}' ORDER BY k.key`,
  );
  assert.deepEqual(
    moved.rows.map((row) => row.key),
    [['0'], ['1000000']],
  );
  const logged = await tgt(`SELECT count(*)::int AS n, sum(rows)::int AS rows FROM backfill.capture_log WHERE migration = 'mixed'`);
  assert.equal(logged.rows[0].n, first.transactions);
  assert.equal(await logDuplicates('mixed'), 0);

  const again = await applyChanges(s.options());
  assert.equal(again.reached, true);
  assert.equal(again.transactions, 0);
  assert.deepEqual(again.applied, first.applied);
});

test('an unchanged TOASTed value is left out of the UPDATE (the target keeps its own); a changed one is applied', async () => {
  const big = (seed: string) => `SELECT string_agg(md5('${seed}' || g), '') FROM generate_series(1, 250) g`;
  const s = await prepare('toasty', {
    columns: 'id int PRIMARY KEY, n int, doc text',
    copied: ['id', 'n', 'doc'],
    fill: `INSERT INTO public.toasty SELECT g, 0, (${big('a')}) || g FROM generate_series(1, 3) g`,
  });
  const external = await src(`SELECT pg_column_size(doc) AS stored, length(doc) AS len FROM public.toasty WHERE id = 1`);
  assert.ok(external.rows[0].len > 8000 && external.rows[0].stored >= 8000, 'stored out of line, uncompressed');
  // Tamper with the target's copy of row 2: if the UPDATE below wrote doc, this would be lost.
  await tgt(`UPDATE public.toasty_v2 SET doc = 'target''s own' WHERE id = 2`);
  await src(`UPDATE public.toasty SET n = n + 1 WHERE id IN (1, 2)`);
  await src(`UPDATE public.toasty SET doc = (${big('b')}), n = 7 WHERE id = 3`);

  const r = await applyChanges(s.options());
  assert.equal(r.reached, true);
  assert.equal(r.rows[0].updated, 3);
  const rows = (await tgt(`SELECT id, n, md5(doc) AS doc FROM public.toasty_v2 ORDER BY id`)).rows;
  const source = (await src(`SELECT id, n, md5(doc) AS doc FROM public.toasty ORDER BY id`)).rows;
  assert.deepEqual(rows[0], source[0], 'unchanged TOAST: the value stays');
  assert.deepEqual([rows[1].n, rows[1].doc], [1, (await tgt(`SELECT md5('target''s own') AS m`)).rows[0].m], 'the column was not written');
  assert.deepEqual(rows[2], source[2], 'a changed TOASTed value is applied');

  await src(`UPDATE public.toasty SET doc = doc || 'x' WHERE id = 2`);
  await applyChanges(s.options());
  const fp = await s.fingerprints();
  assert.equal(fp.target, fp.source);
});

test('untilLsn stops exactly before the first transaction at or past it; the next call continues', async () => {
  const s = await prepare('until', {
    columns: 'id int PRIMARY KEY, v text',
    copied: ['id', 'v'],
    fill: `INSERT INTO public.until SELECT g, 'v' || g FROM generate_series(1, 10) g`,
  });
  const batch = (from: number) =>
    sourceSession(async (c) => {
      for (let i = 0; i < 6; i++)
        await inTx(c, [
          [`INSERT INTO public.until VALUES ($1, 'new')`, [from + i]],
          [`UPDATE public.until SET v = v || '+' WHERE id = $1`, [1 + i]],
        ]);
    });
  await batch(100);
  // The insert position: a commit made before it has its record before it (the write position may lag).
  const point = (await src(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)).rows[0].lsn as string;
  const asOfPoint = (await s.fingerprints()).source;
  await batch(200);

  // No time at all: nothing applied, nothing reached, and the lag says how far behind it is.
  const none = await applyChanges(s.options({ maxMs: 0 }));
  assert.deepEqual([none.reached, none.transactions, none.applied.endLsn], [false, 0, '0/0']);
  assert.ok(BigInt(none.lagBytes) > 0n);

  const r = await applyChanges(s.options({ untilLsn: point }));
  assert.equal(r.reached, true);
  assert.equal(r.transactions, 6);
  assert.ok(parseLsn(r.applied.commitLsn) < parseLsn(point));
  assert.equal((await s.fingerprints()).target, asOfPoint, 'the target is the source as of the point');
  assert.ok(parseLsn(await confirmedFlush('until_slot')) <= parseLsn(point), 'nothing past the point is acknowledged');

  const rest = await applyChanges(s.options());
  assert.equal(rest.reached, true);
  assert.equal(rest.transactions, 6);
  assert.equal(rest.skippedTransactions, 0);
  const fp = await s.fingerprints();
  assert.equal(fp.target, fp.source);
});

test(
  "follow: a call goes on past its fence, applying what commits after it started, until its slot's stop mark; a mark from before the call, or another slot's, does not stop it",
  { timeout: 120_000 },
  async () => {
    const s = await prepare('followed', {
      columns: 'id int PRIMARY KEY, v text',
      copied: ['id', 'v'],
      fill: `INSERT INTO public.followed SELECT g, 'v' || g FROM generate_series(1, 10) g`,
    });
    // An earlier decision's mark, and one for another slot: neither is for the call below.
    await emitStop(server.url('src'), 'followed_slot');
    await src(`INSERT INTO public.followed VALUES (11, 'before')`);
    // No time limit that a test would wait out: only the stop mark ends this call.
    const call = applyChanges(s.options({ follow: true, maxMs: 3_600_000 }));
    let ended = false;
    void call.then(
      () => (ended = true),
      () => (ended = true),
    );
    // Rows committed while the call runs (after its fence, for the later ones) reach the target.
    for (let i = 12; i <= 16; i++) {
      await src(`INSERT INTO public.followed VALUES ($1, 'while')`, [i]);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (;;) {
      const n = (await tgt(`SELECT count(*)::int AS n FROM public.followed_v2 WHERE id BETWEEN 11 AND 16`)).rows[0].n as number;
      if (n === 6) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await emitStop(server.url('src'), 'another_slot');
    await src(`INSERT INTO public.followed VALUES (17, 'after another slot''s mark')`);
    for (;;) {
      if ((await tgt(`SELECT count(*)::int AS n FROM public.followed_v2 WHERE id = 17`)).rows[0].n === 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(ended, false, 'still following');
    await emitStop(server.url('src'), 'followed_slot');
    const r = await call;
    assert.equal(r.reached, true);
    assert.equal(r.transactions, 7);
    assert.equal(r.lagSeconds, 0);
    const fp = await s.fingerprints();
    assert.equal(fp.target, fp.source);
    // A later call starts after the mark it stopped at: nothing applied twice.
    const next = await applyChanges(s.options());
    assert.deepEqual([next.reached, next.transactions], [true, 0]);
  },
);

test('killed mid-apply (target session, stream, or the caller aborting): nothing lost, nothing applied twice', async () => {
  const s = await prepare('killed', {
    columns: 'id int PRIMARY KEY, v text',
    copied: ['id', 'v'],
    fill: `INSERT INTO public.killed SELECT g, 'v' FROM generate_series(1, 10) g`,
  });
  // Deterministic faults inside the apply: a session that kills itself once (a sequence survives the
  // rollback), and two slow rows, so that a progress report comes while they are applied.
  await tgt(`CREATE SEQUENCE killed_once;
    CREATE FUNCTION fault() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.id = 2500 AND nextval('killed_once') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
      IF NEW.id IN (12500, 22500) THEN PERFORM pg_sleep(1.5); END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER fault BEFORE INSERT ON public.killed_v2 FOR EACH ROW EXECUTE FUNCTION fault()`);
  const bigTransaction = (from: number) => src(`INSERT INTO public.killed SELECT g, md5(g::text) FROM generate_series($1::int, $1::int + 4999) g`, [from]);
  const small = (id: number) => src(`UPDATE public.killed SET v = v || '+' WHERE id = $1`, [id]);

  // 1. The target's session dies in the middle of a 5000-row transaction.
  await small(1);
  await bigTransaction(1001);
  await small(2);
  await assert.rejects(applyChanges(s.options()), (e: Error) => {
    assert.match(e.message, /^the connection to the target was lost while applying a change to public\.killed_v2 at key \(2500\): terminating connection/);
    assert.doesNotMatch(e.message, /postgres(ql)?:\/\/|\n\s+at /);
    return true;
  });
  const kept = await tgt(
    `SELECT count(*) FILTER (WHERE id > 1000)::int AS big, string_agg(v, ',' ORDER BY id) FILTER (WHERE id <= 2) AS small FROM public.killed_v2`,
  );
  assert.deepEqual(kept.rows[0], { big: 0, small: 'v+,v' }, 'only the first small transaction');
  const resumed = await applyChanges(s.options());
  assert.equal(resumed.reached, true);
  assert.equal(resumed.transactions, 2);
  assert.equal((await s.fingerprints()).target, (await s.fingerprints()).source);

  // 2. The caller aborts while a big transaction is being applied: rolled back, returned cleanly.
  await bigTransaction(10_001);
  await small(3);
  const abort = new AbortController();
  const aborted = await applyChanges(
    s.options({
      signal: abort.signal,
      onProgress: (p) => {
        if (p.applying) abort.abort();
      },
    }),
  );
  assert.equal(aborted.reached, false);
  assert.equal(aborted.transactions, 0);
  assert.ok(aborted.lagSeconds > 0);
  assert.ok(BigInt(aborted.lagBytes) > 0n);
  assert.equal((await tgt(`SELECT count(*)::int AS n FROM public.killed_v2 WHERE id > 10000`)).rows[0].n, 0, 'nothing of the aborted transaction');
  const caughtUp = await applyChanges(s.options());
  assert.deepEqual([caughtUp.reached, caughtUp.transactions], [true, 2]);
  assert.equal((await s.fingerprints()).target, (await s.fingerprints()).source);

  // 3. The stream's WAL sender is killed while the transaction is applied: it commits, but the
  // acknowledgement never reaches the slot. The call fails, or, when the fence had already
  // arrived (the frames received before the loss are still applied), ends having reached it.
  await bigTransaction(20_001);
  let killed = false;
  const outcome = await applyChanges(
    s.options({
      onProgress: (p) => {
        if (!p.applying || killed) return;
        killed = true;
        void src(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'killed_slot'`);
      },
    }),
  ).then(
    (r) => r,
    (e: Error) => e,
  );
  assert.ok(killed);
  if (outcome instanceof Error) assert.match(outcome.message, /^the replication (stream|connection)/);
  else assert.ok(outcome.reached && parseLsn(outcome.acknowledged) < parseLsn(outcome.applied.endLsn), 'the lost acknowledgement is not reported as sent');
  const recorded = async () => (await tgt(`SELECT end_lsn::text AS lsn FROM backfill.capture_applied WHERE migration = 'killed'`)).rows[0].lsn as string;
  assert.equal((await tgt(`SELECT count(*)::int AS n FROM public.killed_v2 WHERE id > 20000`)).rows[0].n, 5000, 'committed on the target');
  const confirmed = await confirmedFlush('killed_slot');
  assert.ok(parseLsn(confirmed) < parseLsn(await recorded()), 'but not acknowledged');
  // Resuming at the recorded end already spares the resend; start from the slot's own position
  // instead, so the slot sends the applied transaction again, and the commit-LSN filter must skip it.
  await tgt(`UPDATE backfill.capture_applied SET end_lsn = $1 WHERE migration = 'killed'`, [confirmed]);
  const last = await applyChanges(s.options());
  assert.equal(last.reached, true);
  assert.equal(last.transactions, 0);
  assert.equal(last.skippedTransactions, 1, 'the transaction sent again was skipped by its commit LSN');
  const fp = await s.fingerprints();
  assert.equal(fp.target, fp.source);
  assert.equal(await logDuplicates('killed'), 0);
});

test('feedback: the slot is acknowledged only after the target committed, and ends at what was acknowledged', async () => {
  const s = await prepare('feedback', { columns: 'id int PRIMARY KEY, v text', copied: ['id', 'v'] });
  // Sampled inside every applied change, in the apply's own transaction: the slot's position
  // against what the target had committed until then.
  await tgt(`CREATE TABLE feedback_samples (confirmed pg_lsn, applied pg_lsn);
    CREATE FUNCTION sample_feedback() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO feedback_samples SELECT (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'feedback_slot'),
                                          (SELECT end_lsn FROM backfill.capture_applied WHERE migration = 'feedback');
      RETURN NEW;
    END $$;
    CREATE TRIGGER sample_feedback BEFORE INSERT ON public.feedback_v2 FOR EACH ROW EXECUTE FUNCTION sample_feedback()`);
  const before = await confirmedFlush('feedback_slot');
  await sourceSession(async (c) => {
    for (let i = 1; i <= 300; i++) await c.query(`INSERT INTO public.feedback VALUES ($1, 'x')`, [i]);
  });
  const r = await applyChanges(s.options());
  assert.equal(r.reached, true);
  assert.equal(r.transactions, 300);
  const ahead = await tgt(`SELECT count(*)::int AS n FROM feedback_samples WHERE confirmed > greatest(applied, $1::pg_lsn)`, [before]);
  assert.equal(ahead.rows[0].n, 0, 'the slot never ran ahead of the target');
  const moved = await tgt(`SELECT count(*)::int AS n FROM feedback_samples WHERE confirmed > $1::pg_lsn`, [before]);
  assert.ok(moved.rows[0].n > 0, 'acknowledgements moved the slot while applying');
  assert.equal(await confirmedFlush('feedback_slot'), r.acknowledged);
  assert.ok(parseLsn(r.acknowledged) >= parseLsn(r.applied.endLsn));
  const recorded = await tgt(`SELECT end_lsn::text AS lsn, transactions::int AS n FROM backfill.capture_applied WHERE migration = 'feedback'`);
  assert.deepEqual(recorded.rows[0], { lsn: r.applied.endLsn, n: 300 });
});

test('a TRUNCATE is refused with a sentence and nothing of its transaction is applied; a missing row is counted, not an error', async () => {
  const s = await prepare('trunc', {
    columns: 'id int PRIMARY KEY, v text',
    copied: ['id', 'v'],
    fill: `INSERT INTO public.trunc SELECT g, 'v' FROM generate_series(1, 5) g`,
  });
  await tgt(`DELETE FROM public.trunc_v2 WHERE id = 2`);
  await sourceSession(async (c) => {
    await inTx(c, [[`INSERT INTO public.trunc VALUES (6, 'six')`], [`UPDATE public.trunc SET v = 'gone on the target' WHERE id = 2`]]);
    await inTx(c, [[`INSERT INTO public.trunc VALUES (7, 'seven')`], [`TRUNCATE public.trunc`], [`INSERT INTO public.trunc VALUES (8, 'eight')`]]);
  });
  const sentence =
    /^a TRUNCATE of public\.trunc on the source cannot be applied by change capture: start the migration of that table again \(a new migration name\)$/;
  const refusal = (e: Error) => sentence.test(e.message);
  await assert.rejects(applyChanges(s.options()), refusal);
  const rows = (await tgt(`SELECT id FROM public.trunc_v2 ORDER BY id`)).rows.map((r) => r.id);
  assert.deepEqual(rows, [1, 3, 4, 5, 6], 'the first transaction applied, nothing of the truncating one');
  const recorded = (await tgt(`SELECT end_lsn::text AS lsn FROM backfill.capture_applied WHERE migration = 'trunc'`)).rows[0].lsn as string;
  assert.ok(parseLsn(await confirmedFlush('trunc_slot')) <= parseLsn(recorded), 'the truncating transaction was not acknowledged');
  await assert.rejects(applyChanges(s.options()), refusal, 'refused again on the next call');

  // The missed update of row 2, seen on a table without the truncation.
  const t = await prepare('unmatched', {
    columns: 'id int PRIMARY KEY, v text',
    copied: ['id', 'v'],
    fill: `INSERT INTO public.unmatched VALUES (1, 'a'), (2, 'b')`,
  });
  await tgt(`DELETE FROM public.unmatched_v2 WHERE id = 2`);
  await src(`UPDATE public.unmatched SET v = 'c'`);
  await src(`DELETE FROM public.unmatched WHERE id = 2`);
  // Another session streams the slot (a dead worker's WAL sender, say): the call takes it over.
  const holder = await openStream(server.url('src'), { slot: 'unmatched_slot', publication: 'unmatched_pub', startLsn: '0/0' });
  const held = (async () => {
    for await (const frame of holder) assert.ok(frame.tag);
  })().then(
    () => undefined,
    (e: Error) => e,
  );
  const r = await applyChanges(t.options());
  assert.match((await held)?.message ?? 'the holder was not ended', /^the replication (stream|connection)/);
  await holder.close();
  assert.equal(r.reached, true);
  assert.deepEqual([r.rows[0].updated, r.unmatched[0]], [1, 2]);
});

test("an identity key GENERATED ALWAYS on both sides: inserts keep the source's ids, updates match the key without setting it, deletes; a key moved on the source is refused by the target, loudly", async () => {
  const s = await prepare('always', {
    columns: 'id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text',
    copied: ['id', 'v'],
    fill: `INSERT INTO public.always (v) SELECT 'row ' || g FROM generate_series(1, 50) g`,
  });
  await sourceSession((c) =>
    inTx(c, [
      [`INSERT INTO public.always (v) SELECT 'new ' || g FROM generate_series(1, 20) g`],
      [`UPDATE public.always SET v = v || ' changed' WHERE id % 3 = 0`],
      [`DELETE FROM public.always WHERE id % 7 = 0`],
    ]),
  );
  const r = await applyChanges(s.options());
  assert.ok(r.reached || r.transactions > 0, JSON.stringify(r));
  const fp = await s.fingerprints();
  assert.equal(fp.target, fp.source);
  // (70 is gone: a multiple of 7.)
  assert.equal((await tgt(`SELECT max(id)::int AS m FROM public.always_v2`)).rows[0].m, 69, "the source's ids, not the target's own");
  // The source moves a key (BY DEFAULT there): the target's ALWAYS identity refuses it.
  await src('ALTER TABLE public.always ALTER COLUMN id SET GENERATED BY DEFAULT');
  await src('UPDATE public.always SET id = 1000 WHERE id = 1');
  await assert.rejects(applyChanges(s.options()), /can only be updated to DEFAULT/);
});

test('statements: identifiers quoted part by part, values as typed parameters, unchanged columns and a key that stays left out of SET, one text per shape', () => {
  const table: CaptureTable = {
    index: 3,
    sourceSchema: 'Sales',
    sourceName: 'or"ders',
    target: qualifiedName('new schema', 'or"ders'),
    columns: [
      { source: 'id', target: 'Id', type: 'bigint' },
      { source: 'doc', target: 'doc text', type: 'text' },
      { source: 'at', target: 'at', type: 'timestamp with time zone' },
    ],
    key: ['id'],
    sourceColumns: ['id', 'extra', 'doc', 'at'].map((name) => ({ name, typeOid: 25 })),
  };
  // The stream's column order differs from the spec's, and it has a column the spec does not copy.
  const relation: RelationMessage = {
    tag: 'relation',
    relid: 1,
    schema: 'Sales',
    name: 'or"ders',
    replicaIdentity: 'd',
    columns: ['at', 'extra', 'doc', 'id'].map((name) => ({ name, typeOid: 25, typeModifier: -1, key: name === 'id' })),
  };
  const b = bindRelation(relation, table);
  const cache = new StatementCache();
  const t = (value: string) => ({ kind: 'text' as const, value });
  const ins = cache.prepare(b, { tag: 'insert', relid: 1, tuple: [t('2024-01-01 00:00:00.000001+00'), t('x'), { kind: 'null' }, t('42')] });
  assert.equal(
    ins.statement.text,
    `INSERT INTO "new schema"."or""ders" ("Id", "doc text", "at") OVERRIDING SYSTEM VALUE VALUES ($1::bigint, $2::text, $3::timestamp with time zone)`,
  );
  assert.deepEqual(ins.statement.values, ['42', null, '2024-01-01 00:00:00.000001+00']);
  assert.deepEqual(ins.keys, [['42']]);

  const upd = cache.prepare(b, { tag: 'update', relid: 1, tuple: [t('2025-01-01 00:00:00+00'), t('x'), { kind: 'unchanged' }, t('42')] });
  // The key stays: matched, not set (an identity key GENERATED ALWAYS may not be set).
  assert.equal(upd.statement.text, `UPDATE "new schema"."or""ders" SET "at" = $1::timestamp with time zone WHERE "Id" = $2::bigint`);
  assert.deepEqual(upd.statement.values, ['2025-01-01 00:00:00+00', '42']);
  const moved = cache.prepare(b, {
    tag: 'update',
    relid: 1,
    old: { kind: 'key', tuple: [{ kind: 'null' }, { kind: 'null' }, { kind: 'null' }, t('41')] },
    tuple: [t('2025-01-01 00:00:00+00'), t('x'), { kind: 'unchanged' }, t('42')],
  });
  assert.equal(
    moved.statement.text,
    `UPDATE "new schema"."or""ders" SET "Id" = $1::bigint, "at" = $2::timestamp with time zone WHERE "Id" = $3::bigint`,
    'a key that moved is set',
  );
  assert.deepEqual(moved.statement.values, ['42', '2025-01-01 00:00:00+00', '41'], 'the row is found by its old key');
  const again = cache.prepare(b, { tag: 'update', relid: 1, tuple: [t('2025-01-02 00:00:00+00'), t('x'), t('doc'), t('43')] });
  assert.equal(
    cache.prepare(b, { tag: 'update', relid: 1, tuple: [t('2025-01-03 00:00:00+00'), t('y'), t('doc'), t('44')] }).statement.name,
    again.statement.name,
    'one prepared statement per shape',
  );
  // Nothing left to set but the key, unchanged: the row is looked for (a missing one still counts).
  const keyOnly = cache.prepare(b, { tag: 'update', relid: 1, tuple: [{ kind: 'unchanged' }, t('x'), { kind: 'unchanged' }, t('42')] });
  assert.equal(keyOnly.statement.text, `SELECT 1 FROM "new schema"."or""ders" WHERE "Id" = $1::bigint`);
  assert.deepEqual(keyOnly.statement.values, ['42']);
  assert.deepEqual(moved.keys, [['41'], ['42']]);
  const del = cache.prepare(b, { tag: 'delete', relid: 1, old: { kind: 'key', tuple: [{ kind: 'null' }, { kind: 'null' }, { kind: 'null' }, t('41')] } });
  assert.equal(del.statement.text, `DELETE FROM "new schema"."or""ders" WHERE "Id" = $1::bigint`);

  assert.throws(() => bindRelation({ ...relation, columns: relation.columns.filter((c) => c.name !== 'id') }, table), {
    message: `the source's stream describes "Sales"."or""ders" without its key column id: its changes cannot be matched to target rows`,
  });
  assert.throws(() => bindRelation({ ...relation, columns: relation.columns.map((c) => ({ ...c, key: false })) }, table), /not part of its replica identity/);
});

test('bindRelation: a column added, a copied column dropped or retyped since planning stops with a sentence naming table, column and change; uncopied columns may change', () => {
  const table: CaptureTable = {
    index: 0,
    sourceSchema: 'public',
    sourceName: 'items',
    target: qualifiedName('public', 'items'),
    columns: [
      { source: 'id', target: 'id', type: 'bigint' },
      { source: 'qty', target: 'qty', type: 'integer' },
      { source: 'note', target: 'note', type: 'text' },
    ],
    key: ['id'],
    sourceColumns: [
      { name: 'id', typeOid: 20 },
      { name: 'qty', typeOid: 23 },
      { name: 'note', typeOid: 25 },
      { name: 'legacy', typeOid: 25 },
    ],
  };
  const col = (name: string, typeOid: number) => ({ name, typeOid, typeModifier: -1, key: name === 'id' });
  const relation = (columns: RelationMessage['columns']): RelationMessage => ({
    tag: 'relation',
    relid: 7,
    schema: 'public',
    name: 'items',
    replicaIdentity: 'd',
    columns,
  });
  const planned = [col('id', 20), col('qty', 23), col('note', 25), col('legacy', 25)];
  // As planned, in another order: bound.
  assert.deepEqual(bindRelation(relation([...planned].reverse()), table).positions, [3, 2, 1]);
  assert.throws(() => bindRelation(relation([...planned, col('priority', 23)]), table), {
    message:
      'a column "priority" was added to public.items on the source after planning; its values would not reach the target: abort, then start the migration again with a new name (add the column to the target, or name it in omit)',
  });
  assert.throws(() => bindRelation(relation(planned.filter((c) => c.name !== 'note')), table), {
    message: `the column "note" of public.items was dropped or renamed on the source after planning (or left out of the publication's column list); its changes cannot be applied to the target: abort, then start the migration again with a new name`,
  });
  assert.throws(() => bindRelation(relation(planned.map((c) => (c.name === 'qty' ? col('qty', 20) : c))), table), {
    message:
      'the column "qty" of public.items changed type on the source after planning (type OID 23 then, 20 now); its values may no longer fit the target as planned: abort, then start the migration again with a new name',
  });
  // A renamed column: the old name is gone (said first), the new one unknown.
  assert.throws(
    () => bindRelation(relation(planned.map((c) => (c.name === 'note' ? col('remark', 25) : c))), table),
    /the column "note" of public\.items was dropped or renamed/,
  );
  // A column that is not copied may be dropped or retyped: nothing of it reaches the target.
  assert.equal(bindRelation(relation(planned.filter((c) => c.name !== 'legacy')), table).positions.length, 3);
  assert.equal(bindRelation(relation(planned.map((c) => (c.name === 'legacy' ? col('legacy', 3802) : c))), table).positions.length, 3);
  // The key keeps its own sentence.
  assert.throws(() => bindRelation(relation(planned.filter((c) => c.name !== 'id')), table), /without its key column id: its changes cannot be matched/);
});

test("apply: a partitioned table via its root arrives whole (a row moved between partitions, a partition created later); published under the partitions' own names, or a relation not known, the stream stops with a sentence", async () => {
  await src(`CREATE TABLE public.parted (id bigint NOT NULL, at date NOT NULL, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)`);
  await src(`CREATE TABLE public.parted_a PARTITION OF public.parted FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')`);
  await src(`CREATE TABLE public.parted_b PARTITION OF public.parted FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')`);
  await src(`CREATE TABLE public.stray (id bigint PRIMARY KEY)`);
  for (const t of ['parted', 'parted_s']) await tgt(`CREATE TABLE public.${t} (id bigint NOT NULL, at date NOT NULL, v text, PRIMARY KEY (id, at))`);
  await src(`CREATE PUBLICATION parted_leaves FOR TABLE public.parted`);
  await src(`CREATE PUBLICATION parted_root FOR TABLE public.parted WITH (publish_via_partition_root = true)`);
  await src(`CREATE PUBLICATION parted_stray FOR TABLE public.parted, public.stray WITH (publish_via_partition_root = true)`);
  for (const slot of ['parted_leaves', 'parted_root', 'parted_stray']) await (await createSlot(server.url('src'), { slot, temporary: false })).client.end();
  await src(`INSERT INTO public.parted SELECT i, date '2024-01-01' + (i % 59), 'v' || i FROM generate_series(1, 200) i`);
  await src(`UPDATE public.parted SET at = date '2024-02-15', v = 'moved' WHERE id = 3`);
  await src(`DELETE FROM public.parted WHERE id = 4`);
  await src(`CREATE TABLE public.parted_c PARTITION OF public.parted FOR VALUES FROM ('2024-03-01') TO ('2024-04-01')`);
  await src(`INSERT INTO public.parted SELECT i, date '2024-03-01' + (i % 28), 'c' || i FROM generate_series(201, 260) i`);
  await src(`UPDATE public.parted SET at = date '2024-03-05' WHERE id = 5`);
  await src(`INSERT INTO public.stray VALUES (1)`);
  const planned = await src(
    `SELECT attname AS name, atttypid::int AS "typeOid" FROM pg_attribute WHERE attrelid = 'public.parted'::regclass AND attnum > 0 AND NOT attisdropped`,
  );
  const table: CaptureTable = {
    index: 0,
    sourceSchema: 'public',
    sourceName: 'parted',
    target: qualifiedName('public', 'parted'),
    columns: [
      { source: 'id', target: 'id', type: 'bigint' },
      { source: 'at', target: 'at', type: 'date' },
      { source: 'v', target: 'v', type: 'text' },
    ],
    key: ['id', 'at'],
    sourceColumns: planned.rows as { name: string; typeOid: number }[],
  };
  const partitions = ['parted_a', 'parted_b', 'parted_c'].map((name) => ({ schema: 'public', name, table: 0 }));
  // Each publication's slot is applied to a target table of its own.
  const run = (publication: string, managed: boolean, outside: { schema: string; name: string }[] = []) =>
    applyChanges({
      migration: publication,
      slot: publication,
      publication,
      source: server.url('src'),
      target,
      tables: [publication === 'parted_stray' ? { ...table, target: qualifiedName('public', 'parted_s') } : table],
      relations: { publication, managed, partitions, outside },
      maxMs: 20_000,
    });

  await assert.rejects(run('parted_leaves', true), {
    message:
      "the source's stream sends the changes of public.parted_a, a partition of public.parted, under the partition's own name (the publication parted_leaves has publish_via_partition_root off), so they would not reach the target: ALTER PUBLICATION parted_leaves SET (publish_via_partition_root = true), then abort and start the migration again with a new name",
  });
  const r = await run('parted_root', false);
  assert.equal(r.reached, true);
  assert.deepEqual(r.rows[0], { inserted: 262, updated: 0, deleted: 3 }, 'a row moved between partitions: a delete and an insert');
  const fp = (sql: (q: string) => Promise<pg.QueryResult>) =>
    sql(`SELECT count(*)::int AS n, md5(string_agg(t::text, ',' ORDER BY id, at)) AS m FROM public.parted t`).then((x) => x.rows[0]);
  assert.deepEqual(await fp(tgt), await fp(src));
  assert.equal((await src(`SELECT count(*)::int AS n FROM public.parted_c`)).rows[0].n, 61);

  // Our own publication sends only the spec's tables: another relation is an error, never skipped.
  await assert.rejects(run('parted_stray', false), (e: Error & { code?: string }) => {
    assert.match(e.message, /^the source's stream sends the changes of public\.stray, which is not a table of this migration/);
    assert.equal(e.code, '0A000');
    return true;
  });
  // The user's: one it did not know of is looked up again (retried); one known outside is skipped.
  await assert.rejects(
    run('parted_stray', true),
    (e: Error & { code?: string }) => e.code === '55000' && /did not publish when this call began/.test(e.message),
  );
  const skipped = await run('parted_stray', true, [{ schema: 'public', name: 'stray' }]);
  assert.equal(skipped.skippedChanges, 1);
});

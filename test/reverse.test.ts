// The way back (`cutover.reverse`), end to end against real servers: writes on the source through
// the backfill, the switch, writes on the target, each going back to the source by the stream from
// the target; `finish` (the update, or `keep` elapsed) ends it, and the source equals the target by an
// independent md5 of every row, the switch recorded once, no slot or publication left on either
// side. Also: planning refuses a slot of the way back left on the target by an earlier run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { backfillMigration } from '../src/workflows/migration';
import pg from 'pg';
import { abortSignal, approveCutoverUpdate, finishUpdate, switchBackUpdate, progressQuery, reportQuery, type Progress } from '../src/workflows/messages';
import type { Report } from '../src/domain/report';
import { lastKeptReport } from '../src/report/build';
import { renderMarkdown } from '../src/report/render';
import { openedNote, reverseFromAudit, reverseLines, reversePhase } from '../src/domain/reverse-report';
import { captureOf, checkSpec, type MigrationSpecInput } from '../src/spec/schema';
import { reversedSpec } from '../src/spec/reverse';
import { endingOf, replayAndMaybeRecord, waitForPhase } from './helpers/temporal';
import { useStack } from './hooks';
import { capturedSpecFor, parsed } from './helpers/spec';
import { tableGate, until } from './helpers/fault-points';
import { startWriter, tableFingerprint } from '../src/infra/writer';
import { FILL_WRITER_TABLE, WRITER_TABLE } from '../src/db/demo';

const TASK_QUEUE = 'reverse';
const ROWS = 20_000;
const TABLES = ['orders', 'kept', 'leftover', 'aborted', 'cancelled', 'refused', 'back', 'held', 'failing', 'truncated', 'checkpointed'];

const stack = useStack(TASK_QUEUE, async (db) => {
  await db.query('src', `CREATE ROLE app LOGIN PASSWORD 'app'`);
  for (const t of TABLES) {
    await db.query('src', WRITER_TABLE(`public.${t}`));
    await db.query('src', FILL_WRITER_TABLE(`public.${t}`, ROWS));
    await db.query('src', `GRANT SELECT, INSERT, UPDATE, DELETE ON public.${t} TO app`);
    // The application may read the target, and write it only once the switch hands it over.
    await db.query('tgt', WRITER_TABLE(`public.${t}`));
    await db.query('tgt', `GRANT SELECT ON public.${t} TO app`);
  }
  // An identity key GENERATED ALWAYS on both sides, as an application's own table would have it.
  // And a column whose default draws from a sequence no column owns.
  const ident =
    "CREATE SEQUENCE public.ident_ref; CREATE TABLE public.ident (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text NOT NULL, ref bigint NOT NULL DEFAULT nextval('public.ident_ref'))";
  await db.query('src', ident);
  await db.query('src', `INSERT INTO public.ident (v) SELECT 'row ' || g FROM generate_series(1, 2000) g`);
  await db.query('tgt', ident);
  // The target's column is wider than the source's: a value written there may not fit back.
  await db.query('src', 'CREATE TABLE public.narrowed (id bigint PRIMARY KEY, code varchar(5) NOT NULL)');
  await db.query('src', `INSERT INTO public.narrowed SELECT g, 'c' || g FROM generate_series(1, 1000) g`);
  await db.query('tgt', 'CREATE TABLE public.narrowed (id bigint PRIMARY KEY, code text NOT NULL)');
});

type Doc = MigrationSpecInput & { name: string; cutover: NonNullable<MigrationSpecInput['cutover']> };

const appUrl = (db: 'src' | 'tgt') => stack.pg.url(db).replace(/\/\/postgres:[^@]*@/, '//app:app@');

/** A captured migration whose switch hands the writes to the target, with the way back. */
function reverseSpec(name: string, table: string, keep?: string): Doc {
  const doc = capturedSpecFor(name, `public.${table}`, { taskQueue: TASK_QUEUE, chunk: 4_000 });
  const writes = (db: string, verb: 'GRANT' | 'REVOKE') => ({
    connection: db,
    sql: `${verb} INSERT, UPDATE, DELETE ON public.${table} ${verb === 'GRANT' ? 'TO' : 'FROM'} app`,
  });
  return {
    ...doc,
    cutover: {
      ...doc.cutover,
      switch: writes('tgt', 'GRANT'),
      reverse: { freeze: writes('tgt', 'REVOKE'), unfreeze: writes('tgt', 'GRANT'), switch: writes('src', 'GRANT'), ...(keep ? { keep } : {}) },
    },
  } as Doc;
}

/** The slots and publications of the migration and of its way back, on either database's server, by name. */
async function leftBehind(doc: Doc): Promise<{ slots: string[]; publications: { src: string[]; tgt: string[] } }> {
  const spec = parsed(doc);
  const names = [captureOf(spec)!, captureOf(reversedSpec(spec)!)!];
  const slots = await stack.pg.query('src', 'SELECT slot_name AS s FROM pg_replication_slots WHERE slot_name LIKE ANY ($1)', [
    names.map((n) => `${n.slot.slice(0, 40)}%`),
  ]);
  const pubs = async (db: 'src' | 'tgt') =>
    (await stack.pg.query(db, 'SELECT pubname AS p FROM pg_publication WHERE pubname = ANY ($1)', [names.map((n) => n.publication)])).rows.map((r) =>
      String(r.p),
    );
  return { slots: slots.rows.map((r) => String(r.s)), publications: { src: await pubs('src'), tgt: await pubs('tgt') } };
}

/** An update refused by its validator, with this reason. */
const refusedWith = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof WorkflowUpdateFailedError);
  assert.match(String((e.cause as Error)?.message), re);
  return true;
};

/** The report the ledger keeps for a migration, with its audit as it stands (`backfill report --ledger`). */
async function ledgerReport(migration: string): Promise<Report> {
  const pool = new pg.Pool({ connectionString: stack.pg.url('tgt') });
  try {
    const r = await lastKeptReport(pool, migration);
    assert.ok(r, `the ledger keeps a report of ${migration}`);
    return r;
  } finally {
    await pool.end();
  }
}

const same = async (table: string) => {
  const [s, t] = await Promise.all([tableFingerprint(stack.pg.url('src'), `public.${table}`), tableFingerprint(stack.pg.url('tgt'), `public.${table}`)]);
  return { s, t, equal: s.rows === t.rows && s.md5 === t.md5 };
};

/** Started, approved at the gate, and on to phase switched (no writer). */
async function toSwitched(doc: Doc) {
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
  const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
  assert.equal(p.phase, 'awaiting_approval', p.detail);
  await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
  assert.equal((await waitForPhase(h, ['switched', 'completed', 'failed'])).phase, 'switched');
  return h;
}

/** Through the backfill with a writer on the source, to the approval, and on to phase switched. */
async function switchWithWriter(doc: Doc, table: string) {
  const writer = await startWriter(appUrl('src'), `public.${table}`, { perSecond: 150, firstNewId: ROWS + 1, maxId: ROWS });
  const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
  try {
    const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
    assert.equal(p.phase, 'awaiting_approval', p.detail);
    // Finish is refused before the switch: there is no way back to end yet.
    await assert.rejects(
      h.executeUpdate(finishUpdate, { args: [{ actor: 'carol' }] }),
      refusedWith(/^cannot finish: the migration is in phase awaiting_approval/),
    );
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
    const switched = await waitForPhase(h, ['switched', 'completed', 'failed', 'needs_attention', 'catching_up']);
    assert.equal(switched.phase, 'switched', switched.detail);
    assert.ok(switched.reverse?.since, 'progress shows the way back, from the switch');
  } finally {
    await writer.stop();
  }
  assert.equal(writer.counts.failed, 0, writer.lastError());
  assert.ok(writer.counts.refused > 0 || writer.total() > 0, 'the writer wrote on the source');
  // The source took no write since the freeze (the app lost its rights there), and the way back is
  // open: the source equals the target.
  return h;
}

test(
  'reverse: writes on the source, the switch, writes on the target that go back to the source; finish ends the way back; equal by md5, nothing left behind',
  { timeout: 240_000 },
  async () => {
    const doc = reverseSpec('reversed', 'orders');
    const h = await switchWithWriter(doc, 'orders');
    // The application writes the target now; every change goes back to the source.
    const onTarget = await startWriter(appUrl('tgt'), 'public.orders', { perSecond: 150, firstNewId: 10 * ROWS, maxId: ROWS });
    try {
      await until('the application writes the target', async () => onTarget.total() >= 100);
    } finally {
      await onTarget.stop();
    }
    assert.equal(onTarget.counts.failed, 0, onTarget.lastError());
    assert.ok(onTarget.counts.inserts > 0 && onTarget.counts.updates > 0 && onTarget.counts.deletes > 0, JSON.stringify(onTarget.counts));
    // The source follows: equal once the stream has applied the writer's last transaction.
    await until('the source equals the target', async () => (await same('orders')).equal, 60_000);
    assert.equal((await h.query<Progress>(progressQuery)).phase, 'switched');
    // A finish needs an actor.
    await assert.rejects(h.executeUpdate(finishUpdate, { args: [{ actor: ' ' }] }), refusedWith(/^finish needs \{ actor, reason\? \}$/));
    await h.executeUpdate(finishUpdate, { args: [{ actor: 'carol', reason: 'the target is fine' }] });
    const r = await h.result();
    assert.equal(r.phase, 'completed', r.reason);
    assert.equal(r.verdict, 'green');
    assert.ok(r.switchedAt && r.digest);
    assert.deepEqual({ by: r.reverse?.finishedBy, why: r.reverse?.reason }, { by: 'carol', why: 'the target is fine' });
    const end: Progress = await h.query(progressQuery);
    assert.match(end.reverse?.appliedLsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
    const { s, t, equal } = await same('orders');
    assert.ok(equal, `source ${JSON.stringify(s)} target ${JSON.stringify(t)}`);
    assert.deepEqual(await leftBehind(doc), { slots: [], publications: { src: [], tgt: [] } });
    // The switch ran once, and the finish is audited.
    const sw = await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM backfill.switches WHERE migration = 'reversed'`);
    assert.equal(sw.rows[0].n, 1);
    const audit = await stack.pg.query(
      'tgt',
      `SELECT action, actor FROM backfill.audit WHERE migration = 'reversed' AND action IN ('switch', 'finish') ORDER BY id`,
    );
    assert.deepEqual(
      audit.rows.map((x) => `${String(x.action)}:${String(x.actor ?? '')}`),
      ['switch:alice', 'finish:carol'],
    );
    // Nothing applied to the source twice.
    const dup = await stack.pg.query(
      'src',
      `SELECT count(*)::int AS n, count(DISTINCT commit_lsn)::int AS d FROM backfill.capture_log WHERE migration = 'reversed.reverse'`,
    );
    assert.ok(dup.rows[0].n >= 20, `${dup.rows[0].n} target transactions went back`);
    assert.equal(dup.rows[0].n, dup.rows[0].d, 'no target transaction applied twice');
    // The result counts every one of them, the call the finish stopped included.
    assert.equal(r.reverse?.transactions, dup.rows[0].n, JSON.stringify(r.reverse));
    // The report says how the way back ended, live and from the ledger.
    const live: Report = await h.query(reportQuery);
    assert.deepEqual(live.reverse?.finished, { by: 'carol', reason: 'the target is fine' });
    assert.equal(live.reverse?.stream?.transactions, r.reverse?.transactions);
    const kept = await ledgerReport('reversed');
    assert.deepEqual([kept.phase, kept.reverse?.finished], ['completed', { by: 'carol', reason: 'the target is fine' }]);
    await replayAndMaybeRecord(h, 'reverse-finished-reported');
  },
);

test(
  'reverse: the switch back, after writes on the target: red while a write on the source went round the stream (the target unfrozen, the approval void), then green: equal by md5, each switch once, authority on the source, nothing left',
  { timeout: 240_000 },
  async () => {
    const doc = reverseSpec('reversed-back', 'back');
    const h = await switchWithWriter(doc, 'back');
    const onTarget = await startWriter(appUrl('tgt'), 'public.back', { perSecond: 150, firstNewId: 10 * ROWS, maxId: ROWS });
    try {
      await until('the application writes the target', async () => onTarget.total() >= 60);
    } finally {
      await onTarget.stop();
    }
    assert.equal(onTarget.counts.failed, 0, onTarget.lastError());
    // Someone writes the source directly while the target is the authority: no stream carries it.
    await stack.pg.query('src', `UPDATE public.back SET status = 'meddled' WHERE id = 7`);
    const p: Progress = await h.query(progressQuery);
    const digest = p.reverse!.digest!;
    assert.match(digest, /^[0-9a-f]{32}$/);
    // The report presents the way back's evidence and its digest, live and as the ledger keeps it.
    const live: Report = await h.query(reportQuery);
    assert.equal(live.phase, 'switched');
    assert.equal(live.reverse?.digest, digest);
    assert.match(live.reverse?.point ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.ok(live.reverse?.stream, JSON.stringify(live.reverse));
    const kept = await ledgerReport('reversed-back');
    assert.deepEqual([kept.phase, kept.reverse?.digest, kept.reverse?.point], ['switched', digest, live.reverse?.point]);
    assert.match(renderMarkdown(kept), /## The way back\n\nAuthority is on the target since .*; the source follows it\./);
    await assert.rejects(
      h.executeUpdate(switchBackUpdate, { args: [{ approver: 'bob', digest: 'f'.repeat(32) }] }),
      refusedWith(/is not the way back's evidence/),
    );
    await h.executeUpdate(switchBackUpdate, { args: [{ approver: 'bob', digest }] });
    const red = await waitForPhase(h, ['switched', 'completed', 'failed'], 120_000);
    await until('the switch back turns red', async () => (await h.query<Progress>(progressQuery)).reverse?.red !== undefined, 60_000);
    const after: Progress = await h.query(progressQuery);
    assert.equal(after.phase, 'switched', red.detail);
    assert.match(after.reverse!.red!, /row version|differ/);
    assert.equal((await h.query<Report>(reportQuery)).reverse?.red, after.reverse!.red);
    const canWrite = async (db: 'src' | 'tgt') =>
      (await stack.pg.query(db, `SELECT has_table_privilege('app', 'public.back', 'INSERT') AS w`)).rows[0].w as boolean;
    assert.deepEqual([await canWrite('tgt'), await canWrite('src')], [true, false], 'the target unfrozen, the source still frozen');
    // Put the source's row back as the target has it: the next switch back is green.
    const tgtRow = (await stack.pg.query('tgt', 'SELECT status FROM public.back WHERE id = 7')).rows[0].status as string;
    await stack.pg.query('src', 'UPDATE public.back SET status = $1 WHERE id = 7', [tgtRow]);
    await h.executeUpdate(switchBackUpdate, { args: [{ approver: 'bob', digest }] });
    const r = await h.result();
    assert.equal(r.phase, 'completed', r.reason);
    assert.equal(r.reverse?.reason, 'switched back');
    assert.ok(r.reverse?.switchedBackAt);
    const { s: src, t: tgt, equal } = await same('back');
    assert.ok(equal, `source ${JSON.stringify(src)} target ${JSON.stringify(tgt)}`);
    assert.deepEqual([await canWrite('tgt'), await canWrite('src')], [false, true], 'authority is on the source');
    assert.deepEqual(await leftBehind(doc), { slots: [], publications: { src: [], tgt: [] } });
    // Each switch once: the forward one recorded where cutover.switch runs, the switch back where cutover.reverse.switch runs.
    for (const db of ['tgt', 'src'] as const) {
      const n = await stack.pg.query(db, `SELECT count(*)::int AS n FROM backfill.switches WHERE migration = 'reversed-back'`);
      assert.equal(n.rows[0].n, 1, `one switch recorded on ${db}`);
    }
    const audit = await stack.pg.query(
      'tgt',
      `SELECT action FROM backfill.audit WHERE migration = 'reversed-back' AND action IN ('switch', 'approve-switch-back', 'approval-void', 'switch-back', 'switch-back-refused') ORDER BY id`,
    );
    const actions = audit.rows.map((x) => String(x.action));
    assert.deepEqual(
      actions.filter((a) => a !== 'switch-back-refused'),
      ['switch', 'approve-switch-back', 'approval-void', 'approve-switch-back', 'switch-back'],
    );
    assert.equal(actions.filter((a) => a === 'switch-back-refused').length, 1, 'the refused attempt is audited');
    // The report: how the way back ended, and its final window.
    const end: Report = await h.query(reportQuery);
    assert.equal(end.reverse?.switchedBackAt, r.reverse?.switchedBackAt);
    // Its audit shows the switch back's own entries at once (the target's freeze, the switch back).
    const trail = (end.audit?.entries ?? []).map((e) => e.action);
    assert.deepEqual(trail.slice(trail.lastIndexOf('approve-switch-back')), ['approve-switch-back', 'freeze', 'switch-back']);
    assert.ok((end.reverse?.window?.keys ?? 0) > 0 && end.reverse?.window?.proof, JSON.stringify(end.reverse));
    const ledger = await ledgerReport('reversed-back');
    assert.equal(ledger.phase, 'completed');
    assert.deepEqual([ledger.reverse?.digest, ledger.reverse?.red, ledger.reverse?.switchedBackAt !== undefined], [digest, undefined, true]);
    const page = renderMarkdown(ledger);
    assert.match(page, /Switched back at .*: authority is on the source again\./);
    assert.match(page, new RegExp(`Digest of the way back: \`${digest}\``));
    await replayAndMaybeRecord(h, 'reverse-switched-back-reported');
  },
);

test(
  'reverse: an identity key GENERATED ALWAYS on both sides: ids the source made go forward, ids the target makes go back; after the switch back the source makes new ids past them; a VACUUM FULL on the target is proven by the totals of every row; equal by md5',
  { timeout: 240_000 },
  async () => {
    const doc = reverseSpec('reversed-ident', 'ident');
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
    const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
    assert.equal(p.phase, 'awaiting_approval', p.detail);
    // The source makes ids while the stream follows it: they reach the target as the source made them.
    await stack.pg.query('src', `INSERT INTO public.ident (v) SELECT 'before the switch ' || g FROM generate_series(1, 10) g`);
    await stack.pg.query('src', `UPDATE public.ident SET v = v || ' changed' WHERE id % 100 = 0`);
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
    assert.equal((await waitForPhase(h, ['switched', 'completed', 'failed'])).phase, 'switched');
    // The target makes ids now (its sequence was advanced past the copied keys at the switch).
    const made = await stack.pg.query('tgt', `INSERT INTO public.ident (v) SELECT 'on the target ' || g FROM generate_series(1, 30) g RETURNING id, ref`);
    const targetIds = made.rows.map((r) => Number(r.id));
    assert.ok(Math.min(...targetIds) > 2010, `the target's new ids start past the copied ones: ${Math.min(...targetIds)}`);
    const refs = made.rows.map((r) => Number(r.ref));
    assert.ok(Math.min(...refs) > 2010, `the sequence no column owns was advanced too: ${Math.min(...refs)}`);
    await stack.pg.query('tgt', `UPDATE public.ident SET v = 'updated on the target' WHERE id IN (5, ${targetIds[0]})`);
    await stack.pg.query('tgt', `DELETE FROM public.ident WHERE id IN (6, ${targetIds[1]})`);
    await until('the source follows the target', async () => (await same('ident')).equal, 60_000);
    // The target's storage rewritten (VACUUM FULL): the rows proof cannot vouch for it, so the switch
    // back compares every row's totals on both sides instead.
    await stack.pg.query('tgt', 'VACUUM FULL public.ident');
    const digest = (await h.query<Progress>(progressQuery)).reverse!.digest!;
    await h.executeUpdate(switchBackUpdate, { args: [{ approver: 'bob', digest }] });
    const r = await h.result();
    assert.equal(r.reverse?.reason, 'switched back', r.reason);
    const { s: src, t: tgt, equal } = await same('ident');
    assert.ok(equal, `source ${JSON.stringify(src)} target ${JSON.stringify(tgt)}`);
    // The source's sequence was advanced past the target's ids at the switch back: no collision.
    const next = await stack.pg.query('src', `INSERT INTO public.ident (v) VALUES ('after the switch back') RETURNING id, ref`);
    assert.ok(Number(next.rows[0].id) > Math.max(...targetIds), `the source's next id ${next.rows[0].id} is past the target's ${Math.max(...targetIds)}`);
    assert.ok(Number(next.rows[0].ref) > Math.max(...refs), `the source's next ref ${next.rows[0].ref} is past the target's ${Math.max(...refs)}`);
    assert.match(
      (await h.query<Report>(reportQuery)).reverse?.window?.proof ?? '',
      /^storage rewritten since the switch \(VACUUM FULL, CLUSTER, a type change\): public\.ident; so every table's totals were compared on both sides instead, and agree/,
    );
    assert.deepEqual(await leftBehind(doc), { slots: [], publications: { src: [], tgt: [] } });
  },
);

test(
  "reverse: a value written on the target that the source's column cannot hold (text there, varchar(5) here) is cut by the way back, and the switch back is red, never green",
  { timeout: 240_000 },
  async () => {
    const doc = reverseSpec('reversed-narrowed', 'narrowed');
    const h = await toSwitched(doc);
    await stack.pg.query('tgt', `UPDATE public.narrowed SET code = 'toolongvalue' WHERE id = 7`);
    await until(
      'the way back applied it, cut',
      async () => (await stack.pg.query('src', 'SELECT code FROM public.narrowed WHERE id = 7')).rows[0].code === 'toolo',
      60_000,
    );
    const digest = (await h.query<Progress>(progressQuery)).reverse!.digest!;
    await h.executeUpdate(switchBackUpdate, { args: [{ approver: 'bob', digest }] });
    await until('the switch back turns red', async () => (await h.query<Progress>(progressQuery)).reverse?.red !== undefined, 60_000);
    const red = (await h.query<Progress>(progressQuery)).reverse!.red!;
    assert.match(red, /^the way back's final window differs: 1 of 1 changed key\(s\) in public\.narrowed/);
    assert.equal((await h.query<Progress>(progressQuery)).phase, 'switched');
    await h.executeUpdate(finishUpdate, { args: [{ actor: 'carol', reason: 'the source cannot hold it' }] });
    assert.equal((await h.result()).phase, 'completed');
    assert.deepEqual(await leftBehind(doc), { slots: [], publications: { src: [], tgt: [] } });
  },
);

test(
  'reverse: checkpoints of the way back prove the source whole against the target at a snapshot; one that does not hold says why and the last good one stays; the switch back compares only what came after',
  { timeout: 240_000 },
  async () => {
    const base = reverseSpec('reversed-checkpoint', 'checkpointed');
    const doc = { ...base, cutover: { ...base.cutover, reverse: { ...base.cutover.reverse!, checkpoint: '1 second' } } } as Doc;
    const h = await toSwitched(doc);
    await stack.pg.query('tgt', `UPDATE public.checkpointed SET status = 'before the checkpoint' WHERE id <= 300`);
    const reverse = async () => (await h.query<Report>(reportQuery)).reverse!;
    await until('a checkpoint holds after the writes', async () => (await reverse()).stream!.rows >= 300 && (await reverse()).checkpoint !== undefined, 60_000);
    const held = (await reverse()).checkpoint!;
    assert.match(held.point, /^[0-9A-F]+\/[0-9A-F]+$/);
    // A write on the source that no stream carried: the next checkpoint does not hold, and says so.
    await stack.pg.query('src', `UPDATE public.checkpointed SET status = 'meddled' WHERE id = 9`);
    await until('a checkpoint does not hold', async () => (await reverse()).checkpointRed !== undefined, 60_000);
    const r1 = await reverse();
    assert.match(r1.checkpointRed!, /the source differs from the target: public\.checkpointed \(count|checksum/);
    assert.equal(r1.checkpoint?.point, held.point, 'the last checkpoint that held stays');
    // Put right, then a few writes on the target.
    await stack.pg.query('src', `UPDATE public.checkpointed SET status = 'before the checkpoint' WHERE id = 9`);
    await stack.pg.query('tgt', `UPDATE public.checkpointed SET status = 'after the checkpoint' WHERE id IN (1, 2, 3, 4, 5)`);
    await until('the source follows the target', async () => (await same('checkpointed')).equal, 60_000);
    const digest = (await h.query<Progress>(progressQuery)).reverse!.digest!;
    await h.executeUpdate(switchBackUpdate, { args: [{ approver: 'bob', digest }] });
    const r = await h.result();
    assert.equal(r.reverse?.reason, 'switched back', r.reason);
    const end = await reverse();
    assert.ok((end.window?.keys ?? 300) <= 5, `the switch back compared the keys since a checkpoint, not the 300 before it: ${JSON.stringify(end.window)}`);
    assert.ok((await same('checkpointed')).equal, 'the source equals the target');
    assert.match(renderMarkdown(await h.query<Report>(reportQuery)), /Checkpoint: at .* the source was proven equal to the target as it stood at /);
    assert.deepEqual(await leftBehind(doc), { slots: [], publications: { src: [], tgt: [] } });
  },
);

test(
  'reverse: a TRUNCATE on the target in phase switched stops the way back with a sentence saying so: failed, the source untouched, nothing left',
  { timeout: 240_000 },
  async () => {
    const doc = reverseSpec('reversed-truncated', 'truncated');
    const h = await toSwitched(doc);
    await stack.pg.query('tgt', 'TRUNCATE public.truncated');
    await assert.rejects(h.result(), (e: unknown) => {
      const cause = (e as { cause?: { message?: string } }).cause;
      assert.match(
        cause?.message ?? '',
        /^the way back stopped: authority stays on the target and the source no longer follows it \(to go back, migrate the target to the source anew\)\. It reads the target, so "the source" below is the target: applying captured changes: a TRUNCATE of public\.truncated on the source cannot be applied/,
      );
      return true;
    });
    assert.equal((await h.query<Progress>(progressQuery)).phase, 'failed');
    const rows = (await stack.pg.query('src', 'SELECT count(*)::int AS n FROM public.truncated')).rows[0].n;
    assert.equal(rows, ROWS, 'the source keeps its rows: nothing of the TRUNCATE was applied');
    assert.deepEqual(await leftBehind(doc), { slots: [], publications: { src: [], tgt: [] } });
  },
);

test('reverse: cutover.reverse.keep finishes the way back by itself', { timeout: 240_000 }, async () => {
  const doc = reverseSpec('reversed-kept', 'kept', '4 seconds');
  const h = await switchWithWriter(doc, 'kept');
  await stack.pg.query('tgt', `UPDATE public.kept SET status = 'kept' WHERE id <= 10`);
  const r = await endingOf(h);
  assert.equal(r.phase, 'completed', r.reason);
  assert.equal(r.reverse?.finishedBy, 'keep');
  assert.match(r.reverse?.reason ?? '', /cutover\.reverse\.keep \(4 seconds\) elapsed/);
  assert.ok((await same('kept')).equal, 'the update on the target went back before the way back finished');
  assert.deepEqual(await leftBehind(doc), { slots: [], publications: { src: [], tgt: [] } });
});

test(
  'reverse: an abort, or a cancellation through Temporal, in phase switched is a finish: completed, authority on the target, nothing left',
  { timeout: 240_000 },
  async () => {
    for (const [table, end] of [
      ['aborted', 'abort'],
      ['cancelled', 'cancellation'],
    ] as const) {
      const doc = reverseSpec(`reversed-${table}`, table);
      const h = await switchWithWriter(doc, table);
      await stack.pg.query('tgt', `DELETE FROM public.${table} WHERE id <= 5`);
      await until('the delete goes back to the source', async () => (await same(table)).equal, 60_000);
      if (end === 'abort') await h.signal(abortSignal, { reason: 'enough' });
      else await h.cancel();
      const r = await h.result();
      assert.equal(r.phase, 'completed', r.reason);
      assert.equal(r.reverse?.finishedBy, end);
      assert.equal((await h.describe()).status.name, 'COMPLETED');
      assert.deepEqual(await leftBehind(doc), { slots: [], publications: { src: [], tgt: [] } });
      // The forward unfreeze never ran: the application still cannot write the source.
      const grants = await stack.pg.query('src', `SELECT has_table_privilege('app', 'public.${table}', 'INSERT') AS w`);
      assert.equal(grants.rows[0].w, false);
    }
  },
);

test(
  'reverse: a way back that cannot open at the switch (the target table lost its replica identity at the gate): nothing switched, the source writable again, nothing left',
  { timeout: 240_000 },
  async () => {
    const doc = reverseSpec('reversed-refused', 'refused');
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
    const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
    assert.equal(p.phase, 'awaiting_approval', p.detail);
    await stack.pg.query('tgt', 'ALTER TABLE public.refused REPLICA IDENTITY NOTHING');
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
    await assert.rejects(h.result(), (e: unknown) => {
      const cause = (e as { cause?: { type?: string; message?: string } }).cause;
      assert.equal(cause?.type, 'ReverseRefused');
      assert.match(cause?.message ?? '', /public\.refused has no primary key and no replica identity/);
      return true;
    });
    const grants = await stack.pg.query('src', `SELECT has_table_privilege('app', 'public.refused', 'INSERT') AS w`);
    assert.equal(grants.rows[0].w, true, 'cutover.unfreeze ran: the application writes the source again');
    // (The table of switches exists once any migration of this stack has switched.)
    const there = (await stack.pg.query('tgt', `SELECT to_regclass('backfill.switches') IS NOT NULL AS there`)).rows[0].there;
    const switched = there
      ? (await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM backfill.switches WHERE migration = 'reversed-refused'`)).rows[0].n
      : 0;
    assert.equal(switched, 0, 'nothing was switched');
    assert.deepEqual(await leftBehind(doc), { slots: [], publications: { src: [], tgt: [] } });
  },
);

test(
  'the switch fails (cutover.switch errors) after the freeze: it did not run, so the source takes writes again (cutover.unfreeze), the failure names the error; nothing left',
  { timeout: 240_000 },
  async () => {
    const { reverse: _, ...cutover } = reverseSpec('switch-fails', 'failing').cutover;
    const doc = {
      ...reverseSpec('switch-fails', 'failing'),
      cutover: { ...cutover, switch: { connection: 'tgt', sql: 'INSERT INTO public.no_such_table VALUES (1)' } },
    } as Doc;
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
    const p = await waitForPhase(h, ['awaiting_approval', 'needs_attention', 'failed']);
    assert.equal(p.phase, 'awaiting_approval', p.detail);
    await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest! }] });
    await assert.rejects(h.result(), (e: unknown) => {
      const cause = (e as { cause?: { message?: string } }).cause;
      assert.match(cause?.message ?? '', /relation "public\.no_such_table" does not exist/);
      return true;
    });
    const grants = await stack.pg.query('src', `SELECT has_table_privilege('app', 'public.failing', 'INSERT') AS w`);
    assert.equal(grants.rows[0].w, true, 'cutover.unfreeze ran: the application writes the source again');
    const actions = (await stack.pg.query('tgt', `SELECT action FROM backfill.audit WHERE migration = 'switch-fails' ORDER BY id`)).rows.map((r) =>
      String(r.action),
    );
    assert.deepEqual(
      actions.filter((a) => ['approve', 'freeze', 'unfreeze', 'switch'].includes(a)),
      ['approve', 'freeze', 'unfreeze'],
    );
    const there = (await stack.pg.query('tgt', `SELECT to_regclass('backfill.switches') IS NOT NULL AS there`)).rows[0].there;
    assert.equal(there, true, 'runSwitch made its table before it failed');
    const switched = (await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM backfill.switches WHERE migration = 'switch-fails'`)).rows[0].n;
    assert.equal(switched, 0, 'nothing was switched');
    assert.deepEqual(await leftBehind(reverseSpec('switch-fails', 'failing')), { slots: [], publications: { src: [], tgt: [] } });
  },
);

test(
  'reverse: a cancellation during the switch back, before it switched: the target unfrozen, completed with authority on the target, nothing left',
  { timeout: 240_000 },
  async () => {
    const doc = reverseSpec('reversed-held', 'held');
    const h = await switchWithWriter(doc, 'held');
    const p: Progress = await h.query(progressQuery);
    // The switch back waits on the frozen target for a transaction that holds its table.
    const gate = await tableGate(stack.pg, 'tgt', 'public.held');
    await h.executeUpdate(switchBackUpdate, { args: [{ approver: 'bob', digest: p.reverse!.digest! }] });
    // The gate's open transaction is a writer the switch back waits for, on the frozen target.
    await until(
      "the target's freeze recorded",
      async () =>
        Number(
          (await stack.pg.query('tgt', `SELECT count(*)::int AS n FROM backfill.audit WHERE migration = 'reversed-held' AND action = 'freeze'`)).rows[0].n,
        ) >= 2,
    );
    assert.equal((await h.query<Progress>(progressQuery)).phase, 'final_check');
    await h.cancel();
    await gate.open();
    const r = await h.result();
    assert.equal(r.phase, 'completed', r.reason);
    assert.equal(r.reverse?.finishedBy, 'cancellation');
    assert.equal(r.reverse?.switchedBackAt, undefined);
    const canWrite = async (db: 'src' | 'tgt') =>
      (await stack.pg.query(db, `SELECT has_table_privilege('app', 'public.held', 'INSERT') AS w`)).rows[0].w as boolean;
    assert.deepEqual([await canWrite('tgt'), await canWrite('src')], [true, false], 'the target unfrozen, authority on it');
    assert.deepEqual(await leftBehind(doc), { slots: [], publications: { src: [], tgt: [] } });
  },
);

test('reverse: planning refuses a slot of the way back that an earlier run left on the target', { timeout: 120_000 }, async () => {
  const doc = reverseSpec('reversed-leftover', 'leftover');
  const back = captureOf(reversedSpec(parsed(doc))!)!;
  await stack.pg.query('tgt', `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [back.slot]);
  try {
    const h = await stack.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: doc.name, args: [doc] });
    await assert.rejects(h.result(), (e: unknown) => {
      const why = String((e as { cause?: Error }).cause?.message);
      assert.match(why, new RegExp(`cutover\\.reverse .*the target holds a replication slot ${back.slot} from an earlier run`));
      return true;
    });
    const p: Progress = await h.query(progressQuery);
    assert.equal(p.phase, 'failed');
  } finally {
    await stack.pg.query('tgt', 'SELECT pg_drop_replication_slot($1)', [back.slot]);
  }
});

test('reverse: the spec refuses a way back without capture, a freeze or a switch', () => {
  const base = reverseSpec('reversed-spec', 'orders');
  const problems = (over: Record<string, unknown>) => {
    const r = checkSpec({ ...base, ...over });
    return r.ok ? [] : r.problems;
  };
  assert.deepEqual(problems({}), []);
  assert.ok(problems({ capture: undefined }).includes('cutover.reverse: needs capture: logical (the way back is a stream from the target)'));
  const { freeze: _f, unfreeze: _u, ...noFreeze } = base.cutover;
  assert.ok(problems({ cutover: noFreeze }).includes('cutover.reverse: needs cutover.freeze (the source takes no writes from the switch on)'));
  const { switch: _s, ...noSwitch } = base.cutover;
  assert.ok(problems({ cutover: noSwitch }).includes('cutover.reverse: needs cutover.switch (the switch the way back undoes)'));
  assert.ok(
    problems({ cutover: { ...base.cutover, reverse: { ...base.cutover.reverse, keep: '0 seconds' } } }).includes(
      'cutover.reverse.keep: must be at least 1 second',
    ),
  );
  // The way back swaps each table's sides and keeps the ledger where it was.
  const back = reversedSpec(parsed(base))!;
  assert.deepEqual([back.source, back.target, back.control, back.name], ['tgt', 'src', 'tgt', 'reversed-spec.reverse']);
  assert.deepEqual(back.cutover.switch, { connection: 'src', sql: 'GRANT INSERT, UPDATE, DELETE ON public.orders TO app' });
});

test('reverse: the report kept in the ledger reads the way back from the audit: switched, red, switched back, finished', () => {
  const e = (action: string, o: { actor?: string; digest?: string; note?: string } = {}) => ({
    at: '2026-12-08T01:00:00.000Z',
    action,
    ...o,
  });
  const opened = [e('approve'), e('open-way-back', { digest: 'd1', note: openedNote('0/1A2B') }), e('switch')];
  const switched = reverseFromAudit(opened)!;
  assert.deepEqual(
    [reversePhase(switched), switched.digest, switched.point, switched.red, switched.approval],
    ['switched', 'd1', '0/1A2B', undefined, undefined],
  );
  assert.equal(reverseFromAudit([e('approve'), e('switch')]), undefined, 'no way back opened');
  const red = reverseFromAudit([...opened, e('approve-switch-back', { actor: 'bob', digest: 'd1' }), e('approval-void', { note: 'rows differ' })])!;
  assert.deepEqual([reversePhase(red), red.red, red.approval], ['switched', 'rows differ', undefined]);
  const back = reverseFromAudit([
    ...opened,
    e('approve-switch-back', { actor: 'bob', digest: 'd1' }),
    e('approval-void', { note: 'rows differ' }),
    e('approve-switch-back', { actor: 'bob', digest: 'd1' }),
    e('switch-back'),
  ])!;
  assert.deepEqual([reversePhase(back), back.red, back.approval?.approver, back.switchedBackAt !== undefined], ['completed', undefined, 'bob', true]);
  const done = reverseFromAudit([...opened, e('finish', { actor: 'carol', note: 'the target is fine' })])!;
  assert.deepEqual([reversePhase(done), done.finished], ['completed', { by: 'carol', reason: 'the target is fine' }]);
  assert.match(reverseLines(done).join('\n'), /^Finished \(the target is fine, by carol\): authority stays on the target\.\n/);
});

// Change capture through logical replication, as activities: the preflight that refuses before
// anything is created, the publication, the holder of an epoch's exported snapshot, the apply of
// the slot's stream to the target, the final window's comparison by key, and the cleanup.
// Connection strings, snapshot names and slot credentials stay here and in the ledger: the
// workflow sees LSNs, counts and sentences.
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CancelledFailure, type ApplicationFailure } from '@temporalio/common';
import { failure } from '../domain/failures';
import { Context, log } from '@temporalio/activity';
import { captureOf, controlAlias, type MigrationSpec } from '../spec/schema';
import { connectionStringFor } from '../spec/aliases';
import { poolFor } from '../db/pools';
import { guarded } from '../db/errors';
import { EPOCH, RECORD_EPOCH, RELEASE_EPOCH, RELEASE_EPOCHS } from '../db/ledger';
import {
  CHANGED_KEYS_SQL,
  END_EPOCH_HOLDERS_SQL,
  EPOCH_SLOTS_SQL,
  DROP_SLOT_SQL,
  FORGET_KEYS_SQL,
  PARTITIONS_SQL,
  PUBLICATION_SQL,
  PUBLICATION_TABLES_SQL,
  SLOT_SQL,
  TERMINATE_SLOT_USER_SQL,
  createPublicationSql,
  dropPublicationSql,
  setPublicationTablesSql,
} from './sql';
import { hashedColumns } from '../db/sql';
import { applyChanges } from './apply';
import { emitStop } from './apply-source';
import { type CaptureTable } from './tables';
import { type RelationScope } from './apply-types';
import { createSlot } from './replication';
import { bindingFor, type Binding } from '../plan/binding';

import { heartbeat, WORKER_ID } from '../activities/heartbeat';
import { diffRows, keyedBoth } from '../range/locate';

type Spec = MigrationSpec;

/** Creates the migration's publication (or sets its tables), unless the user manages it. */
export async function ensurePublication(spec: Spec, bindings: Binding[]): Promise<void> {
  const cap = captureOf(spec);
  if (!cap || cap.managed.publication) return;
  const src = poolFor(spec.source, 'write');
  const names = bindings.map((b) => b.source);
  const pub = (await src.query(PUBLICATION_SQL, [cap.publication])).rows[0];
  if (!pub) await src.query(createPublicationSql(cap.publication, names));
  else for (const sql of setPublicationTablesSql(cap.publication, names)) await src.query(sql);
}

// ---- snapshot epochs ----

export interface EpochInput {
  migration: string;
  spec: Spec;
  epoch: number;
}

/**
 * Holds an epoch's exported snapshot until cancelled: the first creates the migration's slot with
 * it (the slot then streams exactly what commits after the snapshot); a later one, or one whose
 * slot already exists, a temporary slot, which gives an exact new point. The snapshot lives while
 * this session stays open and idle, so nothing else runs on it.
 */
export async function holdSnapshot(input: EpochInput): Promise<void> {
  const { spec, migration, epoch } = input;
  const cap = captureOf(spec)!;
  const ctl = poolFor(controlAlias(spec), 'write');
  const held = await guarded(`opening snapshot epoch ${epoch}`, async () => {
    const exists = ((await poolFor(spec.source, 'read').query(SLOT_SQL, [cap.slot])).rowCount ?? 0) > 0;
    const name = exists ? `${epochSlotPrefix(cap.slot)}${epoch}_${Math.random().toString(36).slice(2, 8)}` : cap.slot;
    const h = await createSlot(connectionStringFor(spec.source), { slot: name, temporary: exists });
    await ctl.query(RECORD_EPOCH, [migration, epoch, name, exists, h.snapshot, h.consistentPoint, WORKER_ID]);
    return h;
  });
  heartbeat({ epoch, point: held.consistentPoint });
  const lost = new Promise<never>((_, reject) => {
    held.client.once('error', () => reject(lostHolder(epoch)));
    held.client.once('end', () => reject(lostHolder(epoch)));
  });
  try {
    await Promise.race([Context.current().cancelled, lost]);
  } catch (e) {
    if (e instanceof CancelledFailure) return;
    // Ended by the cleanup (the migration let go of this epoch): not a failure. A ledger that
    // cannot be read says nothing: the holder's loss is the failure then.
    const row = (await ctl.query(EPOCH, [migration, epoch]).catch(() => undefined))?.rows[0] as { released?: string } | undefined;
    if (row?.released === 't') return;
    throw e;
  } finally {
    held.client.removeAllListeners('end');
    // Its session is over either way (a failure to close it says no more than its loss).
    await held.client.end().catch(() => undefined);
    // An epoch left unreleased is released with all the others when the capture is dropped; said.
    await ctl
      .query(RELEASE_EPOCH, [migration, epoch])
      .catch((e: unknown) =>
        log.warn('could not mark the snapshot epoch released in the ledger', { migration, epoch, error: String((e as Error)?.message ?? e) }),
      );
  }
}

/**
 * Temporary slots of a migration's epochs are named from its slot: `<slot, cut>_<hash of it>_e<epoch>_<random>`
 * (63 bytes at most; the hash keeps two long slot names with one beginning apart).
 */
export function epochSlotPrefix(slot: string): string {
  return `${slot.slice(0, 40)}_${createHash('md5').update(slot).digest('hex').slice(0, 8)}_e`;
}

function lostHolder(epoch: number): ApplicationFailure {
  return failure('SnapshotGone', `the session holding snapshot epoch ${epoch} ended`);
}

/** Waits until the epoch's holder recorded its snapshot; returns its point and whether its slot was created at it. */
export async function awaitEpoch(input: EpochInput & { timeoutMs: number }): Promise<{ point: string; slotCreated: boolean }> {
  const ctl = poolFor(controlAlias(input.spec), 'write');
  const until = Date.now() + input.timeoutMs;
  for (;;) {
    const row = (await ctl.query(EPOCH, [input.migration, input.epoch])).rows[0] as { point: string; temporary: string; released: string } | undefined;
    if (row && row.released !== 't') return { point: row.point, slotCreated: row.temporary !== 't' };
    if (row) throw failure('SnapshotGone', `snapshot epoch ${input.epoch} was released before it was used`);
    if (Date.now() > until) throw failure('SnapshotTimeout', `snapshot epoch ${input.epoch} was not opened within ${Math.round(input.timeoutMs / 1000)} s`);
    heartbeat({ waiting: input.epoch });
    await sleep(100);
  }
}

// ---- the stream ----

export interface ApplyInput {
  migration: string;
  spec: Spec;
  /** stop before the first transaction that commits at or past this LSN */
  untilLsn?: string;
  maxMs: number;
  /** go on past the fence until `maxMs` is spent or stopStream's mark arrives (the gate's calls) */
  follow?: boolean;
}

export interface ApplyOutcome {
  transactions: number;
  rows: number;
  /** rows per table index */
  byTable: number[];
  skipped: number;
  /** updates and deletes that found no target row, per table index */
  missed: number[];
  appliedLsn: string | null;
  reached: boolean;
  lagBytes: string;
  lagSeconds: number;
  ms: number;
}

async function captureTables(spec: Spec): Promise<CaptureTable[]> {
  const out: CaptureTable[] = [];
  for (const [i, t] of spec.tables.entries()) {
    const b = await bindingFor(spec, t, i);
    out.push({
      index: i,
      sourceSchema: b.sourceRel.schema,
      sourceName: b.sourceRel.name,
      target: b.target,
      columns: b.columns.map((c, k) => ({ source: c, target: c, type: b.targetTypes[k] })),
      key: b.key,
      // The plan the stream's Relation messages are held to (generated columns are not published).
      sourceColumns: b.sourceColumns.filter((c) => !c.generated).map((c) => ({ name: c.name, typeOid: c.typeOid })),
    });
  }
  return out;
}

/**
 * From the source's catalog, as this call begins: the partitions of the spec's tables (their
 * changes must never arrive under their own names), and, for a publication the user manages, the
 * relations it publishes that are outside the spec (the only changes the stream may leave out).
 */
async function relationScope(spec: Spec, tables: CaptureTable[]): Promise<RelationScope> {
  const cap = captureOf(spec)!;
  const src = poolFor(spec.source, 'read');
  const bindings = await Promise.all(spec.tables.map((t, i) => bindingFor(spec, t, i)));
  const byOid = new Map(bindings.map((b, i) => [b.sourceRel.oid, tables[i].index]));
  const parts = (await src.query(PARTITIONS_SQL, [[...byOid.keys()]])).rows as { of: string; schema: string; name: string }[];
  const partitions = parts.map((p) => ({ schema: p.schema, name: p.name, table: byOid.get(p.of)! }));
  const outside: RelationScope['outside'] = [];
  if (cap.managed.publication) {
    const inSpec = new Set([...tables.map((t) => `${t.sourceSchema}\0${t.sourceName}`), ...partitions.map((p) => `${p.schema}\0${p.name}`)]);
    for (const r of (await src.query(PUBLICATION_TABLES_SQL, [cap.publication])).rows as { schema: string; name: string }[])
      if (!inSpec.has(`${r.schema}\0${r.name}`)) outside.push({ schema: r.schema, name: r.name });
  }
  return { publication: cap.publication, managed: cap.managed.publication, partitions, outside };
}

/** Applies the slot's stream to the target: to its fence (what was committed when it started), to `untilLsn`, or for `maxMs`. */
export async function applyCapture(input: ApplyInput): Promise<ApplyOutcome> {
  const { spec } = input;
  const cap = captureOf(spec)!;
  const tables = await captureTables(spec);
  return guarded('applying captured changes', async () => {
    const relations = await relationScope(spec, tables);
    const r = await applyChanges({
      relations,
      migration: input.migration,
      slot: cap.slot,
      publication: cap.publication,
      source: connectionStringFor(spec.source),
      target: poolFor(spec.target, 'write'),
      tables,
      untilLsn: input.untilLsn,
      maxMs: input.maxMs,
      follow: input.follow,
      onProgress: (p) => heartbeat({ progress: p }),
      signal: cancellationSignal(),
    });
    const byTable = tables.map((t) => {
      const x = r.rows[t.index];
      return x ? x.inserted + x.updated + x.deleted : 0;
    });
    return {
      transactions: r.transactions,
      rows: byTable.reduce((a, n) => a + n, 0),
      byTable,
      skipped: r.skippedTransactions,
      missed: tables.map((t) => r.unmatched[t.index] ?? 0),
      appliedLsn: r.applied.endLsn === '0/0' ? null : r.applied.endLsn,
      reached: r.reached,
      lagBytes: r.lagBytes,
      lagSeconds: r.lagSeconds,
      ms: r.ms,
    };
  });
}

/** Stops the call of the migration's slot that follows the stream (the gate's), at a mark in the source's WAL. */
export async function stopStream(input: { spec: Spec }): Promise<void> {
  const cap = captureOf(input.spec)!;
  await guarded('marking where the stream stops', () => emitStop(connectionStringFor(input.spec.source), cap.slot));
}

function cancellationSignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

// ---- the final window ----

/** The window's rows on one side: how many of its keys have a row, and the sum of their row hashes. */
export interface WindowSide {
  rows: number;
  checksum: string;
}

export interface WindowTable {
  table: string;
  keys: number;
  differing: number;
  source: WindowSide;
  target: WindowSide;
  /** up to 20 differing keys, as text */
  sample: string[][];
}

/**
 * Every key applied since `since` (the last green checkpoint), read by key on both sides and
 * compared row for row: a change the window missed (a delete included) shows as a difference.
 */
export async function compareWindow(input: { migration: string; spec: Spec; since: string }): Promise<WindowTable[]> {
  const { spec } = input;
  const out: WindowTable[] = [];
  for (const [i, t] of spec.tables.entries()) {
    const b = await bindingFor(spec, t, i);
    const res = await guarded(`comparing the final window of ${b.sourceName}`, async () => {
      const keys = (await poolFor(spec.target, 'write').query(CHANGED_KEYS_SQL, [input.migration, i, input.since])).rows.map(
        (x) => JSON.parse(String(x.key)) as string[],
      );
      const all = { lo: null, hi: null };
      const [s, d] = await keyedBoth(b, spec.source, spec.target, all, keys);
      const diffs = diffRows(hashedColumns(b), s, d);
      const totals = (f: typeof s): WindowSide => ({ rows: f.rows.size, checksum: [...f.rows.values()].reduce((a, r) => a + BigInt(r.h), 0n).toString() });
      return {
        table: b.sourceName,
        keys: keys.length,
        differing: diffs.length,
        source: totals(s),
        target: totals(d),
        sample: diffs.slice(0, 20).map((x) => x.key),
      };
    });
    out.push(res);
    heartbeat({ table: i });
  }
  return out;
}

// ---- the slot's state, and cleanup ----

export interface SlotState {
  slot: string;
  exists: boolean;
  active: boolean;
  /** WAL the slot holds back on the source, in bytes */
  retainedBytes: string;
  walStatus: string | null;
}

export async function slotState(input: { spec: Spec }): Promise<SlotState> {
  const cap = captureOf(input.spec)!;
  return guarded('reading the replication slot', async () => {
    const row = (await poolFor(input.spec.source, 'read').query(SLOT_SQL, [cap.slot])).rows[0] as
      { active_pid: string | null; retained_bytes: string | null; wal_status: string | null } | undefined;
    return { slot: cap.slot, exists: !!row, active: !!row?.active_pid, retainedBytes: row?.retained_bytes ?? '0', walStatus: row?.wal_status ?? null };
  });
}

/**
 * Drops the slot and the publication the migration created (never ones the user named), and the
 * keys kept for the final window. Idempotent: what is already gone is fine.
 */
export async function dropCapture(input: { migration: string; spec: Spec }): Promise<{ slot: boolean; publication: boolean }> {
  const { spec } = input;
  const cap = captureOf(spec)!;
  return guarded('dropping the replication slot and publication', async () => {
    const src = poolFor(spec.source, 'write');
    let slot = false;
    if (!cap.managed.slot) {
      for (let tries = 0; ; tries++) {
        const row = (await src.query(SLOT_SQL, [cap.slot])).rows[0] as { active_pid: string | null } | undefined;
        if (!row) break;
        // A stream of ours that a dead worker left behind holds it: end that session first.
        if (row.active_pid) {
          await src.query(TERMINATE_SLOT_USER_SQL, [cap.slot]);
          await sleep(200);
          if (tries < 50) continue;
        }
        try {
          await src.query(DROP_SLOT_SQL, [cap.slot]);
          slot = true;
          break;
        } catch (e) {
          // 55006: still active (its session is ending); 42704: gone meanwhile.
          const code = (e as { code?: string }).code;
          if (code === '42704') break;
          if (code !== '55006' || tries >= 50) throw e;
          await sleep(200);
        }
      }
    }
    // The temporary slots of epochs and checkpoints: their sessions ended, so nothing lingers (the
    // epochs marked released first, so their holders end quietly).
    await poolFor(controlAlias(spec), 'write').query(RELEASE_EPOCHS, [input.migration]);
    const epochSlots = `${epochSlotPrefix(cap.slot).replace(/_/g, '\\_')}%`;
    await src.query(END_EPOCH_HOLDERS_SQL, [epochSlots]);
    for (let tries = 0; tries < 50 && (await src.query(EPOCH_SLOTS_SQL, [epochSlots])).rows[0].n > 0; tries++) await sleep(100);
    let publication = false;
    if (!cap.managed.publication) {
      publication = (await src.query(PUBLICATION_SQL, [cap.publication])).rowCount! > 0;
      await src.query(dropPublicationSql(cap.publication));
    }
    // The keys the stream logged on the target are only the final window's: left behind, they are
    // harmless, but said.
    await poolFor(spec.target, 'write')
      .query(FORGET_KEYS_SQL, [input.migration])
      .catch((e: unknown) =>
        log.warn("could not delete the captured keys from the target's ledger", { migration: input.migration, error: String((e as Error)?.message ?? e) }),
      );
    return { slot, publication };
  });
}

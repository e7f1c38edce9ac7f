// The final window's proof from the rows themselves, on the frozen source and the target at the
// fence. PostgreSQL writes every insert and update as a new row version stamped with its
// transaction's id (xmin), so the rows written since the checkpoint are found by that stamp on each
// side, whatever carried them (the stream, a write it never carried, anyone writing the target):
// - every key with a row version written since the checkpoint, on either side, is compared by key
//   (row hashes);
// - every other row is the version the checkpoint proved equal on both sides, or is gone: the rows
//   of each side are counted and their key hashes summed, so a row deleted on one side only shows.
// One scan per side without row hashes, instead of measuring every range; it needs the transaction
// ids read before the checkpoint's snapshot (CaptureBaseline.xmin), and heap tables on both sides.
import type { MigrationSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import { hashedColumns, tableOf, type Side } from '../db/sql';
import { bindingFor, type Binding } from '../plan/binding';
import { diffRows, keyedBoth } from '../range/locate';
import { heartbeat } from '../activities/heartbeat';
import type { XminBaseline } from './baseline';
import { DELIVERED_SINCE, HEAP_ONLY_SQL, XMIN_NOW_SQL, rowVersionsSql } from './sql';

export async function xminNow(spec: MigrationSpec): Promise<XminBaseline> {
  const [s, t] = await Promise.all([
    poolFor(spec.source, 'read').query<{ xmin: string }>(XMIN_NOW_SQL),
    poolFor(spec.target, 'write').query<{ xmin: string }>(XMIN_NOW_SQL),
  ]);
  return { source: s.rows[0].xmin, target: t.rows[0].xmin };
}

/** How the verdicts name the sides and the window's start: the forward window, or the way back's (its spec's source is the target). */
const FORWARD_WORDS = { source: 'the source', target: 'the target', since: 'the checkpoint' };
const BACK_WORDS = { source: 'the target', target: 'the source', since: 'the switch' };

/** Row versions written since the checkpoint, per side and table, beyond which the range-by-range measure is cheaper. */
const MOST_FRESH_KEYS = 200_000;

export type RowVersionsVerdict =
  /** every row accounted for */
  | { kind: 'proven'; detail: string }
  /** the rows say the sides differ, or are too many to compare by key: every range is measured */
  | { kind: 'differs'; detail: string }
  /** this proof cannot be made here (no stamps to read) */
  | { kind: 'unusable'; detail: string };

interface SideScan {
  n: string;
  keysum: string;
  fresh: number;
  keys: string[][];
}

/** SQLSTATEs of a result too large to build (out of memory, a value past 1 GB). */
const TOO_LARGE = new Set(['53200', '54000']);

/** One side's scan; undefined when its keys are too many to hold (a mass write the stream never carried). */
async function scan(b: Binding, spec: MigrationSpec, side: Side, xmin: string): Promise<SideScan | undefined> {
  const pool = side === 'source' ? poolFor(spec.source, 'read') : poolFor(spec.target, 'write');
  try {
    const r = (await pool.query<{ n: string; keysum: string; fresh: number; keys: string }>(rowVersionsSql(b, side), [xmin])).rows[0];
    return { n: r.n, keysum: r.keysum, fresh: r.fresh, keys: r.fresh > MOST_FRESH_KEYS ? [] : (JSON.parse(r.keys) as string[][]) };
  } catch (e) {
    if (TOO_LARGE.has(String((e as { code?: unknown }).code)) || e instanceof RangeError) return undefined;
    throw e;
  }
}

async function heapOnly(b: Binding, spec: MigrationSpec): Promise<boolean> {
  const [s, t] = await Promise.all([
    poolFor(spec.source, 'read').query<{ heap: boolean }>(HEAP_ONLY_SQL, [tableOf(b, 'source')]),
    poolFor(spec.target, 'write').query<{ heap: boolean }>(HEAP_ONLY_SQL, [tableOf(b, 'target')]),
  ]);
  return Boolean(s.rows[0]?.heap) && Boolean(t.rows[0]?.heap);
}

/**
 * Every table of the spec, on the frozen source and the target at the fence; `since` is the
 * checkpoint's baseline position, from which the stream's deliveries are counted.
 */
export async function rowVersions(input: {
  migration: string;
  spec: MigrationSpec;
  xmin: XminBaseline;
  since: string;
  /** the way back: its spec's source is the target (the words say so) */
  back?: boolean;
}): Promise<RowVersionsVerdict> {
  const { spec, xmin } = input;
  const w = input.back ? BACK_WORDS : FORWARD_WORDS;
  // A window the stream alone made too large to compare by key is not scanned for it.
  const delivered = await poolFor(spec.target, 'write').query<{ table_index: number; delivered: string }>(DELIVERED_SINCE, [
    input.migration,
    input.since,
    spec.tables.map((_, i) => i),
  ]);
  const most = delivered.rows.find((r) => BigInt(r.delivered) > BigInt(MOST_FRESH_KEYS));
  if (most) return { kind: 'differs', detail: `the stream delivered ${most.delivered} change(s) to one table since ${w.since}, too many to compare by key` };
  const parts: string[] = [];
  for (const [i, t] of spec.tables.entries()) {
    const b = await bindingFor(spec, t, i);
    const name = spec.tables.length > 1 ? `${b.sourceName}: ` : '';
    if (!(await heapOnly(b, spec)))
      return { kind: 'unusable', detail: `${b.sourceName} or ${b.targetName} keeps rows outside the heap (a foreign table, another access method)` };
    const [s, d] = await Promise.all([scan(b, spec, 'source', xmin.source), scan(b, spec, 'target', xmin.target)]);
    if (!s || !d) return { kind: 'differs', detail: `${name}too many row versions written since ${w.since} to hold their keys` };
    heartbeat({ table: i, fresh: s.fresh + d.fresh });
    if (s.fresh > MOST_FRESH_KEYS || d.fresh > MOST_FRESH_KEYS)
      return {
        kind: 'differs',
        detail: `${name}${s.fresh} row version(s) on ${w.source} and ${d.fresh} on ${w.target} written since ${w.since}, too many to compare by key`,
      };
    const keys = [...new Map([...s.keys, ...d.keys].map((k) => [JSON.stringify(k), k])).values()];
    const all = { lo: null, hi: null };
    const [sr, tr] = await keyedBoth(b, spec.source, spec.target, all, keys);
    const diffs = diffRows(hashedColumns(b), sr, tr);
    if (diffs.length)
      return {
        kind: 'differs',
        detail: `${name}${diffs.length} of the ${keys.length} key(s) written on either side since ${w.since} differ, e.g. (${diffs[0].key.join(', ')})`,
      };
    if (s.n !== d.n || s.keysum !== d.keysum)
      return { kind: 'differs', detail: `${name}${w.source} holds ${s.n} row(s), ${w.target} ${d.n}${s.n === d.n ? ', with different keys' : ''}` };
    parts.push(
      `${name}${s.fresh} row version(s) on ${w.source} and ${d.fresh} on ${w.target} written since ${w.since}, equal by key; ${s.n} row(s) on each side with the same keys`,
    );
  }
  return { kind: 'proven', detail: `the rows account for every write since ${w.since} (${parts.join('; ')})` };
}

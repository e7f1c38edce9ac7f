// Locating the exact keys of a mismatched range, inside the databases. Both sides sum their row
// hashes per key bucket (the low bits of a hash of the key, so a key falls in the same bucket on
// both sides); only the buckets that disagree are split again, with more bits. When the suspect
// buckets hold few rows, their keys and row hashes (and per-column hashes, to name the columns that
// differ) travel to the worker and are compared there. Counts are exact; the ledger keeps every key.
import { setting } from '../settings';
import { controlAlias } from '../spec/schema';
import { poolFor, inTransaction } from '../db/pools';
import { RECORD_RECHECK, CLEAR_DIFFERENCES, DIFFERENCE_KEYS, MARK_LOCATED, RANGE_COUNTS, SAVE_DIFFERENCES } from '../db/ledger';
import { hashedColumns, type KeyRange, type Side } from '../db/sql';
import { bucketRowsSql, bucketSql, keyHashesSql, keyedRowsSql } from './sql';
import { guarded } from '../db/errors';
import { bindingFor, type Binding } from '../plan/binding';
import { resolveRange } from '../plan/bounds';
import { compareKeys } from './compare';
import { heartbeat } from '../activities/heartbeat';
import { rangeAt, type RangeInput } from './copy';
import type { Located } from '../domain/range-lifecycle';

const BITS_PER_LEVEL = 6;
/** Rows per bucket the first level aims at, and its most bits (buckets travel to the worker). */
const BUCKET_ROWS = 16;
const MAX_FIRST_BITS = 14;
const MAX_LEVELS = 5;
/** Rows (on either side) in the suspect buckets below which their keys are fetched. */
const FETCH_ROWS = 4000;
/**
 * Rows (on either side) of a range up to which it is compared whole in the worker: one scan per side
 * of each key and row hash, instead of a bucket scan and a fetch (BACKFILL_LOCATE_WHOLE_ROWS, 20,000 by
 * default; 0: always by buckets). Only for small ranges: past a few tens of thousands of rows,
 * parsing them in the worker costs more than the second scan (measured: five faults in
 * 100,000-row ranges located in 1.9 s by buckets, 3.1 s whole).
 */
function directRows(env: NodeJS.ProcessEnv = process.env): number {
  return setting('locateWholeRows', env);
}
/** Keys per kind kept in the workflow and shown in the report; the ledger has all of them. */
export const KEY_SAMPLE = 20;

export type DifferenceKind = 'missing' | 'extra' | 'changed' | 'duplicate';

export interface Difference {
  kind: DifferenceKind;
  key: string[];
  /** for changed rows: the target columns whose values differ */
  columns?: string[];
  /** for duplicates: which side repeats the key */
  side?: Side;
}

type Buckets = Map<string, { n: string; s: string }>;

async function buckets(
  b: Binding,
  alias: string,
  access: 'read' | 'write',
  side: Side,
  r: KeyRange,
  bits: number,
  parentBits: number,
  suspects: string[],
): Promise<Buckets> {
  const res = await poolFor(alias, access).query(bucketSql(b, side, r, bits, parentBits), parentBits > 0 ? [suspects] : []);
  return new Map(res.rows.map((x) => [String(x.b), { n: String(x.n), s: String(x.s) }]));
}

interface FetchedRow {
  h: string;
  ch: string[];
}

type Fetched = { rows: Map<string, FetchedRow>; repeated: Set<string>; count: number };

/** Adds rows of (key, h, ch) to what was fetched so far; a key seen again is a duplicate. */
function addFetched(into: Fetched, found: { key: unknown; h: unknown; ch: unknown }[]): Fetched {
  for (const x of found) {
    const k = String(x.key);
    if (into.rows.has(k)) into.repeated.add(k);
    into.rows.set(k, { h: String(x.h), ch: JSON.parse(String(x.ch)) as string[] });
  }
  into.count += found.length;
  return into;
}

const nothingFetched = (): Fetched => ({ rows: new Map(), repeated: new Set(), count: 0 });

async function fetchRows(b: Binding, alias: string, access: 'read' | 'write', side: Side, r: KeyRange, bits: number, suspects: string[]) {
  const res = await poolFor(alias, access).query(bucketRowsSql(b, side, r, bits), bits > 0 ? [suspects] : []);
  return addFetched(nothingFetched(), res.rows);
}

/** Pure: the differences between two sides' fetched rows. */
export function diffRows(
  columns: string[],
  s: { rows: Map<string, FetchedRow>; repeated: Set<string> },
  t: { rows: Map<string, FetchedRow>; repeated: Set<string> },
): Difference[] {
  const out: Difference[] = [];
  for (const [k, sr] of s.rows) {
    const tr = t.rows.get(k);
    if (!tr) out.push({ kind: 'missing', key: JSON.parse(k) });
    else if (tr.h !== sr.h) out.push({ kind: 'changed', key: JSON.parse(k), columns: columns.filter((_, i) => sr.ch[i] !== tr.ch[i]) });
  }
  for (const k of t.rows.keys()) if (!s.rows.has(k)) out.push({ kind: 'extra', key: JSON.parse(k) });
  for (const k of s.repeated) out.push({ kind: 'duplicate', key: JSON.parse(k), side: 'source' });
  for (const k of t.repeated) out.push({ kind: 'duplicate', key: JSON.parse(k), side: 'target' });
  return out.sort((a, b) => compareKeys(a.key, b.key));
}

export function summarise(diffs: Difference[], levels: number, rowsFetched: number): Located {
  const of = (k: DifferenceKind) => diffs.filter((d) => d.kind === k);
  const columns: Record<string, number> = {};
  for (const d of of('changed')) for (const c of d.columns ?? []) columns[c] = (columns[c] ?? 0) + 1;
  const sample = (k: DifferenceKind) =>
    of(k)
      .slice(0, KEY_SAMPLE)
      .map((d) => d.key);
  return {
    missing: of('missing').length,
    extra: of('extra').length,
    changed: of('changed').length,
    duplicates: of('duplicate').length,
    keys: { missing: sample('missing'), extra: sample('extra'), changed: sample('changed'), duplicates: sample('duplicate') },
    columns,
    levels,
    rowsFetched,
  };
}

export async function locateRange(input: RangeInput): Promise<Located> {
  const b = await bindingFor(input.spec, input.table, input.tableIndex);
  return guarded(`locating differences in ${b.sourceName} range ${input.rangeIndex}`, async () => {
    const ctl = controlAlias(input.spec);
    const { range: r } = await resolveRange(b, input.plan, rangeAt(input));
    const src = input.spec.source;
    const tgt = input.spec.target;
    const counts = (await poolFor(ctl, 'write').query(RANGE_COUNTS, [input.migration, input.tableIndex, input.rangeIndex])).rows[0];
    const rows = counts ? Math.max(Number(counts.source_count ?? Infinity), Number(counts.target_count ?? Infinity)) : Infinity;
    if (rows <= directRows()) {
      const direct = await compareWhole(b, src, tgt, r);
      const located = summarise(direct.diffs, 0, direct.fetched);
      await saveDifferences(input, direct.diffs, located);
      return located;
    }
    let suspects: string[] = [];
    let bits = 0;
    let levels = 0;
    // The first level has buckets of about BUCKET_ROWS rows when the range's size is known, so
    // a few faults are usually narrowed to their rows at once; later levels add BITS_PER_LEVEL.
    const first = Number.isFinite(rows)
      ? Math.min(MAX_FIRST_BITS, Math.max(BITS_PER_LEVEL, Math.ceil(Math.log2(Math.max(1, rows) / BUCKET_ROWS))))
      : BITS_PER_LEVEL;
    for (let level = 1; level <= MAX_LEVELS; level++) {
      const next = first + (level - 1) * BITS_PER_LEVEL;
      const [sb, tb] = await Promise.all([
        buckets(b, src, 'read', 'source', r, next, bits, suspects),
        buckets(b, tgt, 'write', 'target', r, next, bits, suspects),
      ]);
      heartbeat({ level });
      const differing = [...new Set([...sb.keys(), ...tb.keys()])].filter((k) => {
        const x = sb.get(k);
        const y = tb.get(k);
        return !x || !y || x.n !== y.n || x.s !== y.s;
      });
      suspects = differing;
      bits = next;
      levels = level;
      const rows = (m: Buckets) => differing.reduce((a, k) => a + Number(m.get(k)?.n ?? 0), 0);
      if (differing.length === 0 || Math.max(rows(sb), rows(tb)) <= FETCH_ROWS) break;
    }
    let diffs: Difference[] = [];
    let fetched = 0;
    if (suspects.length > 0) {
      const [s, t] = await Promise.all([fetchRows(b, src, 'read', 'source', r, bits, suspects), fetchRows(b, tgt, 'write', 'target', r, bits, suspects)]);
      fetched = s.count + t.count;
      diffs = diffRows(hashedColumns(b), s, t);
    }
    const located = summarise(diffs, levels, fetched);
    await saveDifferences(input, diffs, located);
    return located;
  });
}

/** No per-column hashes yet: one array for every row, not one each (a whole range is held at once). */
const NO_COLUMN_HASHES: string[] = [];

async function keyHashes(b: Binding, alias: string, access: 'read' | 'write', side: Side, r: KeyRange) {
  const res = await poolFor(alias, access).query<[string, string]>({ text: keyHashesSql(b, side, r), rowMode: 'array' });
  const rows = new Map<string, FetchedRow>();
  const repeated = new Set<string>();
  for (const [k, h] of res.rows) {
    if (rows.has(k)) repeated.add(k);
    rows.set(k, { h, ch: NO_COLUMN_HASHES });
  }
  return { rows, repeated, count: res.rows.length };
}

/**
 * A small range compared whole: every key and row hash of both sides, then, for the keys whose rows
 * differ, their per-column hashes read by key to name the columns.
 */
async function compareWhole(b: Binding, src: string, tgt: string, r: KeyRange): Promise<{ diffs: Difference[]; fetched: number }> {
  const [s, t] = await Promise.all([keyHashes(b, src, 'read', 'source', r), keyHashes(b, tgt, 'write', 'target', r)]);
  heartbeat({ compared: s.count + t.count });
  const diffs = diffRows([], s, t);
  const changed = diffs.filter((d) => d.kind === 'changed');
  let fetched = s.count + t.count;
  if (changed.length) {
    const keys = changed.map((d) => d.key);
    const [s2, t2] = await keyedBoth(b, src, tgt, r, keys);
    fetched += s2.count + t2.count;
    const named = new Map(
      diffRows(hashedColumns(b), s2, t2)
        .filter((d) => d.kind === 'changed')
        .map((d) => [JSON.stringify(d.key), d.columns ?? []]),
    );
    for (const d of changed) d.columns = named.get(JSON.stringify(d.key)) ?? [];
  }
  return { diffs, fetched };
}

/** A range's differences replace the ones the ledger had, with their counts on the range's evidence. */
async function saveDifferences(input: RangeInput, diffs: Difference[], located: Located, recheck?: { converged: number }): Promise<void> {
  await inTransaction(poolFor(controlAlias(input.spec), 'write'), 'BEGIN', async (c) => {
    // In the same transaction as the differences it removes: a retry counts a key once.
    if (recheck) await c.query(RECORD_RECHECK, [input.migration, input.tableIndex, input.rangeIndex, recheck.converged, input.attempt]);
    await c.query(CLEAR_DIFFERENCES, [input.migration, input.tableIndex, input.rangeIndex]);
    await c.query(SAVE_DIFFERENCES, [input.migration, input.tableIndex, input.rangeIndex, JSON.stringify(diffs)]);
    const { keys: _keys, ...counts } = located;
    await c.query(MARK_LOCATED, [input.migration, input.tableIndex, input.rangeIndex, JSON.stringify(counts)]);
  });
}

/** The rows of `keys` within a range on both sides at once (source read, target write pools). */
export function keyedBoth(b: Binding, source: string, target: string, r: KeyRange, keys: string[][]) {
  return Promise.all([keyedRows(b, source, 'read', 'source', r, keys), keyedRows(b, target, 'write', 'target', r, keys)]);
}

/** Keys per keyed read: a lookup by the key's index per key, in statements of bounded size. */
const KEYS_PER_READ = 5000;

async function keyedRows(b: Binding, alias: string, access: 'read' | 'write', side: Side, r: KeyRange, keys: string[][]) {
  const fetched = nothingFetched();
  for (let at = 0; at < keys.length; at += KEYS_PER_READ) {
    const part = keys.slice(at, at + KEYS_PER_READ);
    addFetched(
      fetched,
      (
        await poolFor(alias, access).query(
          keyedRowsSql(b, side, r),
          b.key.map((_, i) => part.map((k) => k[i])),
        )
      ).rows,
    );
  }
  return fetched;
}

/**
 * Reads a located range's keys again on both sides, by key, and keeps only those that still differ:
 * a target that is a replica may have caught up during the lag grace. Nothing else of the range is
 * read; the caller measures the whole range again once no key differs.
 */
export async function recheckRange(input: RangeInput): Promise<Located> {
  const b = await bindingFor(input.spec, input.table, input.tableIndex);
  return guarded(`reading the differences of ${b.sourceName} range ${input.rangeIndex} again`, async () => {
    const ctl = controlAlias(input.spec);
    const { range: r } = await resolveRange(b, input.plan, rangeAt(input));
    const res = await poolFor(ctl, 'write').query(DIFFERENCE_KEYS, [input.migration, input.tableIndex, input.rangeIndex]);
    const keys = res.rows.map((x) => JSON.parse(String(x.key)) as string[]);
    const [s, t] = await keyedBoth(b, input.spec.source, input.spec.target, r, keys);
    const diffs = diffRows(hashedColumns(b), s, t);
    const still = new Set(diffs.map((d) => JSON.stringify(d.key))).size;
    const located = { ...summarise(diffs, 0, s.count + t.count), converged: keys.length - still };
    await saveDifferences(input, diffs, located, { converged: located.converged });
    return located;
  });
}

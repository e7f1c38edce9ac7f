// Range bounds: the validation units. A plan is a few values per table; range i's bounds are derived
// from it (arithmetic for key spans, SQL interval arithmetic for time, the ledger's boundaries for
// row-count chunks), so neither the workflow nor its history carries a list of ranges.
import { poolFor } from '../db/pools';
import type { TablePlan } from '../domain/plan';
import { RANGE_BOUNDARIES } from '../db/ledger';
import type { KeyRange } from '../db/sql';
import { intervalBoundsSql } from './sql';
import { rangeBounds, showBound } from '../domain/range-bounds';

import type { Binding } from './binding';

/** Bytes of table a default range covers: big enough that per-range costs do not show, small enough to share out. */
export const RANGE_BYTES = 16 * 1024 * 1024;
const MIN_ROWS_PER_RANGE = 1_000;
const MAX_ROWS_PER_RANGE = 1_000_000;

/**
 * Rows per range for a table of `rows` rows (the planner's estimate; -1 or 0: unknown) and `bytes`
 * bytes, so a range holds about RANGE_BYTES whatever the row width. Unknown: `fallback`. Pure.
 */
export function rowsPerRange(t: { rows: number; bytes: number }, fallback: number, rangeBytes = RANGE_BYTES): number {
  if (!(t.rows > 0) || !(t.bytes > 0)) return fallback;
  const n = Math.round(rangeBytes / (t.bytes / t.rows));
  return Math.max(MIN_ROWS_PER_RANGE, Math.min(MAX_ROWS_PER_RANGE, n));
}

/** Most bytes of table a default range covers in verify mode. */
export const VERIFY_RANGE_BYTES = 64 * 1024 * 1024;

/**
 * Bytes of table a default range covers. In verify mode a range is only read (no transaction that
 * writes, no copy to retry), so its fixed costs weigh more against its scan: ranges up to four times
 * as large, yet at least four per slot of the window, so the last ones do not run alone. Pure.
 */
export function rangeBytesFor(spec: { mode: 'copy' | 'verify'; concurrency: number }, tableBytes: number): number {
  if (spec.mode !== 'verify') return RANGE_BYTES;
  return Math.max(RANGE_BYTES, Math.min(VERIFY_RANGE_BYTES, Math.floor(tableBytes / (4 * spec.concurrency))));
}

/** The key span that holds about `perRange` rows of `rows` spread over [lo, hi]. Pure, bigint-exact. */
export function spanFor(perRange: number, rows: number, lo: string, hi: string): string {
  const width = BigInt(hi) - BigInt(lo) + 1n;
  if (!(rows > 0)) return String(perRange);
  // Integer arithmetic on a scaled density, so a span of 2^62 keys stays exact.
  const span = (width * BigInt(perRange) + BigInt(Math.ceil(rows)) - 1n) / BigInt(Math.ceil(rows));
  return (span < 1n ? 1n : span).toString();
}

export function planSpan(p: TablePlan): KeyRange | null {
  return p.rangeCount > 0 ? { lo: p.lo, hi: p.hi } : null;
}

export interface ResolvedRange {
  range: KeyRange;
  lo: string;
  hi: string;
}

export async function resolveRange(
  b: Binding,
  plan: TablePlan,
  at: { migration: string; sourceAlias: string; controlAlias: string; tableIndex: number; rangeIndex: number },
): Promise<ResolvedRange> {
  const i = at.rangeIndex;
  if (!Number.isInteger(i) || i < 0 || i >= plan.rangeCount) throw new RangeError(`no range ${i} in ${plan.source}`);
  let range: KeyRange;
  if (plan.kind === 'size') {
    const r = rangeBounds({ lo: plan.lo[0], hi: plan.hi![0], size: plan.size!, rangeCount: plan.rangeCount }, i);
    range = { lo: [r.lo], hi: [r.hi] };
  } else if (plan.kind === 'interval') {
    // Both bounds from the same expression, so range i's hi is range i+1's lo, even for months.
    const r = await poolFor(at.sourceAlias, 'read').query(intervalBoundsSql(b.range.sourceTypes[0]), [plan.lo[0], i, plan.interval]);
    range = { lo: [r.rows[0].lo], hi: [r.rows[0].hi] };
  } else {
    const r = await poolFor(at.controlAlias, 'write').query(RANGE_BOUNDARIES, [at.migration, at.tableIndex, i]);
    const by = new Map(r.rows.map((x) => [Number(x.range_index), JSON.parse(String(x.lo)) as string[]]));
    if (!by.has(i)) throw new Error(`the ledger has no boundary for range ${i} of ${plan.source}: plan the migration again`);
    range = { lo: by.get(i)!, hi: by.get(i + 1) ?? null };
  }
  return { range, lo: showBound(range.lo), hi: showBound(range.hi) };
}

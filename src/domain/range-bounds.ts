// A range's bounds where they are arithmetic on the plan, and how a bound reads. Pure: the workflow
// names ranges with them (activity summaries), the activities copy them.
import { otherFailure } from './failures';

/** Range i of a key-span plan: [lo + i*size, min(lo + (i+1)*size, hi)). Pure, bigint-exact. */
export function rangeBounds(p: { lo: string; hi: string; size: string; rangeCount: number }, index: number): { lo: string; hi: string } {
  if (!Number.isInteger(index) || index < 0 || index >= p.rangeCount) throw otherFailure(`no range ${index} in a plan of ${p.rangeCount} ranges`);
  const lo = BigInt(p.lo) + BigInt(index) * BigInt(p.size);
  const end = lo + BigInt(p.size);
  const hi = end < BigInt(p.hi) ? end : BigInt(p.hi);
  return { lo: lo.toString(), hi: hi.toString() };
}

/** How a bound reads in a report: the value, or a JSON array for a composite key. */
export function showBound(v: string[] | null): string {
  if (v === null) return '';
  return v.length === 1 ? v[0] : JSON.stringify(v);
}

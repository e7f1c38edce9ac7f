// Range arithmetic, shared by the workflow and the activities. Pure and deterministic.
export interface PlannedBounds {
  lo: string;
  hi: string;
  size: string;
  rangeCount: number;
}

export function rangeBounds(p: PlannedBounds, index: number): { lo: string; hi: string } {
  if (!Number.isInteger(index) || index < 0 || index >= p.rangeCount) throw new RangeError(`no range ${index}`);
  const lo = BigInt(p.lo) + BigInt(index) * BigInt(p.size);
  const end = lo + BigInt(p.size);
  const hi = end < BigInt(p.hi) ? end : BigInt(p.hi);
  return { lo: lo.toString(), hi: hi.toString() };
}

// A table's plan: a few values from which every range's bounds are derived (src/domain/range-bounds.ts
// for key spans, SQL for time intervals, the ledger for row-count chunks), so neither the workflow nor
// its history carries a list of ranges.
import type { ColumnPlanEntry } from './columns';

/** One table's plan, as planning made it and the workflow carries it. */
export interface TablePlan {
  source: string;
  target: string;
  kind: 'size' | 'interval' | 'rows';
  /** the planned span [lo, hi) on the range columns; hi null: unbounded (row-count chunks) */
  lo: string[];
  hi: string[] | null;
  size?: string;
  interval?: string;
  rangeCount: number;
  /** foreign keys owned by or referencing this table, set aside while ranges are written */
  setAside?: string[];
  /** what becomes of every column, as planned: a change on either side after planning is drift */
  columns?: ColumnPlanEntry[];
  /** the leaf partitions holding each side's rows, as last proven (planning, or a checkpoint since) */
  partitions?: { source: string[]; target: string[] };
}

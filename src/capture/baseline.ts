// What a checkpoint keeps for the final window's tripwire (tripwire.ts, row-versions.ts): read on
// both sides just before the checkpoint's snapshot, carried in the workflow's state. Types only.

/** The oldest running transaction on each side, read before a checkpoint's snapshot. */
export interface XminBaseline {
  source: string;
  target: string;
}

export interface CaptureBaseline {
  /** the source's WAL position read just after the counters: changes committed after it are counted */
  lsn: string;
  /** the counters can prove a window (PostgreSQL 15 or later, track_counts on) */
  usable: boolean;
  /** per table: its writes so far, and the storage of each relation under it ([name, filenode]) */
  tables: { writes: string; storage: [string, string | null][] }[];
  /** the oldest running transaction on each side (absent in baselines read before it was kept) */
  xmin?: XminBaseline;
}

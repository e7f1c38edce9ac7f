// Rates and ETAs for `status --watch`, from what the progress query showed over time. Pure: the
// caller passes the clock, so the arithmetic is tested without waiting.

export interface Sample {
  at: number;
  rows: number;
  /** ranges verified or failed: the work that is over */
  done: number;
}

export interface Rate {
  rowsPerSec: number;
  rangesPerSec: number;
}

/**
 * A sliding window of samples per table. The rate is measured over the window (30 s by default), so
 * it follows a migration that speeds up or slows down, yet one slow poll does not swing it.
 */
export class Rates {
  private readonly samples = new Map<string, Sample[]>();
  constructor(private readonly windowMs = 30_000) {}

  add(key: string, s: Sample): void {
    const list = this.samples.get(key) ?? [];
    // A rerun or a new epoch can lower the counts: start measuring again from there.
    if (list.length && (s.rows < list[list.length - 1].rows || s.done < list[list.length - 1].done)) list.length = 0;
    list.push(s);
    while (list.length > 2 && s.at - list[1].at >= this.windowMs) list.shift();
    this.samples.set(key, list);
  }

  rate(key: string): Rate | undefined {
    const list = this.samples.get(key);
    if (!list || list.length < 2) return undefined;
    const first = list[0];
    const last = list[list.length - 1];
    const secs = (last.at - first.at) / 1000;
    if (secs <= 0) return undefined;
    return { rowsPerSec: (last.rows - first.rows) / secs, rangesPerSec: (last.done - first.done) / secs };
  }
}

/** Seconds until `remaining` ranges are done at the measured rate; undefined while it cannot be told. */
export function etaSeconds(remaining: number, rate: Rate | undefined): number | undefined {
  if (remaining <= 0) return 0;
  if (!rate || !(rate.rangesPerSec > 0)) return undefined;
  return remaining / rate.rangesPerSec;
}

/** 45s, 3m 05s, 2h 07m. */
export function showDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** 1,234 or 12.3k or 4.5M rows per second, for a bar's narrow column. */
export function showRate(perSec: number): string {
  if (perSec >= 1e6) return `${(perSec / 1e6).toFixed(1)}M`;
  if (perSec >= 1e4) return `${(perSec / 1e3).toFixed(1)}k`;
  return Math.round(perSec).toLocaleString('en-US');
}

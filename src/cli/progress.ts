// Progress for long work: a bar per table with rows/s and an ETA measured from the progress query's
// counts over time (cli-progress: well kept, handles terminal redraws, several bars at once). Off a
// terminal, the caller prints a line per change instead (`progressLines`).
import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import type { Progress } from '../workflows/messages';
import { captureLag, captureLine, gateInstructions } from '../report/render';
import { Rates, etaSeconds, showDuration, showRate } from './rates';

const fmt = (n: number) => n.toLocaleString('en-US');
const tableKey = (t: Progress['tables'][number]) => `${t.source}→${t.target}`;

/** Each table's counts, rate and ETA as the bar's payload (and the plain line off a terminal). */
export function tableFigures(t: Progress['tables'][number], rates: Rates) {
  const r = t.ranges;
  const rate = rates.rate(tableKey(t));
  const remaining = r.total - r.verified - r.failed;
  const eta = etaSeconds(remaining, rate);
  return {
    table: `${t.source} → ${t.target}`,
    done: r.verified + r.failed,
    total: Math.max(r.total, 1),
    rows: fmt(t.rowsCopied),
    rate: rate ? showRate(Math.max(0, rate.rowsPerSec)) : '–',
    left: remaining <= 0 ? 'done' : eta === undefined ? '–' : showDuration(eta),
    failed: r.failed ? ` | ${fmt(r.failed)} failed` : '',
  };
}

export class ProgressDisplay {
  readonly interactive = Boolean(process.stderr.isTTY);
  private readonly rates = new Rates();
  private bars?: MultiBar;
  private header?: SingleBar;
  private readonly tables = new Map<string, SingleBar>();
  private shownGate = '';

  /** Records the counts (for rates) and redraws; `now` is the time the query answered. */
  update(p: Progress, now = Date.now()): void {
    for (const t of p.tables) this.rates.add(tableKey(t), { at: now, rows: t.rowsCopied, done: t.ranges.verified + t.ranges.failed });
    if (!this.interactive) return;
    // Change capture: how far behind the stream is, on the header line.
    const lag = p.capture ? ` | ${fmt(p.capture.transactions)} transactions applied, ${captureLag(p.capture)}` : '';
    const phase = { phase: `${p.migration}: ${p.phase}${p.paused ? ' (paused)' : ''}${p.detail ? ` – ${p.detail}` : ''}${lag}` };
    if (!this.bars) {
      this.bars = new MultiBar(
        {
          format: ' {table} {bar} {done}/{total} ranges | {rows} rows | {rate} rows/s | ETA {left}{failed}',
          hideCursor: true,
          stream: process.stderr,
          clearOnComplete: false,
          stopOnComplete: false,
          autopadding: true,
        },
        Presets.shades_classic,
      );
      this.header = this.bars.create(1, 0, phase, { format: '{phase}' });
    }
    this.header!.update(0, phase);
    for (const t of p.tables) {
      const f = tableFigures(t, this.rates);
      const bar = this.tables.get(tableKey(t));
      if (bar) {
        bar.setTotal(f.total);
        bar.update(f.done, f);
      } else this.tables.set(tableKey(t), this.bars.create(f.total, f.done, f));
    }
    const gate = gateInstructions(p);
    if (gate && gate !== this.shownGate) this.bars.log(`${gate}\n`);
    this.shownGate = gate;
  }

  /** The plain lines for a log (off a terminal): each table's rate and ETA. */
  rateLines(p: Progress): string[] {
    const lines = p.tables.map((t) => {
      const f = tableFigures(t, this.rates);
      return `  ${f.table}: ${fmt(f.done)}/${fmt(f.total)} ranges, ${f.rate} rows/s, ETA ${f.left}`;
    });
    return p.capture ? [...lines, `  ${captureLine(p.capture)}`] : lines;
  }

  stop(): void {
    this.bars?.stop();
    this.bars = undefined;
    this.header = undefined;
    this.tables.clear();
  }
}

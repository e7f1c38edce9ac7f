// Progress for long work: a bar per table with rows/s and an ETA measured from the progress query's
// counts over time, drawn in one region of the terminal (region.ts) that is redrawn in place; the
// bars' glyphs are cli-progress's. At the gate, its steps are printed once above the region. Off a
// terminal, the caller prints a line per change instead.
import { waitingLine } from '../domain/waits';
import { Format, Presets } from 'cli-progress';
import type { Progress } from '../workflows/messages';
import { captureLag, captureLine, copiedRows, gateInstructions, reverseLine } from '../report/render';
import { Rates, etaSeconds, showDuration, showRate } from './rates';
import { Region } from './region';

const fmt = (n: number) => n.toLocaleString('en-US');
const tableKey = (t: Progress['tables'][number]) => `${t.source}→${t.target}`;

/** Each table's counts, rate and ETA (for its bar, and the plain line off a terminal). */
export function tableFigures(t: Progress['tables'][number], rates: Rates) {
  const r = t.ranges;
  const rate = rates.rate(tableKey(t));
  const remaining = r.total - r.verified - r.failed;
  const eta = etaSeconds(remaining, rate);
  return {
    table: `${t.source} → ${t.target}`,
    done: r.verified + r.failed,
    total: Math.max(r.total, 1),
    rows: copiedRows(t, ' rows'),
    rate: rate ? showRate(Math.max(0, rate.rowsPerSec)) : '–',
    left: remaining <= 0 ? 'done' : eta === undefined ? '–' : showDuration(eta),
    failed: r.failed ? ` | ${fmt(r.failed)} failed` : '',
  };
}

const BAR_MAX = 40;
const BAR_MIN = 10;
const glyphs = Presets.shades_classic;

/** A bar of `size` glyphs for `done` of `total`, as cli-progress draws it. */
function bar(done: number, total: number, size: number): string {
  return Format.BarFormat(Math.min(1, done / total), {
    barsize: size,
    barGlue: '',
    barCompleteString: glyphs.barCompleteChar.repeat(size + 1),
    barIncompleteString: glyphs.barIncompleteChar.repeat(size + 1),
  });
}

export class ProgressDisplay {
  readonly interactive = Boolean(process.stderr.isTTY);
  private readonly rates = new Rates();
  private region?: Region;
  private shownGate = '';

  /** Records the counts (for rates) and redraws; `now` is the time the query answered. */
  update(p: Progress, now = Date.now()): void {
    for (const t of p.tables) this.rates.add(tableKey(t), { at: now, rows: t.rowsCopied, done: t.ranges.verified + t.ranges.failed });
    if (!this.interactive) return;
    this.region ??= new Region(process.stderr);
    const columns = this.region.columns();
    // Change capture: how far behind the stream is, on the header line.
    const lag = p.reverse
      ? ` | the way back: ${fmt(p.reverse.transactions)} transactions applied to the source, ${captureLag(p.reverse)}`
      : p.capture
        ? ` | ${fmt(p.capture.transactions)} transactions applied, ${captureLag(p.capture)}`
        : '';
    const lines = [`${p.migration}: ${p.phase}${p.paused ? ' (paused)' : ''}${p.detail ? ` – ${p.detail}` : ''}${lag}`];
    // What it waits for (a database that cannot be reached), under the header, while it lasts.
    for (const w of p.waiting ?? []) lines.push(` waiting: ${waitingLine(w, now)}`);
    const figures = p.tables.map((t) => tableFigures(t, this.rates));
    const label = Math.max(0, ...figures.map((f) => [...f.table].length));
    for (const f of figures) {
      const head = ` ${f.table.padEnd(label)} `;
      const tail = `${f.done}/${f.total} ranges | ${f.rows} | ${f.rate} rows/s | ETA ${f.left}${f.failed}`;
      // The bar takes what the row has left; where even a short one leaves no room, the figures go
      // on a row of their own under it (and wrap at their words if they must).
      const room = columns - 1 - [...head].length - 1;
      if (room - [...tail].length >= BAR_MIN) lines.push(`${head}${bar(f.done, f.total, Math.min(BAR_MAX, room - [...tail].length))} ${tail}`);
      else lines.push(`${head}${bar(f.done, f.total, Math.max(BAR_MIN, Math.min(BAR_MAX, room + 1)))}`, `   ${tail}`);
    }
    const gate = gateInstructions(p);
    this.region.draw(lines, gate && gate !== this.shownGate ? gate : undefined);
    this.shownGate = gate;
  }

  /** The plain lines for a log (off a terminal): each table's rate and ETA. */
  rateLines(p: Progress): string[] {
    const lines = p.tables.map((t) => {
      const f = tableFigures(t, this.rates);
      return `  ${f.table}: ${fmt(f.done)}/${fmt(f.total)} ranges, ${f.rate} rows/s, ETA ${f.left}`;
    });
    if (p.reverse) return [...lines, `  ${reverseLine(p.reverse)}`];
    return p.capture ? [...lines, `  ${captureLine(p.capture)}`] : lines;
  }

  /** Leaves the last picture on the terminal and shows the cursor again. */
  stop(): void {
    this.region?.close();
    this.region = undefined;
  }
}

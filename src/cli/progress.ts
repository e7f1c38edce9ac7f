// A progress bar for long work (cli-progress: well kept, handles terminal redraws and non-TTY
// output). Off a terminal, the caller prints a line per phase change instead.
import { SingleBar, Presets } from 'cli-progress';
import type { Progress } from '../workflows/messages';

export class ProgressDisplay {
  readonly interactive = Boolean(process.stderr.isTTY);
  private bar?: SingleBar;

  update(p: Progress): void {
    if (!this.interactive) return;
    const total = p.tables.reduce((a, t) => a + t.ranges.total, 0);
    const done = p.tables.reduce((a, t) => a + t.ranges.verified + t.ranges.failed, 0);
    const rows = p.tables.reduce((a, t) => a + t.rowsCopied, 0);
    const payload = { phase: p.phase + (p.paused ? ' (paused)' : ''), rows: rows.toLocaleString('en-US'), failed: p.tables.reduce((a, t) => a + t.ranges.failed, 0) };
    if (!this.bar) {
      this.bar = new SingleBar(
        { format: ' {bar} {value}/{total} ranges | {rows} rows | {failed} failed | {phase}', hideCursor: true, stream: process.stderr },
        Presets.shades_classic,
      );
      this.bar.start(Math.max(total, 1), done, payload);
    } else {
      this.bar.setTotal(Math.max(total, 1));
      this.bar.update(done, payload);
    }
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

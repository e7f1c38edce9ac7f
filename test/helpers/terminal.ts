// A real terminal for the CLI: a tmux pane of a given size (its own server, its socket in the test's folder).
// `screen()` is what a person sees there now; `raw()` every byte the program wrote; `info()` reads
// tmux's own view of the pane (the cursor shown or hidden, the exit status once the program ended).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const TMUX = '/usr/bin/tmux';

/** Where tmux is missing the terminal tests are skipped, and say so; under CI they fail instead. */
export function tmuxMissing(): string | false {
  if (existsSync(TMUX)) return false;
  if (process.env.CI) throw new Error(`${TMUX} is missing: the terminal tests need tmux (apt-get install tmux)`);
  return `${TMUX} is missing (apt-get install tmux)`;
}

const GONE = '(the terminal is gone: the program took its shell with it)';
const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export class Terminal {
  private readonly name = `tmux-${Math.random().toString(36).slice(2, 8)}`;
  private readonly socket: string;
  private readonly rawFile: string;

  /** Runs `argv` in a pane of `columns` × `rows`, with `env` added to this process's environment. */
  constructor(dir: string, argv: string[], o: { columns: number; rows: number; env?: NodeJS.ProcessEnv }) {
    this.socket = join(dir, this.name);
    this.rawFile = join(dir, `${this.name}.raw`);
    const go = join(dir, `${this.name}.go`);
    // The program waits until its bytes are recorded (pipe-pane), then starts. Once it ends, the
    // pane stays as it left it (tmux would reset a dead pane's cursor), with its exit status.
    const command = `while [ ! -e ${sh(go)} ]; do sleep 0.05; done; ${argv.map(sh).join(' ')}; echo "[exit $?]"; exec sleep 600`;
    const env = { ...process.env, ...o.env };
    this.tmux(['new-session', '-d', '-s', 't', '-x', String(o.columns), '-y', String(o.rows), command], env);
    this.tmux(['pipe-pane', '-o', '-t', 't', `cat >> ${sh(this.rawFile)}`]);
    writeFileSync(go, '');
  }

  private tmux(args: string[], env: NodeJS.ProcessEnv = process.env): string {
    return execFileSync(TMUX, ['-S', this.socket, '-f', '/dev/null', ...args], { env, encoding: 'utf8' });
  }

  /** The pane as it looks now, a string per row (trailing spaces dropped). */
  screen(): string[] {
    return this.tmux(['capture-pane', '-p', '-t', 't'])
      .replace(/\n$/, '')
      .split('\n')
      .map((r) => r.trimEnd());
  }

  /**
   * The screen as text: rows the terminal wrapped are joined back into their lines. Once the pane
   * is gone (a signal that ended the program ended its shell too), a sentence saying so.
   */
  text(): string {
    try {
      return this.tmux(['capture-pane', '-p', '-J', '-t', 't']).replace(/[ \t]+$/gm, '');
    } catch {
      return GONE;
    }
  }

  /** A tmux format of the pane: `#{cursor_flag}` (1: the cursor is shown). */
  info(format: string): string {
    return this.tmux(['display-message', '-p', '-t', 't', format]).trim();
  }

  /** Keys typed into the pane (`C-c` is Ctrl-C: the terminal sends the program SIGINT). */
  keys(...keys: string[]): void {
    this.tmux(['send-keys', '-t', 't', ...keys]);
  }

  raw(): string {
    return existsSync(this.rawFile) ? readFileSync(this.rawFile, 'utf8') : '';
  }

  /** Polls until `ok(screen rows)` holds; returns the screen (the last one seen, on timeout). */
  async waitFor(ok: (rows: string[]) => boolean, ms = 30_000): Promise<string[]> {
    const end = Date.now() + ms;
    for (;;) {
      const rows = this.screen();
      if (ok(rows) || Date.now() > end) return rows;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Polls until the program has ended; its exit status (128 + the signal's number when a signal
   * ended it; undefined when it still runs, or when the signal ended the shell around it too and
   * with it the pane and its server).
   */
  async ended(ms = 15_000): Promise<number | undefined> {
    const end = Date.now() + ms;
    for (;;) {
      const text = this.text();
      if (text === GONE) return undefined;
      const m = /^\[exit (\d+)\]$/m.exec(text);
      if (m || Date.now() > end) return m ? Number(m[1]) : undefined;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  close(): void {
    try {
      this.tmux(['kill-server']);
    } catch {
      /* already gone */
    }
  }
}

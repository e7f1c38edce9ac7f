// A region at the bottom of a terminal, drawn again in place: each draw moves back to its first row,
// clears from there down, and writes every line anew, so nothing of an earlier picture is left
// beside a shorter line. Lines are wrapped at spaces to the terminal's width, never cut: a word
// longer than a row (a digest at 30 columns) keeps its row(s) whole and the terminal wraps it.
// Text printed once above the region (`above`) scrolls up with the terminal's history.
import { setting } from '../settings';

/** COLUMNS, where the terminal does not say its width. */
const terminalColumns = (): number => Math.max(20, setting('columns'));

const HIDE_CURSOR = '\u001b[?25l';
const SHOW_CURSOR = '\u001b[?25h';

const width = (s: string) => [...s].length;

/**
 * `line` broken at spaces into rows of fewer than `columns` characters. Rows after the first are
 * indented two more than the line; a command (text starting with `backfill `) ends each broken row
 * with ` \` so that its rows paste into a shell as one command. Pure.
 */
export function wrapLine(line: string, columns: number): string[] {
  const max = Math.max(columns - 1, 10);
  if (width(line) <= max) return [line];
  const indent = /^ */.exec(line)![0];
  const command = line.trimStart().startsWith('backfill ');
  const more = ' \\';
  const room = max - (command ? width(more) : 0);
  const rows: string[] = [];
  let row = '';
  for (const word of line.slice(indent.length).split(' ')) {
    if (row === '') row = `${indent}${word}`;
    else if (width(row) + 1 + width(word) <= room) row += ` ${word}`;
    else {
      rows.push(command ? `${row}${more}` : row);
      row = `${indent}  ${word}`;
    }
  }
  rows.push(row);
  return rows;
}

/** Terminal rows a row of text takes at `columns` (a word longer than a row wraps). */
const rowsTaken = (row: string, columns: number) => Math.max(1, Math.ceil(width(row) / columns));

export class Region {
  private rows = 0;
  private drawn = false;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  /** Columns of the terminal (its own size; COLUMNS when it reports none; else 80). */
  columns(): number {
    return this.out.columns || terminalColumns();
  }

  /** Draws `lines` in place of the region's last picture, with `above` printed once over it, to stay. */
  draw(lines: string[], above?: string): void {
    const columns = this.columns();
    const kept = above ? above.split('\n').flatMap((l) => wrapLine(l, columns)) : [];
    const shown = lines.flatMap((l) => wrapLine(l, columns));
    let out = this.drawn ? '' : HIDE_CURSOR;
    // Back to the region's first row, then everything below it cleared.
    out += this.rows ? `\u001b[${this.rows}A\r` : '\r';
    out += '\u001b[J';
    out += [...kept, ...shown].map((r) => `${r}\n`).join('');
    this.rows = shown.reduce((a, r) => a + rowsTaken(r, columns), 0);
    this.drawn = true;
    this.out.write(out);
  }

  /** Leaves the last picture where it is and gives the cursor back. */
  close(): void {
    if (this.drawn) this.out.write(SHOW_CURSOR);
    this.drawn = false;
    this.rows = 0;
  }
}

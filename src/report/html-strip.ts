// The strip of the HTML report: every range of a table as a cell coloured by its status, in key order,
// sized so that a table of any number of ranges stays about one size; a range that is not proven is
// drawn at least a marker's size, on top, and linked to its evidence. SVG attributes carry the colours.
import { FAILED_STATUSES, type RangeReport, type TableReport } from '../domain/report';
import { anchor, bounds, esc, fmt, plural } from './html-text';

/** What a range's cell in the strip says: one colour per kind of status. */
export type CellKind = 'verified' | 'failed' | 'error' | 'pending' | 'unlisted' | 'other';

export const CELL_COLOURS: Record<CellKind, string> = {
  verified: '#2e7d32',
  failed: '#c62828',
  error: '#ef6c00',
  pending: '#bdbdbd',
  unlisted: '#a5d6a7',
  other: '#5c6bc0',
};

const CELL_LABELS: Record<CellKind, string> = {
  verified: 'verified',
  failed: 'not proven (failed, mismatch, refused)',
  error: 'error (a failure no retry cures)',
  pending: 'pending',
  unlisted: 'verified or pending (not itemised in this report; backfill.ranges has each)',
  other: 'other',
};

function cellKind(status: string): CellKind {
  if (status === 'verified') return 'verified';
  if (FAILED_STATUSES.has(status)) return 'failed';
  if (status === 'error') return 'error';
  if (status === 'pending') return 'pending';
  return 'other';
}

/** The strip's width in CSS pixels; cells shrink as ranges grow so that a strip stays about this size. */
const STRIP_WIDTH = 1120;
const STRIP_AREA = STRIP_WIDTH * 240;
/** Up to this many ranges every range is a rect of its own; beyond, runs of one status in a row share one. */
const STRIP_CELL_LIMIT = 20_000;

/** The smallest a range that is not proven is drawn, in CSS pixels. */
const MARKER = 10;

export interface StripGeometry {
  cell: number;
  columns: number;
  rows: number;
}

function stripGeometry(n: number): StripGeometry {
  const cell = Math.max(2, Math.min(16, Math.floor(Math.sqrt(STRIP_AREA / Math.max(1, n)))));
  const columns = Math.floor(STRIP_WIDTH / cell);
  return { cell, columns, rows: Math.ceil(n / columns) };
}

/** Each range's kind: the ranges the report lists by their status, the others from the table's counts. */
function rangeKinds(t: TableReport): { kinds: CellKind[]; listed: Map<number, RangeReport>; unlisted: { verified: number; failed: number; pending: number } } {
  const n = t.rangeSummary.total;
  const listed = new Map(t.ranges.filter((r) => r.index >= 0 && r.index < n).map((r) => [r.index, r]));
  const count = (k: CellKind) => [...listed.values()].filter((r) => cellKind(r.status) === k).length;
  // A report itemises every range of a small table, and only those not proven of a large one.
  const verified = Math.max(0, t.rangeSummary.verified - count('verified'));
  const failed = Math.max(0, t.rangeSummary.failed - count('failed'));
  const pending = Math.max(0, n - listed.size - verified - failed);
  const present = (
    [
      ['verified', verified],
      ['failed', failed],
      ['pending', pending],
    ] as const
  ).filter(([, c]) => c > 0);
  const fill: CellKind = present.length === 1 ? present[0][0] : 'unlisted';
  const kinds = new Array<CellKind>(n);
  for (let i = 0; i < n; i++) {
    const r = listed.get(i);
    kinds[i] = r ? cellKind(r.status) : fill;
  }
  return { kinds, listed, unlisted: { verified, failed, pending } };
}

export function strip(ti: number, t: TableReport, migration: string): string {
  const n = t.rangeSummary.total;
  if (n === 0) return '<p>No ranges planned yet.</p>';
  const { kinds, listed, unlisted } = rangeKinds(t);
  const g = stripGeometry(n);
  const gap = g.cell >= 6 ? 1 : 0;
  const size = g.cell - gap;
  const merge = n > STRIP_CELL_LIMIT;
  const byKind = new Map<CellKind, string[]>();
  const tally = new Map<CellKind, number>();
  for (let i = 0; i < n;) {
    const kind = kinds[i];
    const col = i % g.columns;
    const x = col * g.cell;
    const y = Math.floor(i / g.columns) * g.cell;
    const r = listed.get(i);
    const out = byKind.get(kind) ?? [];
    byKind.set(kind, out);
    if (r && r.status !== 'verified') {
      // A range that is not proven: its own cell, named on hover, linked to its evidence.
      const what = `range ${r.index} ${bounds(r)}: ${r.status}${r.failedChecks.length ? ` (${r.failedChecks.join(', ')})` : ''}`;
      // Small cells: a larger marker centred on the cell, outlined, so that one red range in a
      // hundred thousand still catches the eye.
      const m = Math.max(size, MARKER);
      const at = (v: number) => v - (m - size) / 2;
      const ring = m > size ? ' stroke="#fff" stroke-width="1"' : '';
      out.push(
        `<a href="#${anchor(ti, i)}"><rect x="${at(x)}" y="${at(y)}" width="${m}" height="${m}"${ring} data-i="${i}" data-status="${esc(r.status)}"><title>${esc(what)}</title></rect></a>`,
      );
      tally.set(kind, (tally.get(kind) ?? 0) + 1);
      i++;
      continue;
    }
    let run = 1;
    if (merge) while (i + run < n && col + run < g.columns && kinds[i + run] === kind && !listed.has(i + run)) run++;
    out.push(`<rect x="${x}" y="${y}" width="${run * g.cell - gap}" height="${size}" data-i="${i}"${run > 1 ? ` data-n="${run}"` : ''}/>`);
    tally.set(kind, (tally.get(kind) ?? 0) + run);
    i += run;
  }
  const width = Math.min(n, g.columns) * g.cell;
  const height = g.rows * g.cell;
  const order: CellKind[] = ['failed', 'error', 'other', 'pending', 'unlisted', 'verified'];
  const legend = order
    .filter((k) => tally.has(k))
    .map((k) => {
      const of =
        k === 'unlisted'
          ? ` (${fmt(unlisted.verified)} verified, ${fmt(unlisted.pending)} pending${unlisted.failed ? `, ${fmt(unlisted.failed)} not proven` : ''})`
          : '';
      return `<li data-kind="${k}"><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" fill="${CELL_COLOURS[k]}"/></svg> ${esc(CELL_LABELS[k])}: ${fmt(tally.get(k)!)}${esc(of)}</li>`;
    })
    .join('');
  const label = `${plural(n, 'range')} of ${t.source}, one cell each, in key order: ${order
    .filter((k) => tally.has(k))
    .map((k) => `${fmt(tally.get(k)!)} ${CELL_LABELS[k]}`)
    .join(', ')}`;
  // Drawn last, so the red cells are on top of everything else.
  const groups = [...order]
    .reverse()
    .filter((k) => byKind.has(k))
    .map((k) => `<g fill="${CELL_COLOURS[k]}" data-kind="${k}">${byKind.get(k)!.join('')}</g>`)
    .join('');
  return [
    `<ul class="legend">${legend}</ul>`,
    `<svg class="strip" id="strip-${ti}" data-ranges="${n}" data-migration="${esc(migration)}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(label)}">`,
    `<title>${esc(label)}</title>${groups}</svg>`,
  ].join('\n');
}

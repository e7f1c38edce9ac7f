// The report as one self-contained HTML page, for people: the verdict and its digest, the totals,
// a strip of every range coloured by its status, each range that is not proven with its located keys
// and the command that reruns it, and the audit trail. Pure: report in, string out. No external
// asset and no script; every value from the report is escaped (table names and key values can hold
// `<`, `&` and quotes), and the page's own policy forbids scripts should anything slip through. The
// colours of the strip are SVG attributes and every status is also written in words, so the page
// reads (and prints) without the stylesheet's help.
import { describeColumn, summariseColumns } from '../domain/columns';
import { FAILED_STATUSES, auditTrail, endingOf, shellWord, verdictLine, type AuditRecord, type RangeReport, type Report, type TableReport } from '../domain/report';
import { captureEvidence, resumeEvidence } from './render';

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text or an attribute value, escaped for HTML. */
export function esc(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

const fmt = (n: number | string) => {
  const x = Number(n);
  return Number.isFinite(x) ? x.toLocaleString('en-US') : String(n);
};
const plural = (n: number, one: string, many = `${one}s`) => `${fmt(n)} ${n === 1 ? one : many}`;
const key = (k: string[]) => JSON.stringify(k);
const bounds = (r: { lo: string; hi: string }) => `[${r.lo || '−∞'}, ${r.hi || '∞'})`;

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

export function cellKind(status: string): CellKind {
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
export const STRIP_CELL_LIMIT = 20_000;

/** The smallest a range that is not proven is drawn, in CSS pixels. */
const MARKER = 10;

export interface StripGeometry {
  cell: number;
  columns: number;
  rows: number;
}

export function stripGeometry(n: number): StripGeometry {
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

const anchor = (ti: number, index: number) => `t${ti}-r${index}`;

function strip(ti: number, t: TableReport, migration: string): string {
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

const yes = (ok: boolean) => (ok ? '<td class="ok">yes</td>' : '<td class="bad"><strong>no</strong></td>');

function totals(t: TableReport): string {
  const s = t.totals.source;
  const d = t.totals.target;
  const both = !!s && !!d;
  const rows = [
    `<tr><th scope="row">rows</th><td>${s ? fmt(s.count) : '–'}</td><td>${d ? fmt(d.count) : '–'}</td>${both ? yes(s.count === d.count) : '<td>–</td>'}</tr>`,
    `<tr><th scope="row">checksum</th><td><code>${esc(s?.checksum ?? '–')}</code></td><td><code>${esc(d?.checksum ?? '–')}</code></td>${both ? yes(s.checksum === d.checksum) : '<td>–</td>'}</tr>`,
    `<tr><th scope="row">sum of ranges</th><td>${fmt(t.totals.sumOfRanges.source)}</td><td>${fmt(t.totals.sumOfRanges.target)}</td>${yes(t.totals.sumOfRanges.match)}</tr>`,
    `<tr><th scope="row">rows outside every range</th><td>${fmt(t.sourceOutside.count)}</td><td>${fmt(t.outside.count)}</td>${yes(t.outside.count === t.sourceOutside.count)}</tr>`,
  ];
  if (s?.duplicates !== undefined || d?.duplicates !== undefined)
    rows.push(
      `<tr><th scope="row">duplicate keys</th><td>${fmt(s?.duplicates ?? 0)}</td><td>${fmt(d?.duplicates ?? 0)}</td>${yes((s?.duplicates ?? 0) === 0 && (d?.duplicates ?? 0) === 0)}</tr>`,
    );
  for (const a of Object.keys(s?.aggregates ?? {})) {
    const sv = s?.aggregates[a] ?? null;
    const dv = d?.aggregates[a] ?? null;
    rows.push(
      `<tr><th scope="row">${esc(a)}</th><td>${esc(sv ?? 'NULL')}</td><td>${esc(dv ?? 'NULL')}</td>${t.totals.failedChecks.includes(a) ? yes(false) : both ? yes(true) : '<td>–</td>'}</tr>`,
    );
  }
  const table = [
    `<table class="totals"><caption>whole table${t.totals.failedChecks.length ? `: <span class="bad">${esc(t.totals.failedChecks.join(', '))} disagree</span>` : ''}</caption><thead><tr><th scope="col">check</th><th scope="col">source</th><th scope="col">target</th><th scope="col">match</th></tr></thead>`,
    `<tbody>${rows.join('')}</tbody></table>`,
  ].join('');
  // The distributions beside the totals: both are the whole table's figures.
  const out = [`<div class="figures">${table}${distributions(t)}</div>`];
  if (t.outside.count !== '0')
    out.push(
      `<p>${plural(Number(t.outside.count), 'target row')} outside every planned range (sample): ${t.outside.keys.map((k) => `<code>${esc(key(k))}</code>`).join(', ')}</p>`,
    );
  if (t.converged)
    out.push(
      `<p class="note">${plural(t.converged, 'key')} differed at first and matched when read again after the lag grace (<code>verify.lagGrace</code>): the target caught up.</p>`,
    );
  if (t.sourceOutside.count !== '0')
    out.push(
      `<p>${plural(Number(t.sourceOutside.count), 'source row')} arrived outside the planned ranges (sample): ${t.sourceOutside.keys.map((k) => `<code>${esc(key(k))}</code>`).join(', ')}</p>`,
    );
  return out.join('\n');
}

/** Value counts per distribution column, side by side. */
function distributions(t: TableReport): string {
  const s = t.totals.source;
  const d = t.totals.target;
  const out: string[] = [];
  for (const [col, values] of Object.entries(s?.distribution ?? {})) {
    const theirs = d?.distribution[col] ?? {};
    const all = [...new Set([...Object.keys(values), ...Object.keys(theirs)])].sort();
    const shown = all.slice(0, 50);
    out.push(
      `<table class="distribution"><caption>distribution of ${esc(col)}${all.length > shown.length ? ` (first ${shown.length} of ${fmt(all.length)} values)` : ''}</caption>`,
      '<thead><tr><th scope="col">value</th><th scope="col">source</th><th scope="col">target</th></tr></thead><tbody>',
      ...shown.map(
        (v) =>
          `<tr${(values[v] ?? '0') === (theirs[v] ?? '0') ? '' : ' class="bad"'}><th scope="row">${esc(v)}</th><td>${fmt(values[v] ?? 0)}</td><td>${fmt(theirs[v] ?? 0)}</td></tr>`,
      ),
      '</tbody></table>',
    );
  }
  return out.join('\n');
}

const KEY_KINDS: [keyof RangeReport['keys'], string, 'missing' | 'extra' | 'changed' | 'duplicates'][] = [
  ['missing', 'missing in the target', 'missing'],
  ['extra', 'extra in the target', 'extra'],
  ['changed', 'changed', 'changed'],
  ['duplicates', 'duplicated', 'duplicates'],
];

function rangeDetail(ti: number, r: RangeReport): string {
  const n = (v: number | null) => (v === null ? '?' : fmt(v));
  const side = (x: { count: string; checksum: string } | null) => (x ? `${fmt(x.count)} rows, checksum <code>${esc(x.checksum)}</code>` : '–');
  const rows = [
    `<tr><th scope="row">failed checks</th><td>${esc(r.failedChecks.join(', ') || '–')}</td></tr>`,
    `<tr><th scope="row">source</th><td>${side(r.source)}</td></tr>`,
    `<tr><th scope="row">target</th><td>${side(r.target)}</td></tr>`,
    `<tr><th scope="row">located</th><td>${n(r.missing)} missing, ${n(r.extra)} extra, ${n(r.changed)} changed, ${n(r.duplicates)} duplicated</td></tr>`,
  ];
  if (r.converged) rows.push(`<tr><th scope="row">converged</th><td>${plural(r.converged, 'key')} matched when read again after the lag grace</td></tr>`);
  const cols = Object.entries(r.changedColumns);
  if (cols.length) rows.push(`<tr><th scope="row">columns that differ</th><td>${cols.map(([c, k]) => `${esc(c)} (${fmt(k)})`).join(', ')}</td></tr>`);
  const out = [
    `<article class="range" id="${anchor(ti, r.index)}" data-index="${r.index}" data-status="${esc(r.status)}">`,
    `<h4>Range ${r.index} <code>${esc(bounds(r))}</code>: <span class="bad">${esc(r.status)}</span> after ${plural(r.attempts, 'attempt')}</h4>`,
    // What and how to rerun first, the figures beside them.
    '<div class="range-body"><div class="range-what">',
  ];
  if (r.refused)
    out.push(
      `<p class="bad">The target refused a row${r.refused.constraint ? ` (constraint <code>${esc(r.refused.constraint)}</code>)` : ''}${r.refused.key ? `, key <code>${esc(key(r.refused.key))}</code>` : ''}: ${esc(r.refused.message)}. Fix the target, then rerun.</p>`,
    );
  const located = KEY_KINDS.filter(([k]) => r.keys[k].length);
  if (located.length) {
    out.push('<h5>Located keys</h5><ul class="keys">');
    for (const [k, label, count] of located) {
      const total = r[count];
      const more =
        total !== null && total > r.keys[k].length
          ? ` <span class="note">(the first ${fmt(r.keys[k].length)} of ${fmt(total)}; backfill.differences has all)</span>`
          : '';
      out.push(`<li data-kind="${k}">${esc(label)}: ${r.keys[k].map((x) => `<code class="key">${esc(key(x))}</code>`).join(', ')}${more}</li>`);
    }
    out.push('</ul>');
  } else if (!r.refused) out.push('<p class="note">No keys located yet.</p>');
  out.push(
    `<h5>Rerun only this range</h5><pre class="rerun"><code>${esc(r.rerun)}</code></pre>`,
    '</div>',
    `<table class="kv"><tbody>${rows.join('')}</tbody></table>`,
    '</div>',
    '</article>',
  );
  return out.join('\n');
}

function tableSection(ti: number, t: TableReport, r: Report): string {
  const s = t.rangeSummary;
  const bad = t.ranges.filter((x) => x.status !== 'verified');
  const out = [
    `<section class="table" id="t${ti}">`,
    `<h2>${esc(t.source)} → ${esc(t.target)}</h2>`,
    totals(t),
    `<h3>Ranges: ${fmt(s.total)} planned, ${fmt(s.verified)} verified, <span${s.failed ? ' class="bad"' : ''}>${fmt(s.failed)} not proven</span>, ${fmt(s.pending)} pending</h3>`,
    strip(ti, t, r.migration),
  ];
  if (t.columns?.length)
    out.push(
      `<details class="columns"><summary>Columns: ${esc(summariseColumns(t.columns))} (covered by the digest)</summary><ul>${t.columns.map((c) => `<li>${esc(describeColumn(c))}</li>`).join('')}</ul></details>`,
    );
  if (bad.length) {
    out.push('<h3>Ranges that are not proven</h3>');
    if (bad.length > 1) {
      const all = `backfill rerun ${shellWord(r.migration)} --table ${shellWord(t.source)} --range ${bad.map((x) => x.index).join(' ')}`;
      out.push(`<h5>Rerun all ${fmt(bad.length)} of them</h5><pre class="rerun"><code>${esc(all)}</code></pre>`);
    }
    if (s.failed > bad.filter((x) => FAILED_STATUSES.has(x.status)).length)
      out.push(`<p class="note">The report lists the first ${fmt(bad.length)}; backfill.ranges has every one.</p>`);
    out.push(...bad.map((x) => rangeDetail(ti, x)));
  }
  out.push('</section>');
  return out.join('\n');
}

/** Why the verdict is what it is, in a few lines a person reads first. */
function findings(r: Report): string[] {
  const out: string[] = [];
  if (!r.complete) out.push('The evidence is not complete yet: the ranges are still being proven.');
  r.tables.forEach((t, ti) => {
    const name = esc(t.source);
    const bad = t.ranges.filter((x) => x.status !== 'verified');
    if (t.rangeSummary.failed)
      out.push(
        `${name}: ${plural(t.rangeSummary.failed, 'range')} not proven (${bad
          .slice(0, 10)
          .map((x) => `<a href="#${anchor(ti, x.index)}">range ${x.index}</a>`)
          .join(', ')}${bad.length > 10 ? ', …' : ''}).`,
      );
    if (t.rangeSummary.pending && r.complete) out.push(`${name}: ${plural(t.rangeSummary.pending, 'range')} not proven yet (pending).`);
    if (r.complete && !r.live && t.totals.source && !t.totals.match)
      out.push(`${name}: the whole-table totals disagree${t.totals.failedChecks.length ? ` (${esc(t.totals.failedChecks.join(', '))})` : ''}.`);
    if (r.complete && t.totals.source && !t.totals.sumOfRanges.match) out.push(`${name}: the ranges do not add up to the table.`);
    if (t.outside.count !== t.sourceOutside.count) out.push(`${name}: ${plural(Number(t.outside.count), 'target row')} outside every planned range.`);
  });
  for (const c of r.constraints ?? [])
    if (c.wasValid && !c.valid && c.state === 'restored')
      out.push(`Constraint ${esc(c.name)} on ${esc(c.owner)} does not hold: ${esc(c.detail ?? 'not valid')}.`);
  return out;
}

const ACTIONS: Record<string, string> = {
  approve: 'approved',
  'approve-refused': 'approval refused',
  reject: 'rejected',
  'reject-refused': 'rejection refused',
  'approval-void': 'approval void',
  freeze: 'source frozen',
  unfreeze: 'source unfrozen',
  abort: 'aborted',
  switch: 'authority switched',
};

function auditSection(r: Report, trail: AuditRecord[]): string {
  const out = ['<section id="audit">', '<h2>Audit trail</h2>'];
  if (!trail.length) out.push('<p>Nothing recorded yet: no approval, rejection, refused attempt, freeze, abort or switch.</p>');
  else {
    out.push(
      '<table class="audit"><thead><tr><th scope="col">when (UTC)</th><th scope="col">what</th><th scope="col">who</th><th scope="col">digest</th><th scope="col">note</th></tr></thead><tbody>',
      ...trail.map(
        (e) =>
          `<tr data-action="${esc(e.action)}"${/refused|void|abort|reject/.test(e.action) ? ' class="bad"' : ''}><td>${esc(e.at)}</td><td>${esc(ACTIONS[e.action] ?? e.action)}</td><td>${esc(e.actor ?? '–')}</td><td><code>${esc(e.digest ?? '–')}</code></td><td>${esc(e.note ?? '')}</td></tr>`,
      ),
      '</tbody></table>',
    );
  }
  const total = r.audit?.total ?? 0;
  const kept = r.audit?.entries.length ?? 0;
  if (total > kept) out.push(`<p class="note">The report carries the latest ${fmt(kept)} of ${fmt(total)} entries; backfill.audit has them all.</p>`);
  out.push('</section>');
  return out.join('\n');
}

function constraintsSection(r: Report): string {
  if (!r.constraints?.length) return '';
  return [
    '<section id="constraints"><h2>Foreign keys set aside</h2>',
    '<table><thead><tr><th scope="col">table</th><th scope="col">constraint</th><th scope="col">references</th><th scope="col">state</th><th scope="col">valid</th><th scope="col">detail</th></tr></thead><tbody>',
    ...r.constraints.map(
      (c) =>
        `<tr${c.wasValid && !c.valid && c.state === 'restored' ? ' class="bad"' : ''}><td>${esc(c.owner)}</td><td>${esc(c.name)}</td><td>${esc(c.referenced)}</td><td>${esc(c.state)}</td><td>${c.valid ? 'yes' : 'no'}</td><td>${esc(c.detail ?? '')}</td></tr>`,
    ),
    '</tbody></table></section>',
  ].join('\n');
}

const CSS = `
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1a1a1a; margin: 0 auto; padding: 0 24px 40px; max-width: 1180px; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
header.verdict { margin: 0 -24px 14px; padding: 14px 24px; color: #fff; }
header.verdict.red { background: #b71c1c; }
header.verdict.green { background: #1b5e20; }
header.verdict h1 { margin: 0 0 6px; font-size: 26px; }
header.verdict p { margin: 4px 0; }
header.verdict .digest { font-size: 17px; background: rgba(255,255,255,.15); padding: 2px 6px; border-radius: 3px; word-break: break-all; }
header.verdict ul { margin: 8px 0 0; padding-left: 20px; }
header.verdict a { color: #fff; }
h2 { margin: 18px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #ddd; font-size: 20px; }
h3 { margin: 14px 0 6px; font-size: 16px; }
h4 { margin: 0 0 8px; font-size: 15px; }
h5 { margin: 8px 0 4px; font-size: 14px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
thead th { background: #f3f3f3; }
td code { word-break: break-all; }
div.figures { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 0 24px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
.totals td:nth-child(2), .totals td:nth-child(3), .distribution td { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1b5e20; }
.bad, td.bad { color: #b71c1c; }
tr.bad td, tr.bad th { color: #b71c1c; }
.note { color: #555; font-size: 13px; }
ul.legend { list-style: none; padding: 0; margin: 6px 0; display: flex; flex-wrap: wrap; gap: 4px 18px; font-size: 13px; }
ul.legend svg { vertical-align: -1px; }
svg.strip { display: block; overflow: visible; max-width: 100%; height: auto; margin: 6px 0 12px; }
article.range { border: 1px solid #e0b4b4; border-left: 5px solid #c62828; background: #fff8f8; padding: 10px 14px; margin: 10px 0; }
pre.rerun { display: table; max-width: 100%; box-sizing: border-box; background: #263238; color: #eceff1; padding: 8px 12px; margin: 4px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
ul.keys { margin: 0; padding-left: 20px; }
div.range-body { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 0 28px; }
div.range-what { flex: 1 1 420px; min-width: 0; }
table.kv { margin-top: 0; }
code.key { background: #fde0e0; padding: 0 3px; }
footer { margin-top: 32px; color: #555; font-size: 13px; border-top: 1px solid #ddd; padding-top: 8px; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  header.verdict, svg, code.key, pre.rerun { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  header.verdict { margin: 0 0 12pt; }
  article.range, table { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}`;

export interface HtmlOptions {
  /** where the report was read: the workflow (Temporal) or the ledger, after Temporal's retention */
  from?: 'temporal' | 'ledger';
}

export function renderHtml(r: Report, o: HtmlOptions = {}): string {
  const ending = endingOf(r);
  // A migration that stopped is never green: the banner is red and says how it ended.
  const verdict = r.verdict === 'green' && !ending ? 'green' : 'red';
  const word = ending ? ending.phase.toUpperCase() : verdict.toUpperCase();
  const ranges = r.tables.reduce(
    (a, t) => ({
      total: a.total + t.rangeSummary.total,
      verified: a.verified + t.rangeSummary.verified,
      failed: a.failed + t.rangeSummary.failed,
      pending: a.pending + t.rangeSummary.pending,
    }),
    { total: 0, verified: 0, failed: 0, pending: 0 },
  );
  const rows = r.tables.reduce((a, t) => a + (/^\d+$/.test(t.totals.source?.count ?? '') ? BigInt(t.totals.source!.count) : 0n), 0n);
  const why = findings(r);
  const trail = auditTrail(r);
  const head = [
    `<header class="verdict ${verdict}" id="verdict">`,
    `<h1>Migration ${esc(r.migration)}: <span class="verdict-word">${word}</span></h1>`,
    ...(ending
      ? [
          `<p class="ending" id="ending"><strong>${esc(verdictLine(r))}</strong>. Nothing was switched; the evidence below is as it stood when the migration stopped.</p>`,
        ]
      : []),
    `<p>Phase <strong>${esc(r.phase)}</strong>${o.from === 'ledger' ? ' (as the ledger knows it)' : ''}. Generated ${esc(r.generatedAt)}.${r.switchedAt ? ` Authority switched at ${esc(r.switchedAt)}.` : ''}</p>`,
    `<p>Digest: ${r.digest ? `<code class="digest" id="digest">${esc(r.digest)}</code>` : 'none yet'}</p>`,
    `<p>${plural(r.tables.length, 'table')}, ${fmt(rows.toString())} source rows; ${plural(ranges.total, 'range')}: ${fmt(ranges.verified)} verified, ${fmt(ranges.failed)} not proven, ${fmt(ranges.pending)} pending.</p>`,
  ];
  if (why.length) head.push(`<ul class="findings">${why.map((w) => `<li>${w}</li>`).join('')}</ul>`);
  else if (verdict === 'green') head.push('<p>Every range is proven, and the totals agree with each other and with the sum of the ranges.</p>');
  if (r.phase === 'awaiting_approval' && r.digest && !ending)
    head.push(`<p>To approve exactly this evidence: <code>${esc(`backfill approve ${shellWord(r.migration)} --as <you> --digest ${r.digest}`)}</code></p>`);
  head.push('</header>');
  const body: string[] = [];
  if (r.live && !r.capture)
    body.push('<p class="note">The source was still taking writes: every range is proven; the totals are proven by the final check, after the freeze.</p>');
  if (r.capture) body.push(`<p>${esc(captureEvidence(r.capture))}</p>`);
  else if (r.delta.watermark !== null)
    body.push(
      `<p>Catch-up: watermark <code>${esc(r.delta.watermark)}</code>; ${fmt(r.delta.rowsApplied)} rows applied; ${fmt(r.delta.remaining)} in the last round.</p>`,
    );
  if (r.resume) body.push(`<p class="note">${esc(resumeEvidence(r.resume))}</p>`);
  if (r.tables.length > 1)
    body.push(
      `<nav><h2>Tables</h2><ol>${r.tables.map((t, i) => `<li><a href="#t${i}">${esc(t.source)} → ${esc(t.target)}</a>${t.rangeSummary.failed ? ` <span class="bad">(${plural(t.rangeSummary.failed, 'range')} not proven)</span>` : ''}</li>`).join('')}</ol></nav>`,
    );
  body.push(...r.tables.map((t, i) => tableSection(i, t, r)), constraintsSection(r), auditSection(r, trail));
  const digest = r.digest ? `, digest <code>${esc(r.digest)}</code>` : '';
  const footer =
    o.from === 'ledger'
      ? `<footer>Rendered from the report of migration ${esc(r.migration)}${digest} kept in the ledger (<code>backfill.reports</code>), with the audit as <code>backfill.audit</code> has it now.</footer>`
      : `<footer>Rendered from the report of migration ${esc(r.migration)}${digest}. The ledger keeps this report (<code>backfill.reports</code>), so the same page can be made from it again.</footer>`;
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    // No script may run, no asset may load: the page is only what it says.
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>backfill ${esc(r.migration)}: ${word}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    ...head,
    '<main>',
    ...body.filter(Boolean),
    '</main>',
    footer,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

// One table's section of the HTML report: its whole-table figures (totals and distributions), its
// strip, its columns, and each range that is not proven with its located keys and rerun command.
import { describeColumn, summariseColumns } from '../domain/columns';
import { FAILED_STATUSES, shellWord, type RangeReport, type Report, type TableReport } from '../domain/report';
import { anchor, bounds, esc, fmt, key, plural } from './html-text';
import { strip } from './html-strip';

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

export function tableSection(ti: number, t: TableReport, r: Report): string {
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

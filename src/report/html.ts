// The report as one self-contained HTML page, for people: the verdict and its digest, the totals,
// a strip of every range coloured by its status, each range that is not proven with its located keys
// and the command that reruns it, and the audit trail. Pure: report in, string out. No external
// asset and no script; every value from the report is escaped (table names and key values can hold
// `<`, `&` and quotes), and the page's own policy forbids scripts should anything slip through. The
// colours of the strip are SVG attributes and every status is also written in words, so the page
// reads (and prints) without the stylesheet's help.
import { auditTrail, endingOf, shellWord, verdictLine, type AuditRecord, type Report } from '../domain/report';
import { captureEvidence, resumeEvidence } from './render';
import { anchor, esc, fmt, plural } from './html-text';
import { tableSection } from './html-table';
import { CSS } from './html-style';
import { reverseLines } from '../domain/reverse-report';

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
  // Where a freeze ran (the source, or the target at a switch back) is in its note.
  freeze: 'writes frozen',
  unfreeze: 'writes allowed again',
  abort: 'aborted',
  switch: 'authority switched',
  'open-way-back': 'the way back opened',
  'approve-switch-back': 'switch back approved',
  'switch-back-refused': 'switch back refused',
  'switch-back': 'authority switched back',
  finish: 'the way back finished',
};

/** The way back (`cutover.reverse`), when it opened. */
function reverseSection(r: Report): string {
  if (!r.reverse) return '';
  const md = (l: string) => esc(l).replace(/`([^`]*)`/g, '<code>$1</code>');
  return ['<section id="reverse">', '<h2>The way back</h2>', ...reverseLines(r.reverse).map((l) => `<p>${md(l)}</p>`), '</section>'].join('\n');
}

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
          `<p class="ending" id="ending"><strong>${esc(verdictLine(r))}</strong>. ${
            r.switchedAt
              ? `Authority was switched at ${esc(r.switchedAt)} and stays on the target${r.reverse ? '; the way back ended with the migration, so the source no longer follows it' : ''}.`
              : 'Nothing was switched; the evidence below is as it stood when the migration stopped.'
          }</p>`,
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
  body.push(...r.tables.map((t, i) => tableSection(i, t, r)), constraintsSection(r), reverseSection(r), auditSection(r, trail));
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

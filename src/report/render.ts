// Rendering the report and the progress for people. Pure functions.
import type { SessionUse } from '../domain/range-lifecycle';
import { waitingLine } from '../domain/waits';
import { auditTrail, endingOf, verdictLine, type Report, type TableReport } from '../domain/report';
import { describeColumn, summariseColumns } from '../domain/columns';
import type { CaptureProgress, Progress, ReverseProgress } from '../workflows/messages';
import type { ResumeSummary } from '../domain/resume';
import { reverseLines } from '../domain/reverse-report';

const fmt = (n: number | string) => Number(n).toLocaleString('en-US');

function tableSection(t: TableReport): string[] {
  const s = t.totals.source;
  const d = t.totals.target;
  const out = [
    `### ${t.source} → ${t.target}`,
    '',
    '| check | source | target | match |',
    '|---|---|---|---|',
    `| rows | ${s ? fmt(s.count) : '–'} | ${d ? fmt(d.count) : '–'} | ${s && d ? (s.count === d.count ? 'yes' : '**no**') : '–'} |`,
    `| checksum | ${s?.checksum ?? '–'} | ${d?.checksum ?? '–'} | ${s && d ? (s.checksum === d.checksum ? 'yes' : '**no**') : '–'} |`,
    `| sum of ranges | ${fmt(t.totals.sumOfRanges.source)} | ${fmt(t.totals.sumOfRanges.target)} | ${t.totals.sumOfRanges.match ? 'yes' : '**no**'} |`,
    // Rows beyond the plan (inserted since) are fine when both sides have the same ones (isGreen).
    `| rows outside every range | ${fmt(t.sourceOutside.count)} | ${fmt(t.outside.count)} | ${t.outside.count === t.sourceOutside.count ? 'yes' : '**no**'} |`,
    '',
    `Ranges: ${fmt(t.rangeSummary.total)} planned, ${fmt(t.rangeSummary.verified)} verified, ${fmt(t.rangeSummary.failed)} failed, ${fmt(t.rangeSummary.pending)} pending.`,
  ];
  if (t.columns?.length)
    out.push('', `Columns (${summariseColumns(t.columns)}; covered by the digest):`, '', ...t.columns.map((c) => `- ${describeColumn(c)}`));
  if (t.outside.count !== '0') out.push('', `Target keys outside every planned range (sample): ${t.outside.keys.map((k) => JSON.stringify(k)).join(', ')}`);
  if (t.sourceOutside.count !== '0')
    out.push(
      '',
      `${fmt(t.sourceOutside.count)} source rows arrived outside the planned ranges (sample): ${t.sourceOutside.keys.map((k) => JSON.stringify(k)).join(', ')}`,
    );
  if (t.totals.failedChecks.length) out.push('', `Global checks that disagree: ${t.totals.failedChecks.join(', ')}.`);
  if (t.converged)
    out.push('', `${fmt(t.converged)} key(s) differed at first and matched when read again after the lag grace (\`verify.lagGrace\`): the target caught up.`);
  const aggregates = Object.keys(s?.aggregates ?? {});
  if (aggregates.length) {
    out.push('', '| aggregate | source | target |', '|---|---|---|');
    for (const a of aggregates) out.push(`| ${a} | ${s?.aggregates[a] ?? 'NULL'} | ${d?.aggregates[a] ?? 'NULL'} |`);
  }
  for (const [col, values] of Object.entries(s?.distribution ?? {})) {
    const all = [...new Set([...Object.keys(values), ...Object.keys(d?.distribution[col] ?? {})])].sort().slice(0, 50);
    out.push('', `| ${col} | source | target |`, '|---|---|---|');
    for (const v of all) out.push(`| ${v} | ${fmt(values[v] ?? 0)} | ${fmt(d?.distribution[col]?.[v] ?? 0)} |`);
  }
  const bad = t.ranges.filter((r) => r.status !== 'verified');
  if (bad.length) {
    out.push('', '#### Ranges that are not proven', '');
    for (const r of bad) {
      const counts = [`${r.missing ?? '?'} missing`, `${r.extra ?? '?'} extra`, `${r.changed ?? '?'} changed`, `${r.duplicates ?? '?'} duplicated`].join(', ');
      out.push(
        `- **range ${r.index}** \`[${r.lo}, ${r.hi || '∞'})\`: ${r.status} after ${r.attempts} attempt(s); failed checks: ${r.failedChecks.join(', ') || '–'}; ${counts}`,
      );
      if (r.refused)
        out.push(
          `  - the target refused a row${r.refused.constraint ? ` (constraint ${r.refused.constraint})` : ''}${r.refused.key ? `, key ${JSON.stringify(r.refused.key)}` : ''}: ${r.refused.message}; fix the target, then rerun`,
        );
      const keys = (label: string, ks: string[][]) => ks.length && out.push(`  - ${label}: ${ks.map((k) => JSON.stringify(k)).join(', ')}`);
      keys('missing in the target', r.keys.missing);
      keys('extra in the target', r.keys.extra);
      keys('changed', r.keys.changed);
      keys('duplicated', r.keys.duplicates);
      const cols = Object.entries(r.changedColumns);
      if (cols.length) out.push(`  - columns that differ: ${cols.map(([c, n]) => `${c} (${n})`).join(', ')}`);
      out.push(`  - rerun: \`${r.rerun}\``);
    }
  }
  return out;
}

/** A cell of a Markdown table: its pipes escaped, on one line. */
const cell = (v: string) => v.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');

/** The foreign keys set aside while ranges were written: where each stands, and the rows that break one. */
function constraintsSection(cs: NonNullable<Report['constraints']>): string[] {
  return [
    '## Foreign keys set aside',
    '',
    '| table | constraint | references | state | valid | detail |',
    '|---|---|---|---|---|---|',
    ...cs.map((c) => `| ${cell(c.owner)} | ${cell(c.name)} | ${cell(c.referenced)} | ${c.state} | ${c.valid ? 'yes' : 'no'} | ${cell(c.detail ?? '')} |`),
  ];
}

export function renderMarkdown(r: Report): string {
  const ending = endingOf(r);
  const lines = [`# Migration ${r.migration}: ${ending ? ending.phase.toUpperCase() : r.verdict.toUpperCase()}`, ''];
  // A migration that stopped reads as its ending first; the evidence below is as it stood then.
  if (ending)
    lines.push(
      `**${verdictLine(r)}**`,
      '',
      r.switchedAt
        ? `Authority was switched at ${r.switchedAt} and stays on the target${r.reverse ? '; the way back ended with the migration, so the source no longer follows it' : ''}. The audit trail says who did what.`
        : `Nothing was switched. The evidence below is as it stood when the migration stopped; the audit trail says who did what.`,
      '',
    );
  lines.push(
    `Phase: ${r.phase}. Generated ${r.generatedAt}.${r.complete ? '' : ' The evidence is not complete yet.'}`,
    r.digest ? `Digest: \`${r.digest}\`${ending ? ' (no longer awaiting approval)' : ''}` : 'Digest: none yet',
    '',
  );
  if (r.capture) lines.push(captureEvidence(r.capture), '');
  else if (r.delta.watermark !== null)
    lines.push(`Catch-up: watermark ${r.delta.watermark}; ${fmt(r.delta.rowsApplied)} rows applied; ${fmt(r.delta.remaining)} in the last round.`, '');
  if (r.live && !r.capture)
    lines.push('The source was still taking writes: every range is proven; the totals are proven by the final check, after the freeze.', '');
  if (r.resume) lines.push(resumeEvidence(r.resume), '');
  for (const t of r.tables) lines.push(...tableSection(t), '');
  if (r.constraints?.length) lines.push(...constraintsSection(r.constraints), '');
  if (r.reverse) lines.push('## The way back', '', ...reverseLines(r.reverse).flatMap((l) => [l, '']));
  const trail = auditTrail(r);
  if (!trail.length) lines.push('## Audit trail', '', 'Nothing recorded yet: no approval, rejection, refused attempt, freeze, abort or switch.', '');
  else {
    // Approvals, rejections, refused attempts, freeze, switch: the ledger's audit as of the report.
    lines.push('## Audit trail', '');
    for (const e of trail)
      lines.push(`- ${e.at} ${e.action}${e.actor ? ` by ${e.actor}` : ''}${e.digest ? ` (digest \`${e.digest}\`)` : ''}${e.note ? `: ${e.note}` : ''}`);
    if ((r.audit?.total ?? 0) > (r.audit?.entries.length ?? 0))
      lines.push(`- … the latest ${r.audit!.entries.length} of ${r.audit!.total} entries; backfill.audit has them all`);
    lines.push('');
  }
  if (r.switchedAt) lines.push(`Authority switched at ${r.switchedAt}.`, '');
  return lines.join('\n');
}

/** What `backfill approve` shows before it asks: the verdict, the digest, and each table in a line. */
export function approvalSummary(r: Report): string {
  const lines = [`${r.migration}: ${verdictLine(r)}, phase ${r.phase}; digest presented for approval: ${r.digest || 'none'}`];
  for (const t of r.tables) {
    const s = t.totals.source;
    const d = t.totals.target;
    const rows =
      s && d ? `; rows ${fmt(s.count)} in the source, ${fmt(d.count)} in the target${t.totals.match ? ', totals match' : ', totals **differ**'}` : '';
    lines.push(
      `  ${t.source} → ${t.target}: ${fmt(t.rangeSummary.verified)}/${fmt(t.rangeSummary.total)} ranges verified, ${fmt(t.rangeSummary.failed)} failed${rows}`,
    );
  }
  lines.push(`  the whole report: backfill report ${r.migration}`);
  return lines.join('\n');
}

/**
 * A table's rows copied, with the re-copies apart (ranges copied again: further attempts at a
 * mismatched range, reruns, repairs), so the figure is not read as rows of the table:
 * `200,000 rows copied (+260,000 re-copied)` with `noun` ' rows copied'.
 */
export function copiedRows(t: { rowsCopied: number; rowsRecopied?: number }, noun: string): string {
  const again = t.rowsRecopied ?? 0;
  return `${fmt(t.rowsCopied - again)}${noun}${again ? ` (+${fmt(again)} re-copied)` : ''}`;
}

/** Where workers cap our sessions: the caps, and how long ranges waited for one. */
function sessionsLine(s: SessionUse): string {
  const caps = Object.entries(s.caps)
    .map(([alias, n]) => `${alias} ${n}`)
    .join(', ');
  return `sessions capped per database (BACKFILL_SESSIONS): ${caps}; ranges waited ${(s.waitedMs / 1000).toFixed(1)} s for one in all`;
}

export function renderProgress(p: Progress): string {
  const lines = [`${p.migration}: ${p.phase}${p.paused ? ' (paused)' : ''}${p.detail ? ` – ${p.detail}` : ''}`];
  for (const w of p.waiting ?? []) lines.push(`  waiting: ${waitingLine(w, Date.now())}`);
  for (const t of p.tables) {
    const r = t.ranges;
    lines.push(
      `  ${t.source} → ${t.target}: ${fmt(r.verified)}/${fmt(r.total)} ranges verified, ${fmt(r.inFlight)} in flight, ${fmt(r.failed)} failed, ${copiedRows(t, ' rows copied')}`,
    );
  }
  if (p.workers && p.phase === 'backfilling') lines.push(`  the latest ranges ran on ${p.workers} worker${p.workers === 1 ? '' : 's'}`);
  if (p.sessions) lines.push(`  ${sessionsLine(p.sessions)}`);
  // Switched: the way back is what moves now (the forward stream stopped at the switch).
  if (p.reverse) lines.push(`  ${reverseLine(p.reverse)}`);
  else if (p.capture) lines.push(`  ${captureLine(p.capture)}`);
  else if (p.delta)
    lines.push(
      `  catch-up: watermark ${p.delta.watermark ?? '–'}, ${fmt(p.delta.rowsApplied)} rows applied, ${fmt(p.delta.remaining)} remaining in the last round`,
    );
  if (p.resume) lines.push(`  ${resumeLine(p.resume)}`);
  if (p.digest) lines.push(`  awaiting approval of digest ${p.digest}${p.attention ? ` (${p.attention})` : ''}`);
  if (p.finalWindow)
    lines.push(
      `  last final check: ${fmt(p.finalWindow.rows)} rows in the final window, ${(p.finalWindow.ms / 1000).toFixed(1)} s from freeze to verdict${p.finalWindow.proof ? `; ${p.finalWindow.proof}` : ''}`,
    );
  return lines.join('\n');
}

/** A migration started again after an earlier run: the sentence, then what each table reused and copied. */
export function resumeEvidence(r: ResumeSummary): string {
  const tables = r.tables.map(
    (t) =>
      `${t.source} → ${t.target}: ${fmt(t.reused)} of the ${fmt(t.reusable)} range(s) the earlier run verified were verified again without a copy` +
      `${t.differed ? `, ${fmt(t.differed)} differed and were copied again` : ''}; ${fmt(t.copied)} range(s) copied`,
  );
  return `Started again: ${r.note}. ${tables.join('. ')}.`;
}

/** The same in one line of progress: ranges reused and copied so far, over every table. */
function resumeLine(r: ResumeSummary): string {
  const sum = (k: 'reusable' | 'reused' | 'differed' | 'copied') => fmt(r.tables.reduce((a, t) => a + t[k], 0));
  return `started again: ${sum('reused')} of ${sum('reusable')} range(s) the earlier run verified reused without a copy, ${sum('differed')} differed; ${sum('copied')} range(s) copied`;
}

/** Change capture in one line: what was applied, how far behind, the checkpoint the evidence is at. */
export function captureLine(c: CaptureProgress): string {
  return `change capture: ${fmt(c.transactions)} transaction(s), ${fmt(c.rows)} row(s) applied up to ${c.appliedLsn ?? '–'}; ${captureLag(c)}; checkpoint ${c.checkpoint ?? '–'}`;
}

/** The way back (phase switched), on one line: what went back to the source, its lag, since when. */
export function reverseLine(r: ReverseProgress): string {
  const keep = r.keepUntil ? `; finishes by itself at ${r.keepUntil}` : '';
  const digest = r.digest ? `; switch back approves digest ${r.digest}` : '';
  const red = r.red ? `; the last switch back was red: ${r.red}` : '';
  return `the way back (target → source): ${fmt(r.transactions)} transaction(s), ${fmt(r.rows)} row(s) applied up to ${r.appliedLsn ?? '–'}; ${captureLag(r)}; since the switch at ${r.since ?? '–'}${keep}${digest}${red}`;
}

/** What change capture's evidence rests on, in the report's words. */
export function captureEvidence(c: NonNullable<Report['capture']>): string {
  return (
    `Change capture (logical replication): the evidence is the source at checkpoint ${c.checkpoint ?? '–'}, every range compared there while writes went on; ` +
    `${fmt(c.transactions)} source transaction(s), ${fmt(c.rows)} row(s) applied up to ${c.appliedLsn ?? '–'}; ${captureLag(c)} when this was built.`
  );
}

/** How far the target is behind the source: `lag 0.4 s, 12,345 bytes` (MB above one). */
export function captureLag(c: Pick<CaptureProgress, 'lagSeconds' | 'lagBytes'>): string {
  const mb = Number(c.lagBytes) / (1024 * 1024);
  return `lag ${c.lagSeconds.toFixed(1)} s, ${mb >= 1 ? `${mb.toFixed(1)} MB` : `${fmt(Number(c.lagBytes))} bytes`}`;
}

/**
 * What a person does at the gate, for the CLI: the same steps Current Details shows in the UI. Each
 * command on a line of its own, so that a narrow terminal wraps it whole (the digest never cut).
 */
export function gateInstructions(p: Progress): string {
  if (p.phase !== 'awaiting_approval' || !p.digest) return '';
  const who = p.approvers?.length ? p.approvers.join(', ') : 'anyone';
  return [
    `${p.migration} awaits approval of digest ${p.digest}; who may approve: ${who}.${p.attention ? ` ${p.attention}.` : ''}`,
    '  read the evidence:',
    `    backfill report ${p.migration}`,
    '  approve that digest:',
    `    backfill approve ${p.migration} --as <you> --digest ${p.digest}`,
    '  or reject it:',
    `    backfill reject ${p.migration} --as <you> --reason <why>`,
    '  in the Temporal UI: Send an Update "approveCutover" with',
    '    {"approver": "<you>", "digest": "<the digest you read>"}',
  ].join('\n');
}

// The report: what is wrong, where, and how to rerun only that slice. Pure functions only, so the
// workflow, the activities and the CLI all build and read it the same way (the digest, which needs
// a hash function, is in digest.ts).
import type { FailedRange, Refusal } from './range-lifecycle';
import type { ResumeSummary } from './resume';
import { columnPlanText, type ColumnPlanEntry } from './columns';

export interface SideTotals {
  count: string;
  checksum: string;
  aggregates: Record<string, string | null>;
  distribution: Record<string, Record<string, string>>;
  /** keys that occur more than once (checked where no unique index rules it out) */
  duplicates?: number;
}

export interface RangeKeys {
  missing: string[][];
  extra: string[][];
  changed: string[][];
  duplicates: string[][];
}

export interface RangeReport {
  index: number;
  lo: string;
  hi: string;
  status: string;
  attempts: number;
  source: { count: string; checksum: string } | null;
  target: { count: string; checksum: string } | null;
  missing: number | null;
  extra: number | null;
  /** null: the range differs but its changed rows have not been located */
  changed: number | null;
  duplicates: number | null;
  keys: RangeKeys;
  /** the checks that failed: count, checksum, sum(amount), distribution(status), duplicates */
  failedChecks: string[];
  /** for changed rows: column -> number of rows in which it differs */
  changedColumns: Record<string, number>;
  /** the target refused a row of this range: fix the target, then rerun */
  refused?: Refusal;
  /** keys that differed at first and matched when read again after verify.lagGrace */
  converged?: number;
  rerun: string;
}

export interface TableReport {
  source: string;
  target: string;
  /** what becomes of every source and target column; covered by the digest */
  columns?: ColumnPlanEntry[];
  totals: {
    source: SideTotals | null;
    target: SideTotals | null;
    match: boolean;
    failedChecks: string[];
    sumOfRanges: { source: string; target: string; match: boolean };
  };
  ranges: RangeReport[];
  rangeSummary: { total: number; verified: number; failed: number; pending: number; shown: number };
  /** target rows outside every planned range */
  outside: { count: string; keys: string[][] };
  /** source rows outside every planned range (they arrived after planning: catch-up's work) */
  sourceOutside: { count: string; keys: string[][] };
  /** keys that differed at first and matched after verify.lagGrace (a lagging replica), all ranges */
  converged?: number;
}

export interface Approval {
  approver: string;
  digest: string;
  comment?: string;
  approvedAt: string;
}

/** A foreign key set aside while ranges were written (see activities/constraints.ts). */
export interface ConstraintReport {
  /** the tables, quoted part by part */
  owner: string;
  name: string;
  referenced: string;
  /** set-aside: dropped, its definition kept in the ledger; restored: present again */
  state: 'set-aside' | 'restored';
  /** validated now; false after a restore: the rows break it (see detail), or it was NOT VALID before */
  valid: boolean;
  /** it was validated before the migration: it must be again */
  wasValid: boolean;
  /** the rows that break it, in the database's words */
  detail: string | null;
}

/** One entry of the ledger's append-only audit (backfill.audit), as a report carries it. */
export interface AuditRecord {
  /** ISO 8601, UTC */
  at: string;
  /** approve, approve-refused, reject, reject-refused, approval-void, freeze, unfreeze, abort, switch */
  action: string;
  actor?: string;
  digest?: string;
  /** the reason, the comment, or where the action ran */
  note?: string;
}

/** The way back (`cutover.reverse`) as the report presents it (domain/reverse-report.ts builds and words it). */
export interface ReverseReport {
  /** the digest of the way back's evidence (the switch's digest, the slot's point, the tables): what `switchBack` approves */
  digest: string | null;
  /** the LSN on the target from which every change the target commits goes back to the source */
  point: string | null;
  /** the switch the way back follows */
  switchedAt: string | null;
  /** the stream back as the workflow counts it (not kept in the ledger) */
  stream?: { appliedLsn: string | null; transactions: number; rows: number; lagSeconds: number; lagBytes: string };
  /** the switch back approved and not yet void */
  approval?: Approval;
  /** why the last switch back was red (the target was unfrozen, the approval void) */
  red?: string;
  /** the switch back's final window, green: keys compared on both sides, how long the switch back took until then, how every other write was accounted for */
  window?: { keys: number; ms: number; proof: string };
  /** authority handed back to the source */
  switchedBackAt?: string;
  /** the way back finished with authority on the target: by whom (or abort, keep, cancellation) and why */
  finished?: { by: string; reason: string };
  /** `cutover.reverse.keep`: when it finishes by itself */
  keepUntil?: string;
  /** the last checkpoint: the source proven equal to the target, every row of every table, at this point on the target */
  checkpoint?: { point: string; at: string };
  /** the last checkpoint that did not hold, and why */
  checkpointRed?: string;
}

export interface Report {
  migration: string;
  digest: string;
  verdict: 'green' | 'red';
  /** false while the evidence is still being gathered */
  complete: boolean;
  phase: string;
  generatedAt: string;
  tables: TableReport[];
  delta: { watermark: string | null; rowsApplied: number; remaining: number };
  /** change capture: the stream's state when the report was built; `delta.watermark` is its checkpoint */
  capture?: { checkpoint: string | null; appliedLsn: string | null; transactions: number; rows: number; lagSeconds: number; lagBytes: string };
  approvals: Approval[];
  switchedAt?: string;
  /** the source was still taking writes: the verdict rests on the ranges, the totals wait for the final check */
  live?: boolean;
  /** foreign keys set aside during the copy, and whether they hold again */
  constraints?: ConstraintReport[];
  /** the ledger's audit as it stood when the report was built: the latest entries, and how many there are */
  audit?: { entries: AuditRecord[]; total: number };
  /** how the migration ended when it did not complete: aborted or failed, and why (the report says so, never green) */
  ending?: Ending;
  /** started again after an abort or failure of an earlier run of this name: the ranges reused and copied */
  resume?: ResumeSummary;
  /** the way back (`cutover.reverse`) once it opened at the switch: its evidence, its digest, how it ended */
  reverse?: ReverseReport;
}

/** A migration that stopped without switching: the abort (signal or Temporal's cancellation) or a failure. */
export interface Ending {
  phase: 'aborted' | 'failed';
  reason: string;
}

/** How the report's migration ended, when it ended without completing: from `ending`, else its phase. */
export function endingOf(r: Pick<Report, 'phase' | 'ending'>): Ending | undefined {
  if (r.ending) return r.ending;
  if (r.phase === 'aborted' || r.phase === 'failed') return { phase: r.phase, reason: '' };
  return undefined;
}

/** The verdict as a person reads it first: ABORTED: <reason>, FAILED: <reason>, GREEN or RED. */
export function verdictLine(r: Pick<Report, 'phase' | 'ending' | 'verdict'>): string {
  const e = endingOf(r);
  if (e) return `${e.phase.toUpperCase()}${e.reason ? `: ${e.reason}` : ''}`;
  return r.verdict.toUpperCase();
}

/** The note an audit entry shows, from its detail: the reason or the comment, and where the action ran. */
export function auditNote(d: { reason?: unknown; comment?: unknown; connection?: unknown } | null | undefined): string {
  return [d?.reason ?? d?.comment, d?.connection === undefined ? undefined : `on connection ${String(d.connection)}`]
    .filter((x) => typeof x === 'string' && x !== '')
    .join('; ');
}

/**
 * The report's audit with the entries recorded since it was built (the workflow's own, and refused
 * attempts the worker told it of). `raced`: recorded while the report was being built, so the ledger
 * read may already hold it; such an entry is added only when the audit lacks it.
 */
export function withAuditSince(r: Report, since: { entry: AuditRecord; raced?: boolean }[]): Report {
  if (!since.length) return r;
  const entries = [...(r.audit?.entries ?? [])];
  const same = (x: AuditRecord, y: AuditRecord) => x.action === y.action && x.actor === y.actor && x.digest === y.digest && (x.note ?? '') === (y.note ?? '');
  let added = 0;
  for (const s of since) {
    if (s.raced && entries.some((e) => same(e, s.entry))) continue;
    entries.push(s.entry);
    added++;
  }
  return { ...r, audit: { entries, total: (r.audit?.total ?? r.audit?.entries.length ?? 0) + added } };
}

/** Audit entries a report carries at most (the ledger keeps them all). */
export const AUDIT_SHOWN = 200;

/**
 * The audit trail of a report: the ledger's entries as of the report, and what happened since that
 * the report itself records (approvals and the switch, which the workflow adds when it is queried).
 */
export function auditTrail(r: Report): AuditRecord[] {
  const out = [...(r.audit?.entries ?? [])];
  for (const a of r.approvals)
    if (!out.some((e) => e.action === 'approve' && e.actor === a.approver && e.digest === a.digest))
      out.push({ at: a.approvedAt, action: 'approve', actor: a.approver, digest: a.digest, ...(a.comment ? { note: a.comment } : {}) });
  if (r.switchedAt && !out.some((e) => e.action === 'switch')) out.push({ at: r.switchedAt, action: 'switch' });
  // Times come as ISO 8601 or as PostgreSQL's text in UTC ('2024-05-01 12:00:00+00'): one order for
  // both. (A stable sort: entries of one moment keep the ledger's order.)
  const key = (e: AuditRecord) => e.at.replace(' ', 'T');
  return out.sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
}

/** A ledger row as the report builder reads it. */
export interface LedgerRange {
  index: number;
  lo: string;
  hi: string;
  status: string;
  attempts: number;
  sourceCount: string | null;
  sourceChecksum: string | null;
  targetCount: string | null;
  targetChecksum: string | null;
  /** the failed checks' names, and what locating found */
  failedChecks: string[];
  located: { missing: number; extra: number; changed: number; duplicates: number; columns: Record<string, number> } | null;
  keys: RangeKeys;
  refused?: Refusal;
  converged?: number;
}

export interface TableEvidence {
  source: string;
  target: string;
  /** the column plan the ranges were copied and proven by */
  columns?: ColumnPlanEntry[];
  planned: number;
  ranges: LedgerRange[];
  totals: {
    source: SideTotals;
    target: SideTotals;
    failed?: string[];
    outside: { count: string; keys: string[][] };
    sourceOutside?: { count: string; keys: string[][] };
    coverage?: { ranges: number; ok: boolean };
  } | null;
}

/**
 * Verified ranges are listed while the report's tables have this many ranges in all; beyond, they
 * are summarised (counts) and failed ones are still listed. A budget for the whole report, not per
 * table: a schema of thousands of one-range tables would otherwise list every range and pass the
 * size a Temporal payload and a query answer may have.
 */
export const MAX_VERIFIED_RANGES_SHOWN = 500;
const MAX_FAILED_RANGES_SHOWN = 2000;

/** Ledger statuses of a range that is not proven and will not be by itself. */
export const FAILED_STATUSES = new Set(['failed', 'mismatch', 'refused']);

export const NO_KEYS: RangeKeys = { missing: [], extra: [], changed: [], duplicates: [] };

/** A word for a POSIX shell: as it is when it is safe, else in single quotes. */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_./:=@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function rerunCommand(migration: string, table: string, index: number): string {
  return `backfill rerun ${migration} --table ${shellWord(table)} --range ${index}`;
}

const num = (v: string | null) => (v === null ? null : Number(v));

function rangeReport(migration: string, table: string, r: LedgerRange): RangeReport {
  const s = num(r.sourceCount);
  const t = num(r.targetCount);
  const proven = r.status === 'verified';
  const l = r.located;
  return {
    index: r.index,
    lo: r.lo,
    hi: r.hi,
    status: r.status,
    attempts: r.attempts,
    source: r.sourceCount === null ? null : { count: r.sourceCount, checksum: r.sourceChecksum ?? '' },
    target: r.targetCount === null ? null : { count: r.targetCount, checksum: r.targetChecksum ?? '' },
    // Exact once located; before that, what the counts alone prove.
    missing: l ? l.missing : proven ? 0 : s === null || t === null ? null : Math.max(0, s - t),
    extra: l ? l.extra : proven ? 0 : s === null || t === null ? null : Math.max(0, t - s),
    changed: l ? l.changed : proven ? 0 : null,
    duplicates: l ? l.duplicates : proven ? 0 : null,
    keys: r.keys,
    failedChecks: r.failedChecks,
    changedColumns: l?.columns ?? {},
    ...(r.refused ? { refused: r.refused } : {}),
    ...(r.converged ? { converged: r.converged } : {}),
    rerun: rerunCommand(migration, table, r.index),
  };
}

function sum(xs: (string | null)[]): string {
  return xs.reduce((a, x) => a + BigInt(x ?? '0'), 0n).toString();
}

/** `showVerified`: list the verified ranges too (by default while this table alone is within the budget). */
export function buildTableReport(migration: string, e: TableEvidence, showVerified = e.ranges.length <= MAX_VERIFIED_RANGES_SHOWN): TableReport {
  const verified = e.ranges.filter((r) => r.status === 'verified').length;
  const failed = e.ranges.filter((r) => FAILED_STATUSES.has(r.status)).length;
  const showAll = showVerified;
  const shown = e.ranges
    .filter((r) => showAll || r.status !== 'verified')
    .slice(0, MAX_FAILED_RANGES_SHOWN)
    .map((r) => rangeReport(migration, e.source, r));
  const converged = e.ranges.reduce((a, r) => a + (r.converged ?? 0), 0);
  const sumSource = sum(e.ranges.map((r) => r.sourceCount));
  const sumTarget = sum(e.ranges.map((r) => r.targetCount));
  const totalsMatch =
    !!e.totals &&
    e.totals.source.count === e.totals.target.count &&
    e.totals.source.checksum === e.totals.target.checksum &&
    (e.totals.failed ?? []).length === 0;
  return {
    source: e.source,
    target: e.target,
    ...(e.columns ? { columns: e.columns } : {}),
    totals: {
      source: e.totals?.source ?? null,
      target: e.totals?.target ?? null,
      match: totalsMatch,
      failedChecks: e.totals ? (e.totals.failed ?? []) : [],
      sumOfRanges: {
        source: sumSource,
        target: sumTarget,
        // Ranges plus the rows outside them add up to each side's independent count.
        match: !!e.totals && (e.totals.coverage ? e.totals.coverage.ok : sumSource === e.totals.source.count && sumTarget === e.totals.target.count),
      },
    },
    ranges: shown,
    rangeSummary: { total: e.planned, verified, failed, pending: e.planned - verified - failed, shown: shown.length },
    outside: e.totals?.outside ?? { count: '0', keys: [] },
    sourceOutside: e.totals?.sourceOutside ?? { count: '0', keys: [] },
    ...(converged ? { converged } : {}),
  };
}

/** A table as the workflow knows it before the ledger's report exists: counts and failed ranges. */
export interface TableSoFar {
  source: string;
  target: string;
  rangeCount: number;
  verified: number;
  failed: FailedRange[];
}

/** A failed range as the workflow holds it, read as the ledger would give it. */
function asLedgerRange(f: FailedRange): LedgerRange {
  const l = f.located;
  return {
    index: f.index,
    lo: f.lo,
    hi: f.hi,
    status: 'failed',
    attempts: f.attempts,
    sourceCount: f.source.count,
    sourceChecksum: f.source.checksum,
    targetCount: f.target.count,
    targetChecksum: f.target.checksum,
    failedChecks: f.failed,
    located: l ? { missing: l.missing, extra: l.extra, changed: l.changed, duplicates: l.duplicates, columns: l.columns } : null,
    keys: l?.keys ?? NO_KEYS,
    ...(f.refused ? { refused: f.refused } : {}),
  };
}

/** The report while the evidence is still being gathered: red, incomplete, every failed range so far. */
export function provisionalReport(migration: string, tables: TableSoFar[], at: string): Report {
  return {
    migration,
    digest: '',
    verdict: 'red',
    complete: false,
    phase: 'planning',
    generatedAt: at,
    tables: tables.map((t) => ({
      source: t.source,
      target: t.target,
      totals: { source: null, target: null, match: false, failedChecks: [], sumOfRanges: { source: '0', target: '0', match: false } },
      ranges: t.failed.map((f) => rangeReport(migration, t.source, asLedgerRange(f))),
      rangeSummary: {
        total: t.rangeCount,
        verified: t.verified,
        failed: t.failed.length,
        pending: t.rangeCount - t.verified - t.failed.length,
        shown: t.failed.length,
      },
      outside: { count: '0', keys: [] },
      sourceOutside: { count: '0', keys: [] },
    })),
    delta: { watermark: null, rowsApplied: 0, remaining: 0 },
    approvals: [],
  };
}

/**
 * Green: every range verified, the totals equal and equal to the sum of the ranges, and no rows
 * outside the ranges that the other side lacks. While the source still takes writes (`live`), the
 * totals of the two sides are read at different moments and cannot agree; then the ranges (each
 * proven in one snapshot) are the evidence, and the totals are judged by the final check.
 */
export function isGreen(t: TableReport, live = false): boolean {
  if (live) return t.rangeSummary.verified === t.rangeSummary.total;
  return (
    t.rangeSummary.verified === t.rangeSummary.total &&
    t.totals.match &&
    t.totals.sumOfRanges.match &&
    // Rows beyond the plan (inserted since, and caught up) are fine when both sides have the same
    // ones: the totals, which include them, match.
    t.outside.count === t.sourceOutside.count
  );
}

/**
 * Constraints that must hold again: every one that was valid before is validated after its restore.
 * While the source still takes writes (`live`) they stay set aside until the final check.
 */
export function constraintsGreen(cs: ConstraintReport[], live = false): boolean {
  return cs.every((c) => !c.wasValid || c.valid || (live && c.state === 'set-aside'));
}

/**
 * The text the digest hashes: every range's bounds, counts and checksums (not only those shown),
 * the totals and the delta watermark. Approving a digest approves exactly this evidence.
 */
export function evidenceText(migration: string, tables: TableEvidence[], watermark: string | null, constraints: ConstraintReport[] = []): string {
  return JSON.stringify({
    migration,
    watermark,
    // (only when there are any: the digests of migrations without them stay as they were)
    ...(constraints.length ? { constraints: constraints.map((c) => [c.owner, c.name, c.state, c.valid]) } : {}),
    tables: tables.map((t) => ({
      source: t.source,
      target: t.target,
      // (only when known: a digest presented before column plans existed stays as it was)
      ...(t.columns ? { columns: columnPlanText(t.columns) } : {}),
      planned: t.planned,
      totals: t.totals && {
        source: [t.totals.source.count, t.totals.source.checksum],
        target: [t.totals.target.count, t.totals.target.checksum],
        outside: t.totals.outside.count,
        sourceOutside: t.totals.sourceOutside?.count ?? '0',
      },
      ranges: t.ranges.map((r) => [r.index, r.lo, r.hi, r.status, r.sourceCount, r.sourceChecksum, r.targetCount, r.targetChecksum]),
    })),
  });
}

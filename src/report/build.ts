// The report activity: the ledger's evidence read and handed to the report model (src/report/),
// and the report kept in the ledger under its digest.
import { controlAlias, type MigrationSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import type pg from 'pg';
import { AUDIT_TRAIL, DIFFERENCE_SAMPLE, LAST_REPORT, LEDGER_RANGES, LEDGER_TOTALS, SAVE_REPORT } from '../db/ledger';
import { guarded } from '../db/errors';
import type { ColumnPlanEntry } from '../domain/columns';
import { reportFromEvidence } from './digest';
import { AUDIT_SHOWN, NO_KEYS, auditNote, type AuditRecord, type LedgerRange, type RangeKeys, type Report, type TableEvidence } from '../domain/report';
import type { TableTotals } from '../gate/reconcile';
import { failedChecks, type Checks } from '../range/compare';
import { KEY_SAMPLE } from '../range/locate';
import { constraintStates } from '../schema/constraints';
import { refusedCheck, type Refusal } from '../domain/range-lifecycle';
import { reverseFromAudit, reversePhase } from '../domain/reverse-report';

/** The ledger's audit of a migration: its latest entries (AUDIT_SHOWN), oldest first, and how many there are. */
async function readAudit(ctl: pg.Pool, migration: string): Promise<NonNullable<Report['audit']>> {
  const rows = (await ctl.query(AUDIT_TRAIL, [migration, AUDIT_SHOWN])).rows;
  const entries = rows.map((r): AuditRecord => {
    const d = (r.detail ? JSON.parse(String(r.detail)) : null) as { reason?: unknown; comment?: unknown; connection?: unknown } | null;
    const note = auditNote(d);
    return { at: r.at, action: r.action, ...(r.actor ? { actor: r.actor } : {}), ...(r.digest ? { digest: r.digest } : {}), ...(note ? { note } : {}) };
  });
  return { entries, total: rows.length ? Number(rows[0].total) : 0 };
}

/**
 * The report kept last in the ledger (backfill.reports), with the audit as it stands now: the
 * evidence that outlives Temporal's retention. Undefined when the ledger has none for this name.
 */
export async function lastKeptReport(ctl: pg.Pool, migration: string): Promise<Report | undefined> {
  const r = await ctl.query(LAST_REPORT, [migration]);
  if (!r.rows.length) return undefined;
  const report = JSON.parse(String(r.rows[0].report)) as Report;
  const audit = await readAudit(ctl, migration);
  // The phase the report was built in, unless the audit tells how the migration ended since: the
  // switch (or, with the way back, its end; in between it is switched), or an abort.
  const reverse = reverseFromAudit(audit.entries);
  const switched = audit.entries.find((e) => e.action === 'switch');
  const last = audit.entries.at(-1)?.action;
  const abort = last === 'abort' ? audit.entries.at(-1) : undefined;
  const phase = reverse && switched ? reversePhase(reverse) : switched ? 'completed' : abort ? 'aborted' : report.phase;
  // An aborted migration's report says so (never the green of the evidence it stopped at).
  const ending = !switched && abort ? { ending: { phase: 'aborted' as const, reason: abort.note ?? '' }, verdict: 'red' as const } : {};
  return {
    ...report,
    phase,
    audit,
    ...ending,
    ...(switched && !report.switchedAt ? { switchedAt: switched.at } : {}),
    ...(reverse ? { reverse } : {}),
  };
}

export async function buildReport(input: {
  migration: string;
  spec: MigrationSpec;
  phase: string;
  plans: { source: string; target: string; rangeCount: number; columns?: ColumnPlanEntry[] }[];
  generatedAt: string;
  /** catch-up so far; its watermark is part of the evidence */
  delta?: Report['delta'];
  /** the source still takes writes: judge the ranges, not the totals (see isGreen) */
  live?: boolean;
  /** change capture: the stream's state (its checkpoint is `delta.watermark`, which the digest covers) */
  capture?: Report['capture'];
  /** started again after an earlier run: the ranges reused and copied (not evidence: the digest leaves it out) */
  resume?: Report['resume'];
}): Promise<Report> {
  return guarded('building the report', async () => {
    const ctl = poolFor(controlAlias(input.spec), 'write');
    const [rr, tr, dr] = await Promise.all([
      ctl.query(LEDGER_RANGES, [input.migration]),
      ctl.query(LEDGER_TOTALS, [input.migration]),
      ctl.query(DIFFERENCE_SAMPLE, [input.migration, KEY_SAMPLE]),
    ]);
    const totals = new Map<number, TableTotals>(
      tr.rows.filter((r) => r.totals).map((r) => [Number(r.table_index), typeof r.totals === 'string' ? JSON.parse(r.totals) : r.totals]),
    );
    const keys = new Map<string, RangeKeys>();
    for (const d of dr.rows) {
      const id = `${d.table_index}:${d.range_index}`;
      const k = keys.get(id) ?? { missing: [], extra: [], changed: [], duplicates: [] };
      const kind = d.kind === 'duplicate' ? 'duplicates' : (d.kind as 'missing' | 'extra' | 'changed');
      k[kind].push(JSON.parse(String(d.key)));
      keys.set(id, k);
    }
    const evidence: TableEvidence[] = input.plans.map((p, i) => ({
      source: p.source,
      target: p.target,
      ...(p.columns ? { columns: p.columns } : {}),
      planned: p.rangeCount,
      totals: totals.get(i) ?? null,
      ranges: rr.rows
        .filter((r) => Number(r.table_index) === i && Number(r.range_index) < p.rangeCount)
        .map((r): LedgerRange => {
          const checks = r.checks ? (JSON.parse(String(r.checks)) as Checks & { located?: LedgerRange['located']; refused?: Refusal }) : null;
          const refused = checks?.refused;
          return {
            index: Number(r.range_index),
            lo: r.lo,
            hi: r.hi,
            status: r.status,
            attempts: Number(r.attempts),
            sourceCount: r.source_count,
            sourceChecksum: r.source_checksum,
            targetCount: r.target_count,
            targetChecksum: r.target_checksum,
            failedChecks: refused ? [refusedCheck(refused)] : checks && 'count' in checks ? failedChecks(checks) : [],
            located: checks?.located ?? null,
            keys: keys.get(`${i}:${r.range_index}`) ?? NO_KEYS,
            ...(refused ? { refused } : {}),
            ...(Number(r.converged) > 0 ? { converged: Number(r.converged) } : {}),
          };
        }),
    }));
    const built = reportFromEvidence({
      migration: input.migration,
      phase: input.phase,
      generatedAt: input.generatedAt,
      evidence,
      delta: input.delta ?? { watermark: null, rowsApplied: 0, remaining: 0 },
      live: input.live,
      totalsAtCheckpoint: input.capture !== undefined && input.capture.checkpoint !== null,
      constraints: await constraintStates(input.spec, input.migration),
    });
    // The audit so far travels with the evidence, so the report kept in the ledger shows it too.
    const report: Report = {
      ...built,
      ...(input.capture ? { capture: input.capture } : {}),
      ...(input.resume ? { resume: input.resume } : {}),
      audit: await readAudit(ctl, input.migration),
    };
    await ctl.query(SAVE_REPORT, [input.migration, report.digest, report.verdict, JSON.stringify(report)]);
    return report;
  });
}

// The digest of the evidence, and the report assembled around it. Approving a digest approves
// exactly the evidence it hashes (evidenceText). Pure, but needs node:crypto: not for the workflow.
import { createHash } from 'node:crypto';
import {
  MAX_VERIFIED_RANGES_SHOWN,
  buildTableReport,
  constraintsGreen,
  evidenceText,
  isGreen,
  type ConstraintReport,
  type Report,
  type TableEvidence,
} from '../domain/report';

export function digestOf(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 32);
}

export function reportFromEvidence(e: {
  migration: string;
  phase: string;
  generatedAt: string;
  evidence: TableEvidence[];
  delta: Report['delta'];
  /** the source still takes writes: judge the ranges, not the totals (see isGreen) */
  live?: boolean;
  /**
   * Change capture: the totals were read at the checkpoint, source and target at one point, so they
   * are judged even while the source takes writes (the foreign keys still wait for the final check).
   */
  totalsAtCheckpoint?: boolean;
  constraints?: ConstraintReport[];
}): Report {
  // The verified ranges are listed while the whole report's ranges are within the budget.
  const showVerified = e.evidence.reduce((a, t) => a + t.ranges.length, 0) <= MAX_VERIFIED_RANGES_SHOWN;
  const tables = e.evidence.map((t) => buildTableReport(e.migration, t, showVerified));
  const constraints = e.constraints ?? [];
  return {
    migration: e.migration,
    digest: digestOf(evidenceText(e.migration, e.evidence, e.delta.watermark, constraints)),
    verdict: tables.every((t) => isGreen(t, e.live && !e.totalsAtCheckpoint)) && constraintsGreen(constraints, e.live) ? 'green' : 'red',
    ...(constraints.length ? { constraints } : {}),
    ...(e.live ? { live: true } : {}),
    complete: true,
    phase: e.phase,
    generatedAt: e.generatedAt,
    tables,
    delta: e.delta,
    approvals: [],
  };
}

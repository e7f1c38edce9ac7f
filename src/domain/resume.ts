// Starting a migration again after an abort or a failure (the same name, so the same ledger): what
// the earlier run proved is not copied again. Each range its ledger has as verified, under the same
// plan, is verified again (both sides measured, no copy); only a range that does not verify is
// copied. A migration that completed (switched) is not resumed: its name started again is a new
// migration, copied in full. Pure: planning decides with `decideResume`, the workflow counts.

/** What the ledger holds of an earlier run of a table, read by planning before it records its own plan. */
export interface PriorTable {
  /** the plan hash the earlier run recorded (null: recorded before plan hashes were kept) */
  planHash: string | null;
  /** ranges the earlier run recorded since the migration's last switch, if any */
  ranges: number;
  /** of those, the ranges it verified */
  verified: number;
  /** a switch is recorded for this migration name */
  switched: boolean;
}

/** Planning's word on one table. */
export interface TableResume {
  /** ranges an earlier run verified under the same plan: the window verifies them again before any copy */
  reusable: number;
  /** an earlier run left ranges of this table, and none are reused: why */
  fresh?: 'plan-changed' | 'completed';
}

export function decideResume(prior: PriorTable | undefined, planHash: string, mode: 'copy' | 'verify'): TableResume {
  // Verify mode copies nothing: every range is measured anyway.
  if (mode !== 'copy' || !prior) return { reusable: 0 };
  if (prior.ranges === 0) return prior.switched ? { reusable: 0, fresh: 'completed' } : { reusable: 0 };
  if (prior.planHash !== planHash) return { reusable: 0, fresh: 'plan-changed' };
  return { reusable: prior.verified };
}

/** A resumed migration's counts per table, kept by the workflow (and carried at continue-as-new). */
export interface ResumeTable {
  /** ranges the earlier run's ledger had verified under the same plan */
  reusable: number;
  /** of those, ranges verified again without a copy */
  reused: number;
  /** of those, ranges that no longer verified and were copied again */
  differed: number;
  /** ranges this run copied: those the earlier run had not verified, and those that differed */
  copied: number;
}

export interface ResumeState {
  /** what this start found in the ledger, in a sentence */
  note: string;
  tables: ResumeTable[];
}

/** How a range's first attempt went, as the range activity reports it when it was asked to reuse. */
export type Reuse = 'reused' | 'differed';

/** The sentence for what planning found; undefined when no earlier run left anything. */
export function resumeNote(tables: { source: string; resume: TableResume }[]): string | undefined {
  const reusable = tables.reduce((a, t) => a + t.resume.reusable, 0);
  const changed = tables.filter((t) => t.resume.fresh === 'plan-changed').map((t) => t.source);
  const completed = tables.some((t) => t.resume.fresh === 'completed');
  const parts: string[] = [];
  if (reusable > 0)
    parts.push(`an earlier run of this name left ${reusable} verified range(s) under the same plan: each is verified again, and copied only if it differs`);
  if (changed.length) parts.push(`the plan of ${changed.join(', ')} differs from the earlier run's: every range of it is copied again`);
  if (completed && reusable === 0 && !changed.length) parts.push('an earlier migration of this name completed: this one is new, every range is copied');
  return parts.length ? parts.join('; ') : undefined;
}

/** Counts a range's first attempt of a resumed migration. */
export function tallyFirstAttempt(t: ResumeTable, reuse: Reuse | undefined): void {
  if (reuse === 'reused') t.reused++;
  else {
    t.copied++;
    if (reuse === 'differed') t.differed++;
  }
}

/** A resumed migration's counts as progress and the report show them: the sentence, and each table's counts. */
export interface ResumeSummary {
  note: string;
  tables: ({ source: string; target: string } & ResumeTable)[];
}

export function resumeSummary(state: ResumeState, plans: { source: string; target: string }[]): ResumeSummary {
  return { note: state.note, tables: state.tables.map((t, i) => ({ source: plans[i]?.source ?? '', target: plans[i]?.target ?? '', ...t })) };
}

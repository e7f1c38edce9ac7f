// Starting a migration again after an abort or a failure (src/policy/resume.ts): what planning
// found in the ledger is kept with the state, the window asks each range's first attempt to reuse
// the earlier run's verification, and the counts follow each range.
import { log, patched } from '@temporalio/workflow';
import { resumeNote, type ResumeTable, type TableResume } from '../domain/resume';
import type { MigrationState } from '../workflows/state';
import { audit } from '../workflows/audit';

/** After planning: what an earlier run of this name left to reuse, in the state and in the audit. */
export async function resumeFromLedger(s: MigrationState, found: TableResume[] | undefined): Promise<void> {
  // (Patched: migrations started before this copied every range again. Histories from before have no `found`.)
  if (!found || !patched('resume-from-ledger')) return;
  const note = resumeNote(s.ranges.plans.map((p, i) => ({ source: p.source, resume: found[i] ?? { reusable: 0 } })));
  if (!note) return;
  s.ranges.startedAgain({ note, tables: s.ranges.plans.map((_, i) => ({ reusable: found[i]?.reusable ?? 0, reused: 0, differed: 0, copied: 0 })) });
  log.info('started again', { migration: s.name, note });
  await audit(s, 'restart', undefined, undefined, { reason: note });
}

/** A range's first attempt in the window: what it counts towards (undefined: not a resumed migration). */
export function firstAttemptOf(s: MigrationState, t: number): ResumeTable | undefined {
  return s.ranges.resume?.tables[t];
}

/** The first attempt asks to reuse the earlier run's verification where the table has any. */
export const asksReuse = (r: ResumeTable | undefined, attempt: number): boolean => !!r && r.reusable > 0 && attempt === 1;

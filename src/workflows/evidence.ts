// The evidence: the global checks per table, then the report and its digest, built from the ledger.
import type { MigrationState } from './state';
import { acts } from './activities';

/** Reconciling: the global checks, one table after another. */
export async function reconcileAll(s: MigrationState): Promise<void> {
  s.setPhase('reconciling');
  for (const [i, st] of s.tables.entries()) {
    await acts.reconcileTable({ migration: s.name, spec: s.spec, tableIndex: i, plan: st.plan });
  }
}

/**
 * The report as the ledger has it now, and its digest. `evidenceMark`: the watermark the evidence
 * was taken at (a run continued from the gate presents the same one); `final`: the source is frozen,
 * so the totals count too.
 */
export async function buildReport(s: MigrationState, o: { evidenceMark?: string | null; final?: boolean } = {}): Promise<void> {
  const delta = s.delta();
  s.report = await acts.buildReport({
    migration: s.name,
    spec: s.spec,
    phase: s.phase,
    plans: s.plans,
    generatedAt: new Date().toISOString(),
    ...(delta ? { delta: { ...delta, watermark: o.evidenceMark === undefined ? delta.watermark : o.evidenceMark } } : {}),
    ...(s.live && !o.final ? { live: true } : {}),
  });
  s.digest = s.report.digest;
}

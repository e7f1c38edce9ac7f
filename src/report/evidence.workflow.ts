// The evidence: the global checks per table, then the report and its digest, built from the ledger.
import type { MigrationState } from '../workflows/state';
import { patched } from '@temporalio/workflow';
import { summarised } from '../workflows/activities';
import type { Report } from '../domain/report';
import { resumeSummary } from '../domain/resume';
import { oneTable } from '../spec/schema';

/** Foreign keys were set aside at planning (only then is there anything to restore). */
export function hasConstraints(s: MigrationState): boolean {
  return s.ranges.plans.some((p) => (p.setAside?.length ?? 0) > 0);
}

/** The constraints set aside, re-created and validated; returns the ones the rows break, in words. */
export async function restoreAndValidate(s: MigrationState): Promise<string[]> {
  const cs = await summarised('restore and validate the foreign keys set aside').restoreConstraints({ spec: s.spec, migration: s.name });
  return cs.filter((c) => c.wasValid && !c.valid).map((c) => `${c.owner} constraint ${c.name}: ${c.detail ?? 'not valid'}`);
}

/** Reconciling: the global checks of every table, `concurrency` tables at a time. */
export async function reconcileAll(s: MigrationState, o: { epoch?: number } = {}): Promise<void> {
  s.setPhase('reconciling');
  const reconcile = (i: number) => {
    const st = s.ranges.tables[i];
    return summarised(`reconcile ${st.plan.source}: totals, the sum of the ranges, rows outside them`).reconcileTable({
      migration: s.name,
      ...oneTable(s.spec, i),
      plan: st.plan,
      // Change capture's checkpoint: the source at its snapshot, the target stopped at its point.
      ...(o.epoch !== undefined ? { epoch: o.epoch } : {}),
    });
  };
  // (Patched: migrations started before went one table after another.)
  if (!patched('reconcile-tables-in-parallel')) {
    for (let i = 0; i < s.ranges.tables.length; i++) await reconcile(i);
    return;
  }
  const n = s.ranges.tables.length;
  const lanes = Math.max(1, Math.min(s.control.concurrency, n));
  let next = 0;
  // (Patched: migrations started before reconciled one table per activity.)
  if (!patched('reconcile-in-batches')) {
    const lane = async () => {
      while (next < n) await reconcile(next++);
    };
    await Promise.all(Array.from({ length: lanes }, lane));
    return;
  }
  // Many tables: a batch of them per activity, so that the history grows by batches, not tables.
  const size = Math.max(1, Math.min(RECONCILE_BATCH, Math.ceil(n / lanes)));
  const batch = (from: number) => {
    const ts = Array.from({ length: Math.min(size, n - from) }, (_, k) => from + k);
    const what =
      ts.length === 1
        ? s.ranges.tables[from].plan.source
        : `${ts.length} tables, ${s.ranges.tables[from].plan.source} to ${s.ranges.tables[ts.at(-1)!].plan.source}`;
    return summarised(`reconcile ${what}: totals, the sum of the ranges, rows outside them`).reconcileTables({
      migration: s.name,
      spec: { ...s.spec, tables: ts.map((t) => s.spec.tables[t]) },
      tables: ts.map((t) => ({ tableIndex: t, table: s.spec.tables[t], plan: s.ranges.tables[t].plan })),
      ...(o.epoch !== undefined ? { epoch: o.epoch } : {}),
    });
  };
  const lane = async () => {
    while (next < n) {
      const from = next;
      next += size;
      await batch(from);
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
}

/** Tables reconciled by one activity at most. */
const RECONCILE_BATCH = 20;

/**
 * The report built again from the ledger as it is now (the buildReport activity), kept as the
 * evidence with its digest. `evidenceMark`: the watermark the evidence
 * was taken at (a run continued from the gate presents the same one); `final`: the source is frozen,
 * so the totals count too.
 */
export async function refreshReport(s: MigrationState, o: { evidenceMark?: string | null; final?: boolean } = {}): Promise<void> {
  const delta = s.catchup.delta();
  // Entries recorded before the build are in the ledger it reads; those recorded during it may be.
  const before = s.evidence.buildStarted();
  const report = await summarised('build the report and its digest from the ledger')
    .buildReport({
      migration: s.name,
      spec: s.spec,
      phase: s.phase,
      plans: s.ranges.plans,
      generatedAt: new Date().toISOString(),
      ...(delta ? { delta: { ...delta, watermark: o.evidenceMark === undefined ? delta.watermark : o.evidenceMark } } : {}),
      ...(s.live && !o.final ? { live: true } : {}),
      ...(s.live?.capture ? { capture: captureOfReport(s) } : {}),
      ...(s.ranges.resume ? { resume: resumeSummary(s.ranges.resume, s.ranges.plans) } : {}),
    })
    .finally(() => s.evidence.buildEnded());
  s.evidence.built(report, before);
}

/** Change capture as the report keeps it. */
function captureOfReport(s: MigrationState): NonNullable<Report['capture']> {
  const c = s.capture.view()!;
  return { checkpoint: c.checkpoint, appliedLsn: c.appliedLsn, transactions: c.transactions, rows: c.rows, lagSeconds: c.lagSeconds, lagBytes: c.lagBytes };
}

// Global checks per table: the same measurements as a range, over the whole table on both sides,
// and the target rows that no planned range covers.
import { controlAlias, type MigrationSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import { UPSERT_TABLE } from '../db/ledger';
import { outsideSql } from '../db/sql';
import { guarded } from '../db/errors';
import type { SideTotals } from '../report/model';
import { bindingFor } from './binding';
import { measure, compareMeasured } from './range';
import { failedChecks, type Checks } from './compare';
import { planSpan, type TablePlan } from './ranges';

export const OUTSIDE_SAMPLE = 20;

export interface TableTotals {
  source: SideTotals;
  target: SideTotals;
  checks: Checks;
  failed: string[];
  outside: { count: string; keys: string[][] };
}

export async function reconcileTable(input: {
  migration: string;
  spec: MigrationSpec;
  tableIndex: number;
  plan: TablePlan;
}): Promise<TableTotals> {
  const { spec, tableIndex: i } = input;
  const b = await bindingFor(spec, spec.tables[i], i);
  return guarded(`reconciling ${b.sourceName}`, async () => {
    const src = poolFor(spec.source, 'read');
    const tgt = poolFor(spec.target, 'write');
    const out = outsideSql(b, planSpan(input.plan), OUTSIDE_SAMPLE);
    const [s, t, oc, ok] = await Promise.all([
      measure(src, b, 'source'),
      measure(tgt, b, 'target'),
      tgt.query(out.count),
      tgt.query(out.sample),
    ]);
    const checks = compareMeasured(b, s, t);
    const side = (m: typeof s): SideTotals => ({ ...m.profile, duplicates: m.dups.keys });
    const result: TableTotals = {
      source: side(s),
      target: side(t),
      checks,
      failed: failedChecks(checks),
      outside: { count: String(oc.rows[0].count), keys: ok.rows.map((r) => JSON.parse(String(r.key)) as string[]) },
    };
    await poolFor(controlAlias(spec), 'write').query(UPSERT_TABLE, [
      input.migration, i, b.sourceName, b.targetName, null, JSON.stringify(result),
    ]);
    return result;
  });
}

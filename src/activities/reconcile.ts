// Global checks per table: totals on both sides, and the target rows that no planned range covers.
import type pg from 'pg';
import { controlAlias, type MigrationSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import { UPSERT_TABLE } from '../db/ledger';
import { outsideSql, sourceChecksumSql, targetChecksumSql } from '../db/sql';
import { guarded } from '../db/errors';
import { textArray } from '../db/catalog';
import type { SideTotals } from '../report/model';
import { bindingFor } from './binding';

export const OUTSIDE_SAMPLE = 20;

export interface TableTotals {
  source: SideTotals;
  target: SideTotals;
  outside: { count: string; keys: string[][] };
}

async function totals(pool: pg.Pool, sql: string): Promise<SideTotals> {
  const r = await pool.query(sql);
  return { count: String(r.rows[0].count), checksum: String(r.rows[0].checksum), aggregates: {}, distribution: {} };
}

export async function reconcileTable(input: {
  migration: string;
  spec: MigrationSpec;
  tableIndex: number;
  planned: { lo: string; hi: string; rangeCount: number };
}): Promise<TableTotals> {
  const { spec, tableIndex: i } = input;
  const b = await bindingFor(spec, spec.tables[i], i);
  return guarded(`reconciling ${b.sourceName}`, async () => {
    const src = poolFor(spec.source, 'read');
    const tgt = poolFor(spec.target, 'write');
    const range = input.planned.rangeCount > 0 ? { lo: input.planned.lo, hi: input.planned.hi } : null;
    const out = outsideSql(b, range, OUTSIDE_SAMPLE);
    const [s, t, oc, ok] = await Promise.all([
      totals(src, sourceChecksumSql(b)),
      totals(tgt, targetChecksumSql(b)),
      tgt.query(out.count),
      tgt.query(out.sample),
    ]);
    const result: TableTotals = {
      source: s,
      target: t,
      outside: { count: String(oc.rows[0].count), keys: ok.rows.map((r) => textArray(r.key)) },
    };
    await poolFor(controlAlias(spec), 'write').query(UPSERT_TABLE, [
      input.migration, i, b.sourceName, b.targetName, null, JSON.stringify(result),
    ]);
    return result;
  });
}

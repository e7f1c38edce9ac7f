// Planning: check every table against the databases (nothing is written before this passes),
// create the ledger, and read the key bounds. The ranges themselves are arithmetic on the bounds,
// so the workflow derives them and the plan stays a few numbers per table.
import { ApplicationFailure } from '@temporalio/common';
import { chunkOf, controlAlias, type MigrationSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import { CLEAR_STALE_RANGES, LEDGER_DDL, UPSERT_TABLE, ensureSchema } from '../db/ledger';
import { sourceBoundsSql } from '../db/sql';
import { guarded } from '../db/errors';
import { checkTable, bindingFor } from './binding';

export interface TablePlan {
  source: string;
  target: string;
  /** first key value covered (inclusive) */
  lo: string;
  /** one past the last key value covered (exclusive) */
  hi: string;
  size: string;
  rangeCount: number;
  sourceRows: string;
}

/** Preflight every table; throws one non-retryable failure listing every problem found. */
export async function preflight(spec: MigrationSpec): Promise<void> {
  const problems: string[] = [];
  for (const [i, table] of spec.tables.entries()) {
    const r = await guarded(`checking tables[${i}]`, () =>
      checkTable({ sourceAlias: spec.source, targetAlias: spec.target, table, tableIndex: i }),
    );
    problems.push(...r.problems);
  }
  if (problems.length) {
    throw ApplicationFailure.create({
      type: 'PreflightError',
      nonRetryable: true,
      message: `the spec does not match the databases:\n${problems.map((p) => `  ${p}`).join('\n')}`,
    });
  }
}

export async function planMigration(input: { migration: string; spec: MigrationSpec }): Promise<TablePlan[]> {
  const { spec, migration } = input;
  await preflight(spec);
  return guarded('planning', async () => {
    const control = await poolFor(controlAlias(spec), 'write').connect();
    try {
      await ensureSchema(control, LEDGER_DDL);
    } finally {
      control.release();
    }
    const plans: TablePlan[] = [];
    for (const [i, table] of spec.tables.entries()) {
      const b = await bindingFor(spec, table, i);
      const r = await poolFor(spec.source, 'read').query(sourceBoundsSql(b));
      const { lo, hi, count } = r.rows[0] as { lo: string | null; hi: string | null; count: string };
      const size = BigInt(chunkOf(table).size);
      const plan: TablePlan =
        lo === null || hi === null
          ? { source: b.sourceName, target: b.targetName, lo: '0', hi: '0', size: size.toString(), rangeCount: 0, sourceRows: '0' }
          : {
              source: b.sourceName,
              target: b.targetName,
              lo,
              hi: (BigInt(hi) + 1n).toString(),
              size: size.toString(),
              rangeCount: Number((BigInt(hi) + 1n - BigInt(lo) + size - 1n) / size),
              sourceRows: count,
            };
      const ctl = poolFor(controlAlias(spec), 'write');
      await ctl.query(UPSERT_TABLE, [migration, i, plan.source, plan.target, JSON.stringify(plan), null]);
      await ctl.query(CLEAR_STALE_RANGES, [migration, i, plan.rangeCount]);
      plans.push(plan);
    }
    return plans;
  });
}

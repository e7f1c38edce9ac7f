// Planning: check every table against the databases once (nothing is written before this passes),
// create the ledger, and read the bounds. Key spans and time intervals are arithmetic on the
// bounds; row-count chunks take their boundaries from the data and keep them in the ledger.
import { ApplicationFailure } from '@temporalio/common';
import { controlAlias, type MigrationSpec } from '../spec/schema';
import { poolFor, inTransaction } from '../db/pools';
import { CLEAR_BOUNDARIES, CLEAR_STALE_RANGES, LEDGER_DDL, SAVE_BOUNDARIES, UPSERT_TABLE, ensureSchema } from '../db/ledger';
import { intervalBoundsSql, intervalPlanSql, rowBoundariesSql, sourceBoundsSql } from '../db/sql';
import { guarded } from '../db/errors';
import { preflight, type Binding } from './binding';
import type { TablePlan } from './bounds';

export type { TablePlan } from './bounds';
export { preflight } from './binding';

/** More ranges than this in one table is a spec mistake (a chunk far too small). */
export const MAX_RANGES_PER_TABLE = 1_000_000;

function tooMany(b: Binding, n: number): never {
  throw ApplicationFailure.create({
    type: 'PreflightError',
    nonRetryable: true,
    message: `${b.sourceName}: the chunking makes ${n.toLocaleString('en-US')} ranges (at most ${MAX_RANGES_PER_TABLE.toLocaleString('en-US')}); choose a larger chunk`,
  });
}

async function planTable(spec: MigrationSpec, migration: string, i: number, b: Binding): Promise<TablePlan> {
  const src = poolFor(spec.source, 'read');
  const base = { source: b.sourceName, target: b.targetName, kind: b.chunk.kind };
  const c = b.chunk;
  const empty: TablePlan = { ...base, lo: [], hi: [], rangeCount: 0 };
  // Key spans and intervals need only the bounds (an index lookup, not a count of the table).
  const bounds =
    c.kind === 'rows' ? { lo: null, hi: null } : ((await src.query(sourceBoundsSql(b))).rows[0] as { lo: string | null; hi: string | null });
  if (c.kind !== 'rows' && bounds.lo === null) return empty;
  if (c.kind === 'size') {
    const size = BigInt(c.size);
    const hi = BigInt(bounds.hi!) + 1n;
    const n = Number((hi - BigInt(bounds.lo!) + size - 1n) / size);
    if (n > MAX_RANGES_PER_TABLE) tooMany(b, n);
    return { ...base, lo: [bounds.lo!], hi: [hi.toString()], size: size.toString(), rangeCount: n };
  }
  if (c.kind === 'interval') {
    // Aligned starts: date_bin for fixed intervals, the month for calendar ones. UTC sessions.
    const type = b.range.sourceTypes[0];
    const r = await src.query(intervalPlanSql(type), [bounds.lo, c.interval, bounds.hi]);
    const n = Number(r.rows[0].n);
    if (n > MAX_RANGES_PER_TABLE) tooMany(b, n);
    // The end of the last range, by the same expression as every range's bounds.
    const end = await src.query(intervalBoundsSql(type), [r.rows[0].start, n - 1, c.interval]);
    return { ...base, lo: [r.rows[0].start], hi: [end.rows[0].hi], interval: c.interval, rangeCount: n };
  }
  const rows = await src.query(rowBoundariesSql(b, c.rows));
  const boundaries = rows.rows.map((x) => JSON.parse(String(x.b)) as string[]);
  if (boundaries.length === 0) return empty;
  if (boundaries.length > MAX_RANGES_PER_TABLE) tooMany(b, boundaries.length);
  await inTransaction(poolFor(controlAlias(spec), 'write'), 'BEGIN', async (tx) => {
    await tx.query(CLEAR_BOUNDARIES, [migration, i]);
    await tx.query(SAVE_BOUNDARIES, [migration, i, JSON.stringify(boundaries)]);
  });
  return { ...base, lo: boundaries[0], hi: null, rangeCount: boundaries.length };
}

export async function planMigration(input: { migration: string; spec: MigrationSpec }): Promise<TablePlan[]> {
  const { spec, migration } = input;
  const bindings = await preflight(spec);
  return guarded('planning', async () => {
    const control = await poolFor(controlAlias(spec), 'write').connect();
    try {
      await ensureSchema(control, LEDGER_DDL);
    } finally {
      control.release();
    }
    const plans: TablePlan[] = [];
    for (const i of spec.tables.keys()) {
      const plan = await planTable(spec, migration, i, bindings[i]);
      const ctl = poolFor(controlAlias(spec), 'write');
      await ctl.query(UPSERT_TABLE, [migration, i, plan.source, plan.target, JSON.stringify(plan), null]);
      await ctl.query(CLEAR_STALE_RANGES, [migration, i, plan.rangeCount]);
      plans.push(plan);
    }
    return plans;
  });
}

// Starting a migration again (src/policy/resume.ts), on the worker's side: the plan hash planning
// records per table, what an earlier run left in the ledger, and whether one range may be reused.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { MigrationSpec, TableSpec } from '../spec/schema';
import { BOUNDARIES_DIGEST, PRIOR_TABLE, REUSABLE_RANGE } from '../db/ledger';
import type { PriorTable } from '../domain/resume';
import type { TablePlan } from '../domain/plan';

/** JSON with every object's keys sorted: the same spec written in another order hashes the same. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * A table's plan as a hash: the connections and the mode, the table as the spec gives it (key,
 * columns, transforms, filter, chunk, checks), the plan (bounds, ranges, the column plan, the
 * foreign keys set aside, the partitions) and, for row-count chunks, every boundary.
 */
export async function planHash(ctl: pg.Pool, migration: string, tableIndex: number, spec: MigrationSpec, table: TableSpec, plan: TablePlan): Promise<string> {
  const boundaries = plan.kind === 'rows' ? String((await ctl.query(BOUNDARIES_DIGEST, [migration, tableIndex])).rows[0].digest) : null;
  const what = { v: 1, source: spec.source, target: spec.target, mode: spec.mode, table, plan, boundaries };
  return createHash('sha256').update(canonical(what)).digest('hex');
}

/** What an earlier run of this migration left of a table (undefined: nothing). Read before planning records its own. */
export async function priorTable(ctl: pg.Pool, migration: string, tableIndex: number): Promise<PriorTable | undefined> {
  const r = await ctl.query(PRIOR_TABLE, [migration, tableIndex]);
  if (!r.rows.length) return undefined;
  const row = r.rows[0] as { plan_hash: string | null; ranges: number; verified: number; switched: boolean };
  return { planHash: row.plan_hash, ranges: Number(row.ranges), verified: Number(row.verified), switched: row.switched };
}

/** The ledger has this range verified, with these bounds, by a run that did not complete: it may be verified instead of copied. */
export async function reusable(ctl: pg.Pool, migration: string, tableIndex: number, rangeIndex: number, lo: string, hi: string): Promise<boolean> {
  return (await ctl.query(REUSABLE_RANGE, [migration, tableIndex, rangeIndex, lo, hi])).rows.length > 0;
}

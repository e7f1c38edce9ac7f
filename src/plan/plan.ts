// Planning: check every table against the databases once (nothing is written before this passes),
// create the ledger, and read the bounds. Key spans and time intervals are arithmetic on the
// bounds; row-count chunks take their boundaries from the data and keep them in the ledger.
import { failure } from '../domain/failures';
import { controlAlias, type MigrationSpec, type TableSpec } from '../spec/schema';
import { expandTables } from './expand';
import { enforcePolicy } from './trust';
import { poolFor, inTransaction } from '../db/pools';
import { CLEAR_BOUNDARIES, CLEAR_STALE_RANGES, CLEAR_TABLE_RANGES, LEDGER_DDL, SAVE_BOUNDARIES, SET_PLAN_HASH, UPSERT_TABLE, ensureSchema } from '../db/ledger';
import { intervalBoundsSql, intervalPlanSql, rowBoundariesSql, sourceBoundsSql } from './sql';
import { guarded } from '../db/errors';
import type { Binding } from './binding';
import { preflight } from './preflight';
import { foreignKeys, tableSizing, type ForeignKey } from '../db/catalog';
import { setAsideConstraints } from '../schema/constraints';
import { ensurePublication } from '../capture/steps';
import { rangeBytesFor, rowsPerRange, spanFor } from './bounds';
import type { TablePlan } from '../domain/plan';
import { planHash, priorTable } from './resume';
import { decideResume, type TableResume } from '../domain/resume';

/** More ranges than this in one table is a spec mistake (a chunk far too small). */
const MAX_RANGES_PER_TABLE = 1_000_000;

function tooMany(b: Binding, n: number): never {
  throw failure(
    'PreflightError',
    `${b.sourceName}: the chunking makes ${n.toLocaleString('en-US')} ranges (at most ${MAX_RANGES_PER_TABLE.toLocaleString('en-US')}); choose a larger chunk`,
  );
}

/** Key spans and time intervals: arithmetic on the bounds, nothing written. */
async function planSpans(spec: MigrationSpec, b: Binding): Promise<TablePlan> {
  const src = poolFor(spec.source, 'read');
  const base = { source: b.sourceName, target: b.targetName, kind: b.chunk.kind };
  const c = b.chunk;
  const empty: TablePlan = { ...base, lo: [], hi: [], rangeCount: 0 };
  // Key spans and intervals need only the bounds (an index lookup, not a count of the table).
  if (c.kind === 'rows') throw new Error('planSpans: a row-count plan has no spans');
  const bounds = (await src.query(sourceBoundsSql(b))).rows[0] as { lo: string | null; hi: string | null };
  if (bounds.lo === null) return empty;
  if (c.kind === 'size') {
    // No chunk in the spec: a span that holds about RANGE_BYTES of this table (more in verify mode).
    const size = BigInt(b.sizing ? spanFor(rowsPerRange(b.sizing, c.size, rangeBytesFor(spec, b.sizing.bytes)), b.sizing.rows, bounds.lo, bounds.hi!) : c.size);
    const hi = BigInt(bounds.hi!) + 1n;
    const n = Number((hi - BigInt(bounds.lo) + size - 1n) / size);
    if (n > MAX_RANGES_PER_TABLE) tooMany(b, n);
    return { ...base, lo: [bounds.lo], hi: [hi.toString()], size: size.toString(), rangeCount: n };
  }
  // Aligned starts: date_bin for fixed intervals, the month for calendar ones. UTC sessions.
  const type = b.range.sourceTypes[0];
  const r = await src.query(intervalPlanSql(type), [bounds.lo, c.interval, bounds.hi]);
  const n = Number(r.rows[0].n);
  if (n > MAX_RANGES_PER_TABLE) tooMany(b, n);
  // The end of the last range, by the same expression as every range's bounds.
  const end = await src.query(intervalBoundsSql(type), [r.rows[0].start, n - 1, c.interval]);
  return { ...base, lo: [r.rows[0].start], hi: [end.rows[0].hi], interval: c.interval, rangeCount: n };
}

/** A table's plan. Row counts: boundaries from the data (every n-th key), kept in the ledger. */
async function planTable(spec: MigrationSpec, migration: string, i: number, b: Binding): Promise<TablePlan> {
  const c = b.chunk;
  if (c.kind !== 'rows') return planSpans(spec, b);
  const base = { source: b.sourceName, target: b.targetName, kind: c.kind };
  const rows = await poolFor(spec.source, 'read').query(
    rowBoundariesSql(b, b.sizing ? rowsPerRange(b.sizing, c.rows, rangeBytesFor(spec, b.sizing.bytes)) : c.rows),
  );
  const boundaries = rows.rows.map((x) => JSON.parse(String(x.b)) as string[]);
  if (boundaries.length === 0) return { ...base, lo: [], hi: [], rangeCount: 0 };
  if (boundaries.length > MAX_RANGES_PER_TABLE) tooMany(b, boundaries.length);
  await inTransaction(poolFor(controlAlias(spec), 'write'), 'BEGIN', async (tx) => {
    await tx.query(CLEAR_BOUNDARIES, [migration, i]);
    await tx.query(SAVE_BOUNDARIES, [migration, i, JSON.stringify(boundaries)]);
  });
  return { ...base, lo: boundaries[0], hi: null, rangeCount: boundaries.length };
}

/** What `backfill validate` shows of the plan it would make: nothing written, row-count plans estimated. */
export interface PlanEstimate {
  table: string;
  /** how the ranges are taken, in words */
  ranges: string;
  rangeCount: number;
  /** the planner's row estimate (null: the table was never analyzed) */
  rows: number | null;
  bytes: number;
}

/** The foreign keys a migration of these tables would set aside during the copy and validate after. */
export function constraintsToSetAside(spec: MigrationSpec, bindings: Binding[]): Promise<ForeignKey[]> {
  return foreignKeys(
    poolFor(spec.target, 'write'),
    bindings.map((b) => b.target),
  );
}

export async function estimatePlan(spec: MigrationSpec, bindings: Binding[]): Promise<PlanEstimate[]> {
  const out: PlanEstimate[] = [];
  for (const b of bindings) {
    // Preflight read it already for a table sized by default.
    const size = b.sizing ?? (await tableSizing(poolFor(spec.source, 'read'), b.source));
    const rows = size.rows > 0 ? Math.round(size.rows) : null;
    const c = b.chunk;
    const auto = b.sizing ? ' (chosen from the table size)' : '';
    if (c.kind === 'rows') {
      const per = b.sizing ? rowsPerRange(b.sizing, c.rows, rangeBytesFor(spec, b.sizing.bytes)) : c.rows;
      out.push({
        table: b.sourceName,
        ranges: `about ${per.toLocaleString('en-US')} rows each on (${b.key.join(', ')})${auto}`,
        rangeCount: rows === null ? 1 : Math.max(1, Math.ceil(rows / per)),
        rows,
        bytes: size.bytes,
      });
    } else {
      const p = await planSpans(spec, b);
      const how =
        c.kind === 'size'
          ? `key spans of ${Number(p.size ?? c.size).toLocaleString('en-US')} on ${c.column}${auto}`
          : `intervals of ${c.interval} on ${c.column}`;
      out.push({ table: b.sourceName, ranges: how, rangeCount: p.rangeCount, rows, bytes: size.bytes });
    }
  }
  return out;
}

/**
 * What planning hands the workflow: a plan per table, the tables (schema patterns expanded), and per
 * table what an earlier run of the same name left in the ledger to reuse (src/policy/resume.ts).
 */
export interface PlannedMigration {
  plans: TablePlan[];
  tables: TableSpec[];
  resume?: TableResume[];
}

export async function planMigration(input: { migration: string; spec: MigrationSpec }): Promise<PlannedMigration> {
  const { migration } = input;
  // The worker's policy first: a spec it refuses touches nothing.
  enforcePolicy(input.spec);
  const spec = { ...input.spec, tables: await expandTables(input.spec) };
  const bindings = await preflight(spec);
  return guarded('planning', async () => {
    const control = await poolFor(controlAlias(spec), 'write').connect();
    try {
      await ensureSchema(control, LEDGER_DDL);
    } finally {
      control.release();
    }
    // Change capture: the publication first (the slot comes with the first snapshot).
    await ensurePublication(spec, bindings);
    const fks = await setAsideConstraints(
      spec,
      migration,
      bindings.map((b) => b.target),
    );
    const plans: TablePlan[] = [];
    const resume: TableResume[] = [];
    for (const i of spec.tables.keys()) {
      const b = bindings[i];
      const ctl = poolFor(controlAlias(spec), 'write');
      // What an earlier run of this name left, before this plan is recorded over it.
      const prior = await priorTable(ctl, migration, i);
      const touching = fks.filter((f) => f.owner === b.target || f.referenced === b.target).map((f) => f.name);
      const plan: TablePlan = {
        ...(await planTable(spec, migration, i, b)),
        ...(touching.length ? { setAside: touching } : {}),
        columns: b.columnPlan,
        partitions: b.partitions,
      };
      const hash = await planHash(ctl, migration, i, spec, spec.tables[i], plan);
      const reuse = decideResume(prior, hash, spec.mode);
      // Another plan's ranges are not this one's (nor evidence a retry of planning could take for its own).
      if (reuse.fresh === 'plan-changed') await ctl.query(CLEAR_TABLE_RANGES, [migration, i]);
      await ctl.query(UPSERT_TABLE, [migration, i, plan.source, plan.target, JSON.stringify(plan), null]);
      await ctl.query(SET_PLAN_HASH, [migration, i, hash]);
      await ctl.query(CLEAR_STALE_RANGES, [migration, i, plan.rangeCount]);
      plans.push(plan);
      resume.push(reuse);
    }
    return { plans, tables: spec.tables, resume };
  });
}

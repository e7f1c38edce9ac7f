// Global checks per table. The whole-table totals are composed, not rescanned: each side's count
// is counted independently (cheap), its checksum is the sum of the ranges' checksums plus the
// rows outside the planned span (found through the key index), so "the totals equal the sum of
// the ranges" is a real check. The rows outside are read through the key index whatever the
// statistics say (a freshly loaded target has none). Aggregates and distributions get one
// whole-table scan per side (no hashing), and duplicate keys are looked for where no unique index
// rules them out.
import { controlAlias, tableOf, type MigrationSpec, type OneTable, type TableSpec } from '../spec/schema';
import { heartbeat } from '../activities/heartbeat';
import { poolFor } from '../db/pools';
import { RANGE_SUMS, UPSERT_TABLE } from '../db/ledger';
import type pg from 'pg';
import { PREFER_INDEX, duplicatesSql, profileSql, type Selection, type Side } from '../db/sql';
import { countSql, keySampleSql } from './sql';
import { atSnapshot, type SnapshotRef } from '../range/snapshot';
import { snapshotRefOf } from '../range/copy';
import { guarded } from '../db/errors';
import type { SideTotals } from '../domain/report';
import { bindingFor, type Binding } from '../plan/binding';
import { measure, throughIndex } from '../range/measure';
import { NO_DUPLICATES, compareProfiles, failedChecks, parseDuplicates, parseProfile, type Checks } from '../range/compare';
import { planSpan } from '../plan/bounds';
import type { TablePlan } from '../domain/plan';

const OUTSIDE_SAMPLE = 20;

export interface Outside {
  count: string;
  keys: string[][];
}

export interface TableTotals {
  source: SideTotals;
  target: SideTotals;
  checks: Checks;
  failed: string[];
  /** target rows outside every planned range */
  outside: Outside;
  /** source rows outside every planned range (arrived after planning) */
  sourceOutside: Outside;
  /** planned ranges with evidence, and whether ranges + outside add up to each side's count */
  coverage: { ranges: number; ok: boolean };
}

/** How a side's queries run: on the pool now, or each in a session at a change-capture snapshot. */
type Run = <T>(fn: (c: pg.ClientBase | pg.Pool) => Promise<T>, throughKeyIndex?: boolean) => Promise<T>;

function runner(pool: pg.Pool, at: SnapshotRef | undefined): Run {
  if (!at) return (fn, throughKeyIndex) => (throughKeyIndex ? throughIndex(pool, fn) : fn(pool));
  return (fn, throughKeyIndex) =>
    atSnapshot(pool, at, async (c) => {
      if (throughKeyIndex) await c.query(PREFER_INDEX);
      return fn(c);
    });
}

async function side(b: Binding, run: Run, s: Side, span: Selection, sums: { count: string; checksum: string }) {
  const extra = b.checks.distribution.length + b.checks.aggregates.length > 0;
  const unique = s === 'source' ? b.sourceKeyUnique : b.targetKeyUnique;
  const [count, { out, keys }, global, dups] = await Promise.all([
    run((c) => c.query(countSql(b, s))),
    run(async (c) => {
      const out = await measure(c, b, s, span);
      // Usually nothing is outside; a sorted sample of nothing could still walk the whole index.
      const keys = out.profile.count === '0' ? { rows: [] } : await c.query(keySampleSql(b, s, span, OUTSIDE_SAMPLE));
      return { out, keys };
    }, true),
    extra ? run((c) => c.query(profileSql(b, s, undefined, false))) : undefined,
    unique ? undefined : run((c) => c.query(duplicatesSql(b, s, undefined, OUTSIDE_SAMPLE))),
  ]);
  const profile = global ? parseProfile(global.rows, b.checks) : { aggregates: {}, distribution: {} };
  const totals: SideTotals = {
    count: String(count.rows[0].count),
    checksum: (BigInt(sums.checksum) + BigInt(out.profile.checksum)).toString(),
    aggregates: profile.aggregates,
    distribution: profile.distribution,
    duplicates: dups ? parseDuplicates(dups.rows).keys : 0,
  };
  return {
    totals,
    dups: dups ? parseDuplicates(dups.rows) : NO_DUPLICATES,
    outside: { count: out.profile.count, keys: keys.rows.map((r) => JSON.parse(String(r.key)) as string[]) },
    covered: BigInt(sums.count) + BigInt(out.profile.count) === BigInt(totals.count),
  };
}

export async function reconcileTable(
  input: OneTable & {
    migration: string;
    plan: TablePlan;
    /** change capture's checkpoint: the source is read at this epoch's snapshot (the target stands at its point) */
    epoch?: number;
  },
): Promise<TableTotals> {
  const { spec, tableIndex: i } = input;
  const b = await bindingFor(spec, tableOf(input), i);
  return guarded(`reconciling ${b.sourceName}`, async () => {
    const ctl = poolFor(controlAlias(spec), 'write');
    const sums = (await ctl.query(RANGE_SUMS, [input.migration, i, input.plan.rangeCount])).rows[0];
    const span: Selection = { outside: planSpan(input.plan) };
    const [s, t] = await Promise.all([
      side(b, runner(poolFor(spec.source, 'read'), snapshotRefOf({ migration: input.migration, spec, epoch: input.epoch })), 'source', span, {
        count: sums.source_count,
        checksum: sums.source_checksum,
      }),
      side(b, runner(poolFor(spec.target, 'write'), undefined), 'target', span, { count: sums.target_count, checksum: sums.target_checksum }),
    ]);
    const checks = compareProfiles(
      { ...s.totals, aggregates: s.totals.aggregates, distribution: s.totals.distribution },
      { ...t.totals, aggregates: t.totals.aggregates, distribution: t.totals.distribution },
      b,
      { source: s.dups, target: t.dups },
    );
    const result: TableTotals = {
      source: s.totals,
      target: t.totals,
      checks,
      failed: failedChecks(checks),
      outside: t.outside,
      sourceOutside: s.outside,
      coverage: { ranges: Number(sums.n), ok: Number(sums.n) === input.plan.rangeCount && s.covered && t.covered },
    };
    await ctl.query(UPSERT_TABLE, [input.migration, i, b.sourceName, b.targetName, null, JSON.stringify(result)]);
    return result;
  });
}

/** A batch of tables to reconcile in one activity: their indexes, tables and plans. */
export interface ReconcileBatch {
  migration: string;
  /** the spec narrowed to the batch's tables */
  spec: MigrationSpec;
  tables: { tableIndex: number; table: TableSpec; plan: TablePlan }[];
  epoch?: number;
}

/**
 * Several tables reconciled one after another in one activity: a schema of thousands of small tables
 * would otherwise add three events per table to the history. Each table's totals go to the ledger as
 * reconcileTable's do; the answer is only how many were reconciled.
 */
export async function reconcileTables(input: ReconcileBatch): Promise<{ reconciled: number }> {
  let reconciled = 0;
  for (const t of input.tables) {
    await reconcileTable({ migration: input.migration, spec: input.spec, ...t, ...(input.epoch !== undefined ? { epoch: input.epoch } : {}) });
    heartbeat({ reconciled: ++reconciled });
  }
  return { reconciled };
}

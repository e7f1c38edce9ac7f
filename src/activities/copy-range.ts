// The range activities. copyRange: copy one range (source snapshot -> worker -> target, one target
// transaction), then prove it: count, checksum, aggregates, distributions and duplicate keys on
// both sides, recorded in the ledger in the same transaction. Running it twice leaves the target
// identical: the range is deleted before it is copied. verifyRange: the same proof, no copy.
import { ApplicationFailure } from '@temporalio/common';
import { controlAlias, type MigrationSpec, type TableSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import { RECORD_RANGE, RECORD_RANGE_ERROR } from '../db/ledger';
import { guarded } from '../db/errors';
import { bindingFor, type Binding } from './binding';
import { WORKER_ID } from './heartbeat';
import { resolveRange, type TablePlan } from './bounds';
import { withCopyClients } from './copy-pipe';
import { compareMeasured, measure, replaceAndMeasure } from './measure';
import { failedChecks, type Checks, type SideProfile } from './compare';
import type { RangeResult } from '../policy/range-lifecycle';

export type { RangeResult, SideEvidence } from '../policy/range-lifecycle';

export interface RangeInput {
  migration: string;
  spec: Pick<MigrationSpec, 'source' | 'target' | 'control' | 'mode'>;
  table: TableSpec;
  tableIndex: number;
  plan: TablePlan;
  rangeIndex: number;
  attempt: number;
  /** the last attempt the spec allows: a mismatch now marks the range failed */
  finalAttempt: boolean;
}

function statusOf(input: RangeInput, checks: Checks): RangeResult['status'] {
  if (checks.ok) return 'verified';
  return input.finalAttempt ? 'failed' : 'mismatch';
}

function ledgerParams(input: RangeInput, b: Binding, lo: string, hi: string, status: string, s: SideProfile, t: SideProfile, checks: Checks, copied: boolean): unknown[] {
  return [
    input.migration, input.tableIndex, input.rangeIndex, b.sourceName, b.targetName, lo, hi,
    status, input.attempt, s.count, s.checksum, t.count, t.checksum, JSON.stringify(checks), WORKER_ID, copied,
  ];
}

function result(status: RangeResult['status'], lo: string, hi: string, s: SideProfile, t: SideProfile, checks: Checks, rowsCopied: number): RangeResult {
  return {
    status,
    lo,
    hi,
    source: { count: s.count, checksum: s.checksum },
    target: { count: t.count, checksum: t.checksum },
    failed: failedChecks(checks),
    rowsCopied,
  };
}

const at = (input: RangeInput) => ({
  migration: input.migration,
  sourceAlias: input.spec.source,
  controlAlias: controlAlias(input.spec),
  tableIndex: input.tableIndex,
  rangeIndex: input.rangeIndex,
});

/** Where a range's failure is kept: the tables, and the bounds once they are resolved. */
interface ErrorSite {
  b: Binding;
  lo: string;
  hi: string;
}

/**
 * A failure no retry can cure (a dropped column, a row the target refuses) is kept on the range's
 * ledger row, which outlives Temporal's retention. Transient failures are not: their connection
 * may be the one that failed, and the history has every attempt.
 */
async function keepingLastError<T>(input: RangeInput, b: Binding, fn: (site: ErrorSite) => Promise<T>): Promise<T> {
  const site: ErrorSite = { b, lo: '', hi: '' };
  try {
    return await fn(site);
  } catch (e) {
    if (e instanceof ApplicationFailure && e.nonRetryable) {
      await poolFor(controlAlias(input.spec), 'write')
        .query(RECORD_RANGE_ERROR, [input.migration, input.tableIndex, input.rangeIndex, b.sourceName, b.targetName, site.lo, site.hi, e.message])
        .catch(() => undefined);
    }
    throw e;
  }
}

/** Copy one range and verify it, in one target transaction and one source snapshot. */
export async function copyRange(input: RangeInput): Promise<RangeResult> {
  const b = await bindingFor(input.spec, input.table, input.tableIndex);
  const sameLedger = controlAlias(input.spec) === input.spec.target;
  return keepingLastError(input, b, (site) =>
    guarded(`copying ${b.sourceName} range ${input.rangeIndex}`, async () => {
      const { range: r, lo, hi } = await resolveRange(b, input.plan, at(input));
      Object.assign(site, { lo, hi });
      return withCopyClients(input.spec, async (src, tgt) => {
        const { s, t, rows } = await replaceAndMeasure(src, tgt, b, r);
        const checks = compareMeasured(b, s, t);
        const status = statusOf(input, checks);
        const params = ledgerParams(input, b, lo, hi, status, s.profile, t.profile, checks, true);
        if (sameLedger) await tgt.query(RECORD_RANGE, params);
        await tgt.query('COMMIT');
        await src.query('COMMIT');
        if (!sameLedger) await poolFor(controlAlias(input.spec), 'write').query(RECORD_RANGE, params);
        return result(status, lo, hi, s.profile, t.profile, checks, rows);
      });
    }),
  );
}

/** Verify one range without copying: both sides measured as they are now, at the same time. */
export async function verifyRange(input: RangeInput): Promise<RangeResult> {
  const b = await bindingFor(input.spec, input.table, input.tableIndex);
  return keepingLastError(input, b, (site) =>
    guarded(`verifying ${b.sourceName} range ${input.rangeIndex}`, async () => {
      const { range: r, lo, hi } = await resolveRange(b, input.plan, at(input));
      Object.assign(site, { lo, hi });
      const [s, t] = await Promise.all([
        measure(poolFor(input.spec.source, 'read'), b, 'source', r),
        measure(poolFor(input.spec.target, 'write'), b, 'target', r),
      ]);
      const checks = compareMeasured(b, s, t);
      const status = statusOf(input, checks);
      await poolFor(controlAlias(input.spec), 'write').query(RECORD_RANGE, ledgerParams(input, b, lo, hi, status, s.profile, t.profile, checks, false));
      return result(status, lo, hi, s.profile, t.profile, checks, 0);
    }),
  );
}

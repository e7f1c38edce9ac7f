// The range activities. copyRange: copy one range (source snapshot -> worker -> target, one target
// transaction), then prove it: count, checksum, aggregates, distributions and duplicate keys on
// both sides, recorded in the ledger in the same transaction. Running it twice leaves the target
// identical: the range is deleted before it is copied. verifyRange: the same proof, no copy.
import { ApplicationFailure } from '@temporalio/common';
import { log } from '@temporalio/activity';
import { controlAlias, type MigrationSpec, type TableSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import { RECORD_COPY_POINT, RECORD_RANGE, RECORD_RANGE_ERROR, RECORD_RANGE_REFUSED } from '../db/ledger';
import { atSnapshot, epochOf, type SnapshotRef } from './snapshot';
import { redact } from '../db/redact';
import { guarded } from '../db/errors';
import { plannedBinding, type Binding } from '../plan/binding';
import { WORKER_ID } from '../activities/heartbeat';
import { resolveRange } from '../plan/bounds';
import type { TablePlan } from '../domain/plan';
import { withCopyClients } from './pipe';
import { ensureSetAside } from '../schema/constraints';
import { compareMeasured, measure, replaceAndMeasure } from './measure';
import { failedChecks, type Checks, type SideProfile } from './compare';
import { refusedCheck, type RangeResult, type Refusal } from '../domain/range-lifecycle';
import { countAttempt, countCopied, secondsSince, type RangeMode, type Where } from '../activities/metrics';
import { reusable } from '../plan/resume';
import type { KeyRange } from '../db/sql';

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
  /** change capture: the snapshot epoch the source is read at (its copy point) */
  epoch?: number;
  /**
   * copyRange, a resumed migration's first attempt at the range: where the ledger has it verified by
   * the earlier run (src/policy/resume.ts), both sides are measured first and the copy happens only
   * if they differ
   */
  reuse?: boolean;
}

/** The snapshot a range reads the source at, under change capture. */
export const snapshotRefOf = (input: Pick<RangeInput, 'migration' | 'spec' | 'epoch'>): SnapshotRef | undefined =>
  input.epoch === undefined ? undefined : { migration: input.migration, spec: input.spec, epoch: input.epoch };

function statusOf(input: RangeInput, checks: Checks): RangeResult['status'] {
  if (checks.ok) return 'verified';
  return input.finalAttempt ? 'failed' : 'mismatch';
}

function ledgerParams(
  input: RangeInput,
  b: Binding,
  lo: string,
  hi: string,
  status: string,
  s: SideProfile,
  t: SideProfile,
  checks: Checks,
  copied: boolean,
): unknown[] {
  return [
    input.migration,
    input.tableIndex,
    input.rangeIndex,
    b.sourceName,
    b.targetName,
    lo,
    hi,
    status,
    input.attempt,
    s.count,
    s.checksum,
    t.count,
    t.checksum,
    JSON.stringify(checks),
    WORKER_ID,
    copied,
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

/** Where a range's bounds are resolved: its migration, table and index, and the aliases that hold them. */
export const rangeAt = (input: RangeInput) => ({
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
        // The failure itself goes on to the workflow; only the ledger's copy of it is lost: said.
        .catch((le: unknown) =>
          log.warn("could not record a range's last error in the ledger", {
            migration: input.migration,
            range: input.rangeIndex,
            error: String((le as Error)?.message ?? le),
          }),
        );
    }
    throw e;
  }
}

const INTEGRITY = /^23/;

/** The key named in "Key (id)=(17) already exists." when those columns are the table's key. */
function keyFromDetail(detail: string | undefined, key: string[]): string[] | null {
  const m = /^Key \((.*)\)=\((.*)\)/.exec(detail ?? '');
  if (!m) return null;
  const cols = m[1].split(', ').map((c) => c.replace(/^"(.*)"$/, '$1'));
  const vals = m[2].split(', ');
  return cols.length === key.length && cols.every((c, i) => c === key[i]) && vals.length === key.length ? vals : null;
}

/**
 * The key in "Failing row contains (142, 42)." (check and not-null constraints): the row's values in
 * the target's column order, read only when they split into exactly one value per column.
 */
function keyFromRow(detail: string | undefined, key: string[], columns: string[]): string[] | null {
  const m = /^Failing row contains \((.*)\)\.$/.exec(detail ?? '');
  if (!m) return null;
  const vals = m[1].split(', ');
  if (vals.length !== columns.length) return null;
  const at = key.map((k) => columns.indexOf(k));
  return at.every((i) => i >= 0) ? at.map((i) => vals[i]) : null;
}

/** A row the target would not take (class 23: check, unique, not-null, foreign key), or undefined. */
function refusalOf(e: unknown, b: Binding): Refusal | undefined {
  const err = e as { code?: string; constraint?: string; detail?: string; message?: string };
  if (typeof err?.code !== 'string' || !INTEGRITY.test(err.code)) return undefined;
  const detail = err.detail ? ` (${err.detail})` : '';
  const key = keyFromDetail(err.detail, b.key) ?? keyFromRow(err.detail, b.key, b.targetColumns);
  return { constraint: err.constraint ?? null, message: redact(`${err.message ?? ''}${detail}`), key };
}

const NO_EVIDENCE = { count: '0', checksum: '0' };

/** An attempt that threw (a lost connection, a dropped column) still counts, as an error. */
async function counted<T>(w: Where, mode: RangeMode, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    countAttempt(w, mode, 'error');
    throw e;
  }
}

const whereOf = (input: RangeInput): Where => ({ migration: input.migration, table: input.plan.source });

/** Copy one range and verify it, in one target transaction and one source snapshot. */
export async function copyRange(input: RangeInput): Promise<RangeResult> {
  const w = whereOf(input);
  if (input.reuse) {
    const look = await counted(w, 'verify', () => verifyReusable(input, w));
    if (look?.reuse === 'reused') return look;
    const copied = await counted(w, 'copy', () => copyRangeOnce(input, w));
    return look ? { ...copied, reuse: 'differed' } : copied;
  }
  return counted(w, 'copy', () => copyRangeOnce(input, w));
}

/**
 * A resumed migration's range that the earlier run verified: both sides measured as they are now.
 * Equal: verified again, nothing copied (reuse `reused`). Not equal: recorded as a mismatch, and
 * the caller copies it (`differed`). Undefined: the ledger does not have it verified.
 */
async function verifyReusable(input: RangeInput, w: Where): Promise<RangeResult | undefined> {
  const b = await plannedBinding(input.spec, input.table, input.tableIndex, input.plan);
  return keepingLastError(input, b, (site) =>
    guarded(`verifying ${b.sourceName} range ${input.rangeIndex}`, async () => {
      const { range: r, lo, hi } = await resolveRange(b, input.plan, rangeAt(input));
      Object.assign(site, { lo, hi });
      if (!(await reusable(poolFor(controlAlias(input.spec), 'write'), input.migration, input.tableIndex, input.rangeIndex, lo, hi))) return undefined;
      const { s, t, checks, verifySeconds } = await measureBoth(input, b, r);
      // A range that differs is copied next, in this attempt: a mismatch, never the range's verdict.
      const status = checks.ok ? 'verified' : 'mismatch';
      await poolFor(controlAlias(input.spec), 'write').query(RECORD_RANGE, ledgerParams(input, b, lo, hi, status, s.profile, t.profile, checks, false));
      countAttempt(w, 'verify', status, { verifySeconds, sourceRows: s.profile.count });
      return { ...result(status, lo, hi, s.profile, t.profile, checks, 0), reuse: checks.ok ? 'reused' : 'differed' };
    }),
  );
}

/** Both sides of a range measured as they are now, at the same time, and compared. */
async function measureBoth(input: RangeInput, b: Binding, r: KeyRange) {
  const started = performance.now();
  const [s, t] = await Promise.all([
    atSnapshot(poolFor(input.spec.source, 'read'), snapshotRefOf(input), (c) => measure(c, b, 'source', r)),
    measure(poolFor(input.spec.target, 'write'), b, 'target', r),
  ]);
  return { s, t, checks: compareMeasured(b, s, t), verifySeconds: secondsSince(started) };
}

async function copyRangeOnce(input: RangeInput, w: Where): Promise<RangeResult> {
  const b = await plannedBinding(input.spec, input.table, input.tableIndex, input.plan);
  const sameLedger = controlAlias(input.spec) === input.spec.target;
  return keepingLastError(input, b, (site) =>
    guarded(`copying ${b.sourceName} range ${input.rangeIndex}`, async () => {
      const { range: r, lo, hi } = await resolveRange(b, input.plan, rangeAt(input));
      Object.assign(site, { lo, hi });
      const refused = (e: unknown) => refusalOf(e, b);
      // A rerun after the constraints were restored: set them aside again before any row is deleted.
      if (input.plan.setAside?.length) await ensureSetAside(input.spec, input.migration, b.target);
      return withCopyClients(input.spec, async (src, tgt) => {
        const at = snapshotRefOf(input);
        const { s, t, rows, bytes, copySeconds, verifySeconds } = await replaceAndMeasure(src, tgt, b, r, at);
        const checks = compareMeasured(b, s, t);
        const status = statusOf(input, checks);
        const params = ledgerParams(input, b, lo, hi, status, s.profile, t.profile, checks, true);
        const point = at ? (await epochOf(at))?.point : undefined;
        const pointParams = [input.migration, input.tableIndex, input.rangeIndex, point];
        if (sameLedger) {
          await tgt.query(RECORD_RANGE, params);
          if (point) await tgt.query(RECORD_COPY_POINT, pointParams);
        }
        await tgt.query('COMMIT');
        await src.query('COMMIT');
        // Counted once the rows are committed: a rolled-back attempt wrote nothing.
        countCopied(w, rows, bytes);
        if (!sameLedger) {
          await poolFor(controlAlias(input.spec), 'write').query(RECORD_RANGE, params);
          if (point) await poolFor(controlAlias(input.spec), 'write').query(RECORD_COPY_POINT, pointParams);
        }
        countAttempt(w, 'copy', status, { copySeconds, verifySeconds, sourceRows: s.profile.count });
        return result(status, lo, hi, s.profile, t.profile, checks, rows);
      }).catch(async (e: unknown): Promise<RangeResult> => {
        // The target refused a row: the range waits for the operator to fix the target and rerun it.
        const r = refused(e);
        if (!r) throw e;
        await poolFor(controlAlias(input.spec), 'write').query(RECORD_RANGE_REFUSED, [
          input.migration,
          input.tableIndex,
          input.rangeIndex,
          b.sourceName,
          b.targetName,
          lo,
          hi,
          input.attempt,
          JSON.stringify({ refused: r }),
          r.message,
          WORKER_ID,
        ]);
        countAttempt(w, 'copy', 'refused');
        return { status: 'refused', lo, hi, source: NO_EVIDENCE, target: NO_EVIDENCE, failed: [refusedCheck(r)], rowsCopied: 0, refused: r };
      });
    }),
  );
}

/** Verify one range without copying: both sides measured as they are now, at the same time. */
export async function verifyRange(input: RangeInput): Promise<RangeResult> {
  const w = whereOf(input);
  return counted(w, 'verify', async () => {
    const b = await plannedBinding(input.spec, input.table, input.tableIndex, input.plan);
    return keepingLastError(input, b, (site) =>
      guarded(`verifying ${b.sourceName} range ${input.rangeIndex}`, async () => {
        const { range: r, lo, hi } = await resolveRange(b, input.plan, rangeAt(input));
        Object.assign(site, { lo, hi });
        const { s, t, checks, verifySeconds } = await measureBoth(input, b, r);
        const status = statusOf(input, checks);
        await poolFor(controlAlias(input.spec), 'write').query(RECORD_RANGE, ledgerParams(input, b, lo, hi, status, s.profile, t.profile, checks, false));
        countAttempt(w, 'verify', status, { verifySeconds, sourceRows: s.profile.count });
        return result(status, lo, hi, s.profile, t.profile, checks, 0);
      }),
    );
  });
}

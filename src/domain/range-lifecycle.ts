// A range's life cycle, decided once: attempt it (copy, or measure in verify mode), and if it still
// differs after the attempts the spec allows, locate its exact keys and mark it failed. The
// workflow runs it with activities and workflow timers; the sweep runs it in-process with the same
// functions called directly. Pure: the steps are passed in, so this module does no I/O itself.
import type { Reuse } from './resume';

/** The keys of a mismatched range, located inside the databases (counts exact; the ledger keeps every key). */
export interface Located {
  missing: number;
  extra: number;
  changed: number;
  duplicates: number;
  keys: { missing: string[][]; extra: string[][]; changed: string[][]; duplicates: string[][] };
  /** column -> number of changed rows in which it differs */
  columns: Record<string, number>;
  /** bucket levels the narrowing went through */
  levels: number;
  /** rows whose keys and hashes travelled to the worker, both sides */
  rowsFetched: number;
  /** keys located earlier that matched when read again after the lag grace (verify mode) */
  converged?: number;
}

export interface SideEvidence {
  count: string;
  checksum: string;
}

/** What one attempt at a range found (the range activities return this). */
/** A row the target would not take: the constraint, the database's words, and the row's key when they name it. */
export interface Refusal {
  constraint: string | null;
  message: string;
  key: string[] | null;
}

/** The name a refusal goes by among a range's failed checks: `refused(<constraint>)`. */
export function refusedCheck(r: Refusal): string {
  return `refused${r.constraint ? `(${r.constraint})` : ''}`;
}

export interface RangeResult {
  /** refused: the target would not take a row (a constraint); no attempt helps until the target is fixed */
  status: 'verified' | 'mismatch' | 'failed' | 'refused';
  lo: string;
  hi: string;
  source: SideEvidence;
  target: SideEvidence;
  /** the names of the checks that failed */
  failed: string[];
  rowsCopied: number;
  refused?: Refusal;
  /** a resumed migration's range the earlier run verified: verified again without a copy, or copied because it differed */
  reuse?: Reuse;
  /** the worker that ran this attempt (host:pid), as the ledger records it */
  worker?: string;
  /** where the worker caps our sessions per database (BACKFILL_SESSIONS): the caps by alias, and how long this attempt's sessions waited for one */
  sessions?: SessionUse;
}

export interface SessionUse {
  caps: Record<string, number>;
  waitedMs: number;
}

/** A range that still differs after its attempts, with what locating found. */
export interface FailedRange {
  index: number;
  lo: string;
  hi: string;
  /** attempts actually made */
  attempts: number;
  source: SideEvidence;
  target: SideEvidence;
  failed: string[];
  located?: Located;
  /** the target refused a row: fix the target, then rerun the range */
  refused?: Refusal;
}

export interface RangePolicy {
  /** attempts before a range that still differs is final (retries.rangeAttempts) */
  attempts: number;
  /** how long to wait before attempt `n + 1` after attempt `n` differed */
  waitMs(n: number): number;
  /** true: the migration is stopping, so the attempt under way is the last one */
  stopping?: () => boolean;
  /**
   * Verify mode: a range that differs is located at once. With a grace (ms > 0; verify.lagGrace),
   * its located keys are read again after it, by key, and only once none differs is the whole
   * range measured again; `attempts` bounds the looks.
   */
  locateFirst?: { graceMs: number };
}

/**
 * The policy for a mode. `copy`: a mismatched range is copied again at once. `verify`: nothing is
 * copied, so the range is measured again a little later: a target loaded by replication may lag.
 */
export function rangePolicy(mode: 'copy' | 'verify', rangeAttempts: number, stopping?: () => boolean): RangePolicy {
  return { attempts: rangeAttempts, waitMs: (n) => (mode === 'verify' ? Math.min(60_000, 2_000 * n) : 0), stopping };
}

/** Verify mode as it is now: locate at the first difference, then wait out the lag grace, if any, by key. */
export function locateFirstPolicy(rangeAttempts: number, graceMs: number, stopping?: () => boolean): RangePolicy {
  return { attempts: rangeAttempts, waitMs: (n) => graceMs * 2 ** (n - 1), stopping, locateFirst: { graceMs } };
}

/**
 * The steps of a range. In the workflow each returns its activity's (or timer's) promise directly,
 * with no async wrapper: the order of the commands that concurrent ranges schedule within one
 * workflow task depends on how many microtask turns lie between an activity's completion and the
 * next command, and recorded histories fix that order.
 */
export interface RangeSteps {
  /** attempt `n`; `final`: a mismatch now is the range's verdict */
  attempt(n: number, final: boolean): Promise<RangeResult>;
  /** what attempt `n` found, as soon as it is known (counters) */
  attempted?(r: RangeResult, n: number): void;
  /** narrow a failed range down to its keys after its final attempt `n` (undefined: not located) */
  locate(n: number): Promise<Located | undefined>;
  wait(ms: number): Promise<void>;
  /** locate-first: read the located keys again on both sides (look `n`) */
  recheck?(n: number): Promise<Located>;
  /** locate-first: the range waits out the grace without holding a slot of the window */
  release?(): void;
}

export type RangeOutcome = { verified: true; attempts: number; last: RangeResult; converged?: number } | { verified: false; failure: FailedRange };

const differing = (l: Located) => l.missing + l.extra + l.changed + l.duplicates;

export async function runRange(index: number, policy: RangePolicy, steps: RangeSteps): Promise<RangeOutcome> {
  if (policy.locateFirst) return locateFirst(index, policy, policy.locateFirst.graceMs, steps);
  for (let n = 1; ; n++) {
    // Decided before the attempt: a stop requested while it runs leaves it as it started.
    const final = n >= policy.attempts || (policy.stopping?.() ?? false);
    const r = await steps.attempt(n, final);
    steps.attempted?.(r, n);
    if (r.status === 'verified') return { verified: true, attempts: n, last: r };
    if (r.status === 'refused') {
      // Nothing to locate and no use trying again: the target's own rule stops it.
      return { verified: false, failure: { index, lo: r.lo, hi: r.hi, attempts: n, source: r.source, target: r.target, failed: r.failed, refused: r.refused } };
    }
    if (final) {
      // The evidence (every key) stays in the ledger; the failure carries counts and a sample.
      const located = await steps.locate(n);
      return { verified: false, failure: { index, lo: r.lo, hi: r.hi, attempts: n, source: r.source, target: r.target, failed: r.failed, located } };
    }
    const ms = policy.waitMs(n);
    if (ms > 0) await steps.wait(ms);
  }
}

/**
 * Verify mode: measure once; a range that differs is located at once (the narrowing runs in the
 * databases and is cheap). A target that lags (a replica) gets the grace: the located keys alone are
 * read again after it, and again after twice as long, until none differs or the looks run out; then
 * the whole range is measured once more, which is the proof. Keys that matched are counted as
 * converged. Without a grace, the located range is the verdict: nothing waits.
 */
async function locateFirst(index: number, policy: RangePolicy, graceMs: number, steps: RangeSteps): Promise<RangeOutcome> {
  let look = 1;
  let r = await steps.attempt(look, true);
  steps.attempted?.(r, look);
  if (r.status === 'verified') return { verified: true, attempts: look, last: r };
  const fail = (located?: Located): RangeOutcome => ({
    verified: false,
    failure: {
      index,
      lo: r.lo,
      hi: r.hi,
      attempts: look,
      source: r.source,
      target: r.target,
      failed: r.failed,
      ...(located ? { located } : {}),
      ...(r.refused ? { refused: r.refused } : {}),
    },
  });
  if (r.status === 'refused') return fail();
  let located = await steps.locate(look);
  if (!(graceMs > 0) || !located || !steps.recheck || differing(located) === 0) return fail(located);
  steps.release?.();
  let converged = 0;
  for (let wait = 1; look < policy.attempts && !(policy.stopping?.() ?? false); wait++) {
    await steps.wait(policy.waitMs(wait));
    look++;
    const again: Located = await steps.recheck(look);
    converged += again.converged ?? 0;
    located = { ...again, converged };
    if (differing(again) > 0) continue;
    // No located key differs any more: the whole range again, as the proof.
    r = await steps.attempt(look, true);
    steps.attempted?.(r, look);
    if (r.status === 'verified') return { verified: true, attempts: look, last: r, converged };
    if (r.status === 'refused') return fail();
    const found = await steps.locate(look);
    located = found ? { ...found, converged } : located;
    if (!found || differing(found) === 0) break;
  }
  return fail(located);
}

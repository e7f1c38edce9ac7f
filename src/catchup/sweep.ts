// A sweep: every range of a table measured again on both sides, and (with `repair`) the ranges
// that changed copied again. This is how catch-up sees deletes (a change column cannot) and how
// the final check proves every range. One activity per table, not one per range, so a sweep of
// 100,000 ranges costs the workflow a few events; it heartbeats its cursor and a retry resumes there.
import { lagGraceMs, tableOf, type OneTable } from '../spec/schema';
import { poolFor } from '../db/pools';
import { PREFER_INDEX, type Selection } from '../db/sql';
import { guarded } from '../db/errors';
import { plannedBinding } from '../plan/binding';
import { heartbeat, previousDetails } from '../activities/heartbeat';
import { locateRange, recheckRange } from '../range/locate';
import { copyRange, snapshotRefOf, verifyRange, type RangeInput } from '../range/copy';
import { atSnapshot } from '../range/snapshot';
import { withCopyClients } from '../range/pipe';
import { ensureSetAside } from '../schema/constraints';
import { compareMeasured, measure, replaceAndMeasure, throughIndex } from '../range/measure';
import { planSpan } from '../plan/bounds';
import type { TablePlan } from '../domain/plan';
import { countCopied } from '../activities/metrics';
import { locateFirstPolicy, rangePolicy, runRange, type FailedRange, type RangeResult, type RangeSteps } from '../domain/range-lifecycle';

export interface SweepInput extends OneTable {
  migration: string;
  plan: TablePlan;
  /** copy again the ranges (and the rows outside them) that differ; otherwise only report them */
  repair: boolean;
  /** change capture: the source is read at this epoch's snapshot (a checkpoint) */
  epoch?: number;
}

export interface SweepResult {
  checked: number;
  /** ranges that differed when measured */
  changed: number;
  /** ranges copied again (repair) */
  recopied: number;
  rowsCopied: number;
  /** ranges that still differ: marked failed in the ledger, located */
  failed: FailedRange[];
  /** rows outside the planned span: equal on both sides (after a repair, if one was needed) */
  outside: { source: string; target: string; equal: boolean; repaired: boolean };
}

/** Ranges measured at once within a sweep (each holds a connection per side). */
const SWEEP_PARALLEL_MAX = 8;

export async function sweepTable(input: SweepInput): Promise<SweepResult> {
  const { spec, tableIndex: t, plan } = input;
  const table = tableOf(input);
  const base = {
    migration: input.migration,
    spec: { source: spec.source, target: spec.target, control: spec.control, mode: spec.mode },
    table,
    tableIndex: t,
    plan,
    ...(input.epoch !== undefined ? { epoch: input.epoch } : {}),
  };
  const args = (i: number, attempt: number, finalAttempt: boolean): RangeInput => ({ ...base, rangeIndex: i, attempt, finalAttempt });

  const start = Math.max(0, Math.min(plan.rangeCount, Number(previousDetails().next ?? 0) || 0));
  const out: SweepResult = {
    checked: 0,
    changed: 0,
    recopied: 0,
    rowsCopied: 0,
    failed: [],
    outside: { source: '0', target: '0', equal: true, repaired: false },
  };
  const open = new Set<number>();
  let next = start;
  const cursor = () => (open.size ? Math.min(...open) : next);

  const repairs = input.repair && spec.mode === 'copy';
  const wait = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
  const steps = (i: number, attempt: (n: number, final: boolean) => Promise<RangeResult>): RangeSteps => ({
    attempt,
    attempted: (r) => {
      out.rowsCopied += r.rowsCopied;
    },
    locate: (n) => locateRange(args(i, n, true)),
    recheck: (n) => recheckRange(args(i, n, true)),
    wait,
  });
  const one = async (i: number) => {
    let outcome;
    if (repairs) {
      // A look first (not an attempt): only a range that changed is copied again, by the range policy.
      const v = await verifyRange(args(i, 1, false));
      out.checked++;
      if (v.status === 'verified') return;
      out.changed++;
      outcome = await runRange(
        i,
        rangePolicy('copy', spec.retries.rangeAttempts),
        steps(i, (n, final) => {
          out.recopied++;
          return copyRange(args(i, n, final));
        }),
      );
    } else {
      // Nothing will copy it: verify mode goes by its range policy (located at once, the keys
      // read again after the lag grace, as the workflow does); a copy-mode range that changed is
      // reported after one look.
      let looked = false;
      const policy = spec.mode === 'verify' ? locateFirstPolicy(spec.retries.rangeAttempts, lagGraceMs(spec)) : rangePolicy('copy', 1);
      outcome = await runRange(
        i,
        policy,
        steps(i, async (n, final) => {
          const r = await verifyRange(args(i, n, final));
          if (!looked) {
            looked = true;
            out.checked++;
            if (r.status !== 'verified') out.changed++;
          }
          return r;
        }),
      );
    }
    if (!outcome.verified) out.failed.push(outcome.failure);
  };

  const parallel = Math.max(1, Math.min(spec.concurrency, SWEEP_PARALLEL_MAX));
  const lanes = Array.from({ length: parallel }, async () => {
    while (next < plan.rangeCount) {
      const i = next++;
      open.add(i);
      try {
        await one(i);
      } finally {
        open.delete(i);
        heartbeat({ next: cursor(), checked: out.checked });
      }
    }
  });
  await Promise.all(lanes);

  out.outside = await sweepOutside(input, repairs);
  out.failed.sort((x, y) => x.index - y.index);
  return out;
}

/** The rows outside the planned span (inserted beyond it since planning): compared, and copied if asked. */
export async function sweepOutside(input: SweepInput, repair: boolean): Promise<SweepResult['outside']> {
  const { spec, tableIndex: t } = input;
  const b = await plannedBinding(spec, tableOf(input), t, input.plan);
  const sel: Selection = { outside: planSpan(input.plan) };
  return guarded(`checking the rows outside the ranges of ${b.sourceName}`, async () => {
    const at = snapshotRefOf({ migration: input.migration, spec, epoch: input.epoch });
    const [s, d] = await Promise.all([
      at
        ? atSnapshot(poolFor(spec.source, 'read'), at, async (c) => {
            await c.query(PREFER_INDEX);
            return measure(c, b, 'source', sel);
          })
        : throughIndex(poolFor(spec.source, 'read'), (c) => measure(c, b, 'source', sel)),
      throughIndex(poolFor(spec.target, 'write'), (c) => measure(c, b, 'target', sel)),
    ]);
    const equal = compareMeasured(b, s, d).ok;
    if (equal || !repair) return { source: s.profile.count, target: d.profile.count, equal, repaired: false };
    // Delete and copy in one target transaction from one source snapshot, then prove it there.
    if (input.plan.setAside?.length) await ensureSetAside(spec, input.migration, b.target);
    return withCopyClients(spec, async (src, tgt) => {
      const { s: s2, t: d2, rows, bytes } = await replaceAndMeasure(src, tgt, b, sel, at);
      await tgt.query('COMMIT');
      await src.query('COMMIT');
      countCopied({ migration: input.migration, table: input.plan.source }, rows, bytes);
      return { source: s2.profile.count, target: d2.profile.count, equal: compareMeasured(b, s2, d2).ok, repaired: true };
    });
  });
}

// A sweep: every range of a table measured again on both sides, and (with `repair`) the ranges
// that changed copied again. This is how catch-up sees deletes (a change column cannot) and how
// the final check proves every range. One activity per table, not one per range, so a sweep of
// 100,000 ranges costs the workflow a few events; it heartbeats its cursor and a retry resumes there.
import type { MigrationSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import type { Selection } from '../db/sql';
import { guarded } from '../db/errors';
import { bindingFor } from './binding';
import { heartbeat, previousDetails } from './heartbeat';
import { locateRange, type Located } from './locate';
import { compareMeasured, copyRange, measure, replaceAndMeasure, throughIndex, verifyRange, withCopyClients, type RangeInput, type RangeResult } from './range';
import { planSpan, type TablePlan } from './ranges';

export interface SweepInput {
  migration: string;
  spec: MigrationSpec;
  tableIndex: number;
  plan: TablePlan;
  /** copy again the ranges (and the rows outside them) that differ; otherwise only report them */
  repair: boolean;
}

export interface SweptFailure {
  index: number;
  lo: string;
  hi: string;
  attempts: number;
  source: { count: string; checksum: string };
  target: { count: string; checksum: string };
  failed: string[];
  located?: Located;
}

export interface SweepResult {
  checked: number;
  /** ranges that differed when measured */
  changed: number;
  /** ranges copied again (repair) */
  recopied: number;
  rowsCopied: number;
  /** ranges that still differ: marked failed in the ledger, located */
  failed: SweptFailure[];
  /** rows outside the planned span: equal on both sides (after a repair, if one was needed) */
  outside: { source: string; target: string; equal: boolean; repaired: boolean };
}

/** Ranges measured at once within a sweep (each holds a connection per side). */
const SWEEP_PARALLEL_MAX = 8;

export async function sweepTable(input: SweepInput): Promise<SweepResult> {
  const { spec, tableIndex: t, plan } = input;
  const table = spec.tables[t];
  const base = { migration: input.migration, spec: { source: spec.source, target: spec.target, control: spec.control, mode: spec.mode }, table, tableIndex: t, plan };
  const args = (i: number, attempt: number, finalAttempt: boolean): RangeInput => ({ ...base, rangeIndex: i, attempt, finalAttempt });

  const start = Math.max(0, Math.min(plan.rangeCount, Number(previousDetails().next ?? 0) || 0));
  const out: SweepResult = {
    checked: 0, changed: 0, recopied: 0, rowsCopied: 0, failed: [],
    outside: { source: '0', target: '0', equal: true, repaired: false },
  };
  const open = new Set<number>();
  let next = start;
  const cursor = () => (open.size ? Math.min(...open) : next);

  const repairs = input.repair && spec.mode === 'copy';
  const one = async (i: number) => {
    // Measured as they are now; a difference is final only where nothing will copy it again.
    const v = await verifyRange(args(i, 1, !repairs));
    out.checked++;
    if (v.status === 'verified') return;
    out.changed++;
    let last: RangeResult = v;
    if (repairs) {
      for (let attempt = 1; attempt <= spec.retries.rangeAttempts; attempt++) {
        last = await copyRange(args(i, attempt, attempt >= spec.retries.rangeAttempts));
        out.recopied++;
        out.rowsCopied += last.rowsCopied;
        if (last.status === 'verified') return;
      }
    }
    const located = await locateRange(args(i, 1, true));
    out.failed.push({ index: i, lo: last.lo, hi: last.hi, attempts: spec.retries.rangeAttempts, source: last.source, target: last.target, failed: last.failed, located });
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
async function sweepOutside(input: SweepInput, repair: boolean): Promise<SweepResult['outside']> {
  const { spec, tableIndex: t } = input;
  const b = await bindingFor(spec, spec.tables[t], t);
  const sel: Selection = { outside: planSpan(input.plan) };
  return guarded(`checking the rows outside the ranges of ${b.sourceName}`, async () => {
    const [s, d] = await Promise.all([
      throughIndex(poolFor(spec.source, 'read'), (c) => measure(c, b, 'source', sel)),
      throughIndex(poolFor(spec.target, 'write'), (c) => measure(c, b, 'target', sel)),
    ]);
    const equal = compareMeasured(b, s, d).ok;
    if (equal || !repair) return { source: s.profile.count, target: d.profile.count, equal, repaired: false };
    // Delete and copy in one target transaction from one source snapshot, then prove it there.
    return withCopyClients(spec, async (src, tgt) => {
      const { s: s2, t: d2 } = await replaceAndMeasure(src, tgt, b, sel);
      await tgt.query('COMMIT');
      await src.query('COMMIT');
      return { source: s2.profile.count, target: d2.profile.count, equal: compareMeasured(b, s2, d2).ok, repaired: true };
    });
  });
}

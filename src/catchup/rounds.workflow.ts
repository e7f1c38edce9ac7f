// Catching up with a source that keeps taking writes: rounds over the tables' change columns,
// then a sweep of every range (deletes are invisible to a change column).
import { condition, patched } from '@temporalio/workflow';
import { catchUpOf, durationMs, oneTable } from '../spec/schema';
import { summarised } from '../workflows/activities';
import type { MigrationState } from '../workflows/state';
import { oldestMark } from './state.workflow';

/** One catch-up round over the tables with a change column; false when a window did not verify. */
export async function deltaRound(s: MigrationState): Promise<boolean> {
  const l = s.live!;
  let applied = 0;
  let ok = true;
  let more = false;
  for (const [t, mark] of l.marks.entries()) {
    if (mark === null) continue;
    const r = await summarised(`catch up ${s.ranges.tables[t].plan.source} from ${mark}`).applyDelta({
      migration: s.name,
      ...oneTable(s.spec, t),
      since: mark,
    });
    s.catchup.marked(t, r.watermark);
    applied += r.upserted + r.deleted;
    s.ranges.copied(t, r.upserted);
    ok &&= r.verified;
    more ||= r.more;
  }
  s.catchup.applied(applied, more ? Math.max(applied, catchUpOf(s.spec).remaining + 1) : applied);
  s.touch();
  return ok;
}

/**
 * Every range measured again and the changed ones copied again; ranges that still differ fail and
 * wait in needs_attention.
 */
export async function sweep(s: MigrationState, o: { epoch?: number } = {}): Promise<void> {
  for (const [t, st] of s.ranges.tables.entries()) {
    // Change capture compares at a checkpoint's snapshot and repairs nothing: a difference is a finding.
    const at = o.epoch !== undefined ? { epoch: o.epoch, repair: false } : { repair: true };
    const r = await summarised(`measure every range of ${st.plan.source} again (${st.plan.rangeCount})`).sweepTable({
      migration: s.name,
      ...oneTable(s.spec, t),
      plan: st.plan,
      ...at,
    });
    // A sweep copies only ranges that were copied before and changed since: re-copies.
    s.ranges.copied(t, r.rowsCopied, true);
    s.ranges.measured(t, r.failed);
    s.touch(t);
  }
}

/** Delta rounds until what remains is small, then a sweep; the evidence is then new. */
export async function catchUp(s: MigrationState): Promise<void> {
  s.setPhase('catching_up', 'applying the rows written since the backfill started');
  const c = catchUpOf(s.spec);
  if (s.catchup.hasDelta()) {
    // (Patched: migrations started before this waited `interval` after every round, and converged
    // only when a round's rows were few.)
    const byLag = patched('catch-up-by-lag');
    const maxLag = durationMs(c.maxLag);
    for (let round = 1; round <= c.maxRounds && s.control.aborted === undefined; round++) {
      const started = Date.now();
      const ok = await deltaRound(s);
      const took = Date.now() - started;
      s.describe(`round ${round}: ${s.live!.remaining} row(s) applied in ${(took / 1000).toFixed(1)} s; watermark ${oldestMark(s.live!.marks)}`);
      s.showDetails();
      if (ok && s.live!.remaining <= c.remaining) break;
      // A round that took at most maxLag leaves the target at most that far behind.
      if (byLag && ok && took <= maxLag) break;
      // Behind: the next round at once; only a round with nothing to apply waits.
      if (byLag && s.live!.remaining > 0) continue;
      await condition(() => s.control.aborted !== undefined, durationMs(c.interval));
    }
  }
  if (s.control.aborted !== undefined) return;
  s.describe('checking every range again');
  await sweep(s);
}

// The tripwire of change capture's final window. The window compares the keys the stream saw change
// since the checkpoint; a change the stream never carried (a bug, a table left out of the
// publication for a moment, a leaf partition truncated, a table rewritten) would not be among them.
// What accounts for it at less than the cost of measuring every range:
// - each relation's storage (pg_relation_filenode): a TRUNCATE, VACUUM FULL, CLUSTER or rewrite
//   changes it, and the stream does not always say so (a leaf partition's TRUNCATE under
//   publish_via_partition_root sends nothing): red;
// - the rows (row-versions.ts): every row version written on either side since the checkpoint,
//   found by its transaction id and compared by key, the rest counted and their keys summed. One
//   scan per side, exact whatever the writers do; the default;
// - the write counters (pg_stat_user_tables: rows inserted, updated, deleted) of the table and every
//   partition under it: since the checkpoint they must equal the changes the stream delivered.
//   Nothing but the catalog is read, but they count aborted writes too, a checkpoint taken under
//   steady writes leaves some unreported, and a session reports them only when idle (see
//   untilReported): they prove a quiet source only.
// When neither proves the window, the final check measures every range on the frozen source. Never
// green on a guess.
import type { MigrationSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import { guarded } from '../db/errors';
import { COUNTERS_USABLE_SQL, DELIVERED_SINCE, UNREPORTED_SESSIONS_SQL, WAL_INSERT_SQL, WRITES_AND_STORAGE_SQL } from './sql';
import { bindingFor } from '../plan/binding';
import { heartbeat } from '../activities/heartbeat';
import { setting } from '../settings';
import { rowVersions, xminNow } from './row-versions';
import type { CaptureBaseline } from './baseline';

export interface TripwireResult {
  /** relations whose storage changed since the checkpoint: the window cannot vouch for them */
  rewritten: string[];
  /** every write the counters saw since the checkpoint is a change the stream delivered */
  accounted: boolean;
  /** for people: how it was judged */
  detail: string;
}

/** Counters settle once a second (a backend's stats are flushed at most that often). */
const SETTLE_MS = 1_100;
const SETTLE_LIMIT_MS = 2_500;

async function tableStates(spec: MigrationSpec): Promise<{ writes: string; storage: [string, string | null][] }[]> {
  const src = poolFor(spec.source, 'read');
  const out = [];
  for (const [i, t] of spec.tables.entries()) {
    const b = await bindingFor(spec, t, i);
    const r = (await src.query<{ writes: string; storage: string }>(WRITES_AND_STORAGE_SQL, [b.sourceRel.oid])).rows[0];
    out.push({ writes: r.writes, storage: JSON.parse(r.storage) as [string, string | null][] });
  }
  return out;
}

/** Read at a checkpoint, before its snapshot: the counters first, then the WAL position. */
export async function captureBaseline(input: { spec: MigrationSpec }): Promise<CaptureBaseline> {
  return guarded("reading the source's write counters", async () => {
    const src = poolFor(input.spec.source, 'read');
    const usable = Boolean((await src.query<{ usable: boolean }>(COUNTERS_USABLE_SQL)).rows[0].usable);
    const xmin = await xminNow(input.spec);
    const tables = await tableStates(input.spec);
    const lsn = (await src.query<{ lsn: string }>(WAL_INSERT_SQL)).rows[0].lsn;
    return { lsn, usable, tables, xmin };
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A session idle this long has reported every count (PostgreSQL's idle report interval is 10 s). */
const REPORTED_AFTER_S = 10.5;

/**
 * Waits until every other session on the source has reported its counts: idle ones, until they have
 * been idle long enough; a busy one (or one whose state is hidden) may hold counts until it is next
 * idle, so none is waited for. Returns how many sessions still may not have reported (0: all).
 */
async function untilReported(spec: MigrationSpec): Promise<number> {
  const src = poolFor(spec.source, 'read');
  for (let look = 0; ; look++) {
    const r = (await src.query<{ busy: number; wait_s: number }>(UNREPORTED_SESSIONS_SQL, [REPORTED_AFTER_S])).rows[0];
    if (r.busy > 0) return r.busy;
    if (r.wait_s <= 0) return 0;
    // Sessions that keep waking up (idle, busy, idle again) are not waited for without end.
    if (look >= 2) return 1;
    heartbeat({ settling: true });
    await sleep(Math.ceil(r.wait_s * 1000) + 50);
  }
}

/**
 * On the frozen source, after the stream reached the freeze's fence. Storage first (a rewrite is
 * red whatever else says), then the proofs in the worker's order (BACKFILL_WINDOW_PROOF): the rows
 * (their versions since the checkpoint) and the counters; the first that can decide, decides.
 */
export async function captureTripwire(input: {
  migration: string;
  spec: MigrationSpec;
  baseline: CaptureBaseline;
  /** the way back's switch back (its spec reversed): the verdicts name the sides as a person knows them */
  back?: boolean;
}): Promise<TripwireResult> {
  const { spec, baseline } = input;
  return guarded("accounting for the source's writes since the checkpoint", async (): Promise<TripwireResult> => {
    const now = await tableStates(spec);
    const rewritten: string[] = [];
    now.forEach((t, i) => {
      const before = new Map(baseline.tables[i]?.storage ?? []);
      for (const [name, node] of t.storage) if (before.has(name) && before.get(name) !== node) rewritten.push(name);
    });
    if (rewritten.length) return { rewritten, accounted: false, detail: `relations rewritten since ${input.back ? 'the switch' : 'the checkpoint'}` };
    const rows = async (): Promise<{ decided: boolean; accounted: boolean; detail: string }> => {
      if (!baseline.xmin) return { decided: false, accounted: false, detail: 'no transaction ids were read at the checkpoint' };
      const v = await rowVersions({ migration: input.migration, spec, xmin: baseline.xmin, since: baseline.lsn, ...(input.back ? { back: true } : {}) });
      return { decided: v.kind !== 'unusable', accounted: v.kind === 'proven', detail: v.detail };
    };
    if (setting('windowProof') === 'rows') {
      const r = await rows();
      if (r.decided) return { rewritten, accounted: r.accounted, detail: r.detail };
      const c = await countersProof(input, now);
      return { rewritten, accounted: c.accounted, detail: `${r.detail}; ${c.detail}` };
    }
    const c = await countersProof(input, now);
    if (c.accounted) return { rewritten, accounted: true, detail: c.detail };
    const r = await rows();
    return { rewritten, accounted: r.accounted, detail: `${c.detail}; ${r.detail}` };
  });
}

/** The source's write counters against the changes the stream delivered since the checkpoint. */
async function countersProof(
  input: { migration: string; spec: MigrationSpec; baseline: CaptureBaseline },
  states: { writes: string; storage: [string, string | null][] }[],
): Promise<{ accounted: boolean; detail: string }> {
  const { spec, baseline } = input;
  let now = states;
  if (!baseline.usable) return { accounted: false, detail: "the source's write counters cannot prove the window (PostgreSQL before 15, or track_counts off)" };
  const d = await poolFor(spec.target, 'write').query<{ table_index: number; delivered: string; unknown: number }>(DELIVERED_SINCE, [
    input.migration,
    baseline.lsn,
    spec.tables.map((_, i) => i),
  ]);
  if (d.rows.some((r) => r.unknown > 0)) return { accounted: false, detail: 'transactions applied before the per-table counts were kept cannot be counted' };
  const delivered = new Map(d.rows.map((r) => [Number(r.table_index), BigInt(r.delivered)]));
  const excess = (states: typeof now) => states.map((t, i) => BigInt(t.writes) - BigInt(baseline.tables[i].writes) - (delivered.get(i) ?? 0n));
  const started = Date.now();
  const tally = (states: typeof now) =>
    states
      .map(
        (t, i) =>
          `${spec.tables.length > 1 ? `table ${i + 1}: ` : ''}${BigInt(t.writes) - BigInt(baseline.tables[i].writes)} row write(s) counted on the source since the checkpoint, ${delivered.get(i) ?? 0n} change(s) delivered by the stream`,
      )
      .join('; ');
  let e = excess(now);
  for (;;) {
    // More writes than changes delivered: aborted transactions, late statistics at the
    // checkpoint, or a change the stream never carried. Waiting cannot lower it.
    const over = e.findIndex((x) => x > 0n);
    if (over >= 0) return { accounted: false, detail: `${tally(now)} (aborted writes count there too)` };
    if (Date.now() - started > SETTLE_LIMIT_MS) return { accounted: false, detail: `the source's write counters did not settle: ${tally(now)}` };
    await sleep(SETTLE_MS);
    heartbeat({ settling: true });
    const again = await tableStates(spec);
    const e2 = excess(again);
    // Equal to every change delivered, and unchanged over a flush interval: exact, once no session
    // can still hold counts it has not reported.
    if (e.every((x) => x === 0n) && e2.every((x) => x === 0n) && again.every((t, i) => t.writes === now[i].writes)) {
      const unreported = await untilReported(spec);
      if (unreported > 0)
        return {
          accounted: false,
          detail: `${unreported} other session(s) on the source are busy (or hidden from this role), so writes they made may not be counted yet (${tally(again)})`,
        };
      const last = await tableStates(spec);
      if (excess(last).every((x) => x === 0n))
        return { accounted: true, detail: `the source's write counters account for every change since the checkpoint (${tally(last)})` };
      return { accounted: false, detail: `${tally(last)} (counts reported late)` };
    }
    now = again;
    e = e2;
  }
}

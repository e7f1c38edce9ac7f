// The migration workflow: orchestration only. Every read, write and comparison happens in an
// activity; this code keeps compact state (counters, failed ranges, the digest) and decides.
import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  isCancellation,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  log,
  patched,
  sleep,
  allHandlersFinished,
  continueAsNew,
  ContinueAsNew,
  proxySinks,
} from '@temporalio/workflow';
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import type * as activities from '../activities';
import type { TablePlan } from '../activities/ranges';
import type { RangeResult } from '../activities/range';
import type { DeltaResult } from '../activities/delta';
import type { SweptFailure } from '../activities/sweep';
import { catchUpOf, checkSpec, controlAlias, durationMs, isLive, type MigrationSpec } from '../spec/schema';
import { NO_KEYS, rerunCommand, type Approval, type Report, type TableReport } from '../report/model';
import {
  ATTENTION,
  SEARCH_ATTRIBUTES,
  abortSignal,
  type AuditSinks,
  approveCutoverUpdate,
  pauseSignal,
  progressQuery,
  rejectCutoverUpdate,
  reportQuery,
  rerunUpdate,
  resumeSignal,
  setConcurrencySignal,
  type DeltaProgress,
  type MigrationResult,
  type Phase,
  type Progress,
} from './messages';

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 30 };

// Every activity heartbeats while it runs: the heartbeat timeout is what notices a dead worker, so
// the start-to-close timeout can leave room for a range, a plan or a reconciliation of any size.
const acts = proxyActivities<typeof activities>({ startToCloseTimeout: '24 hours', heartbeatTimeout: '15 seconds', retry });

/** Below the 10,240-event warning with room for the completions of ranges still in flight. */
export const HISTORY_BUDGET = 5000;

/** What a run hands to the next one at continue-as-new: counters, not ranges. */
export interface Carried {
  plans: TablePlan[];
  tables: { next: number; verified: number; rowsCopied: number; failed: FailedRange[] }[];
  startedAt: string;
  approvals: Approval[];
  concurrency: number;
  paused: boolean;
  rerunQueue: { t: number; i: number }[];
  runs: number;
  /** a live source: where the migration stood and what catch-up has done */
  live?: LiveState;
}

/** Catch-up state of a migration whose source keeps taking writes (compact: a few values per table). */
export interface LiveState {
  stage: 'backfill' | 'catchup' | 'gate';
  /** per table: the watermark the next catch-up round reads from (null: the table has no delta) */
  marks: (string | null)[];
  rowsApplied: number;
  remaining: number;
  /** the watermark in the evidence presented at the gate (the digest covers it) */
  evidenceMark: string | null;
  finalChecks: number;
}

const migrationKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.migration, SearchAttributeType.KEYWORD);
const phaseKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.phase, SearchAttributeType.KEYWORD);
const attentionKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.attention, SearchAttributeType.KEYWORD);

// Refused approvals never reach the history (a validator rejects before), so the worker records them.
const { audit: auditSink } = proxySinks<AuditSinks>();

/** How long the final check waits for writers that were open when the freeze ran. */
const WRITERS_GRACE_MS = 60_000;

/** A range that still differs after its attempts, with what locating found (the sweep reports the same). */
type FailedRange = SweptFailure;

interface TableState {
  plan: TablePlan;
  next: number;
  verified: number;
  inFlight: Set<number>;
  failed: Map<number, FailedRange>;
  rowsCopied: number;
}

export async function backfillMigration(input: unknown, carried?: Carried): Promise<MigrationResult> {
  const state: { fail?: (why: string) => void } = {};
  try {
    return await migrate(input, state, carried);
  } catch (e) {
    // Show the root cause (a preflight message, a dropped column) at the top of the failure,
    // not "Activity task failed"; the phase says failed.
    if (isCancellation(e) || e instanceof ContinueAsNew) throw e;
    const root = rootCause(e);
    state.fail?.(root.message);
    if (root instanceof ApplicationFailure && root !== e)
      throw ApplicationFailure.create({ type: root.type ?? 'Error', message: root.message, nonRetryable: true, details: root.details as unknown[] });
    throw e;
  }
}

function rootCause(e: unknown): Error {
  let cur = e as Error & { cause?: unknown };
  while (cur instanceof ActivityFailure && cur.cause instanceof Error) cur = cur.cause as Error & { cause?: unknown };
  return cur;
}

async function migrate(input: unknown, state: { fail?: (why: string) => void }, carried?: Carried): Promise<MigrationResult> {
  const info = workflowInfo();
  const now = () => new Date().toISOString();
  const startedAt = carried?.startedAt ?? now();
  let updatedAt = startedAt;
  let phase: Phase = 'planning';
  let detail: string | undefined;
  let tables: TableState[] = [];
  let report: Report | undefined;
  let digest: string | undefined;
  let paused = false;
  let aborted: string | undefined;
  let approval: Approval | undefined;
  let rejection: { approver: string; reason: string } | undefined;
  const approvals: Approval[] = [];
  const rerunQueue: { t: number; i: number }[] = [];
  let live: LiveState | undefined;
  let attention: string | undefined;
  let finalWindow: { rows: number; ms: number; watermark: string | null } | undefined;

  const parsed = checkSpec(input);
  const name = parsed.ok ? parsed.spec.name : info.workflowId;
  let concurrency = parsed.ok ? parsed.spec.concurrency : 1;

  const setPhase = (p: Phase, why?: string) => {
    phase = p;
    detail = why;
    updatedAt = now();
    upsertSearchAttributes([
      { key: migrationKey, value: name },
      { key: phaseKey, value: p },
    ]);
  };
  const touch = () => {
    updatedAt = now();
  };

  setHandler(progressQuery, (): Progress => ({
    migration: name,
    phase,
    detail,
    tables: tables.map((t) => ({
      source: t.plan.source,
      target: t.plan.target,
      ranges: {
        total: t.plan.rangeCount,
        pending: t.plan.rangeCount - t.verified - t.failed.size - t.inFlight.size,
        inFlight: t.inFlight.size,
        verified: t.verified,
        failed: t.failed.size,
      },
      rowsCopied: t.rowsCopied,
    })),
    digest: phase === 'awaiting_approval' ? digest : undefined,
    ...(live ? { delta: { watermark: oldestMark(live.marks), rowsApplied: live.rowsApplied, remaining: live.remaining } } : {}),
    ...(attention ? { attention } : {}),
    ...(finalWindow ? { finalWindow } : {}),
    paused,
    concurrency,
    startedAt,
    updatedAt,
  }));
  setHandler(reportQuery, (): Report => {
    const base = report ?? provisionalReport(name, tables, now());
    return { ...base, phase, approvals: [...approvals] };
  });

  state.fail = (why) => {
    if (phase !== 'failed') setPhase('failed', why);
  };
  setPhase('planning');
  if (!parsed.ok) {
    setPhase('failed', 'the spec is not valid');
    throw ApplicationFailure.create({ type: 'InvalidSpec', nonRetryable: true, message: `invalid spec:\n${parsed.problems.join('\n')}` });
  }
  const spec: MigrationSpec = parsed.spec;
  if (spec.name !== info.workflowId) {
    setPhase('failed', 'the workflow id is not the spec name');
    throw ApplicationFailure.create({
      type: 'InvalidSpec',
      nonRetryable: true,
      message: `the workflow id "${info.workflowId}" must equal the spec name "${spec.name}"`,
    });
  }
  const execution = info.firstExecutionRunId;
  const audit = (action: string, actor?: string, d?: string, extra?: unknown) =>
    acts.recordAudit({ spec, entry: { migration: name, execution, action, actor, digest: d, detail: extra } });

  setHandler(pauseSignal, () => {
    paused = true;
    touch();
  });
  setHandler(resumeSignal, () => {
    paused = false;
    touch();
  });
  setHandler(abortSignal, (a) => {
    aborted = (a && typeof a.reason === 'string' && a.reason) || 'aborted by an operator';
    touch();
  });
  setHandler(setConcurrencySignal, (s) => {
    const v = Number(s?.value);
    if (Number.isInteger(v) && v >= 1 && v <= 64) concurrency = v;
    touch();
  });

  // The approval is an Update so that it can be refused; its validator is synchronous and pure.
  setHandler(
    approveCutoverUpdate,
    (a) => {
      approval = { approver: a.approver.trim(), digest: a.digest, comment: a.comment, approvedAt: now() };
      approvals.push(approval);
      touch();
      return { approvedAt: approval.approvedAt };
    },
    {
      validator: (a) => {
        const why = approvalRefusal(a);
        if (why) {
          refused('approve-refused', a, why);
          throw new Error(why);
        }
      },
    },
  );
  setHandler(
    rejectCutoverUpdate,
    (r) => {
      rejection = { approver: r.approver.trim(), reason: r.reason };
      touch();
      return { rejectedAt: now() };
    },
    {
      validator: (r) => {
        let why: string | undefined;
        if (!r || typeof r.approver !== 'string' || !r.approver.trim() || typeof r.reason !== 'string' || !r.reason.trim())
          why = 'rejectCutover needs { approver, reason }';
        else if (phase !== 'awaiting_approval') why = `cannot reject: the migration is in phase ${phase}, not awaiting_approval`;
        if (why) {
          refused('reject-refused', r, why);
          throw new Error(why);
        }
      },
    },
  );
  setHandler(
    rerunUpdate,
    (r) => {
      const ts = r.table === undefined ? tables.map((_, t) => t) : [tableIndexOf(r.table)];
      let n = 0;
      for (const t of ts) {
        for (const i of new Set(r.ranges)) {
          if (i >= tables[t].plan.rangeCount || rerunQueue.some((q) => q.t === t && q.i === i)) continue;
          rerunQueue.push({ t, i });
          n++;
        }
      }
      touch();
      return { ranges: n };
    },
    {
      validator: (r) => {
        if (!r || !Array.isArray(r.ranges) || r.ranges.length === 0 || !r.ranges.every((i: number) => Number.isInteger(i) && i >= 0))
          throw new Error('rerun needs { ranges: [non-negative integers], table? }');
        if (!['needs_attention', 'awaiting_approval'].includes(phase))
          throw new Error(`cannot rerun in phase ${phase}: reruns are taken when the migration needs attention or awaits approval`);
        if (r.table !== undefined && tableIndexOf(r.table) < 0) throw new Error(`no table "${r.table}" in this migration`);
        const ts = r.table === undefined ? tables : [tables[tableIndexOf(r.table)]];
        const bad = r.ranges.filter((i: number) => !ts.some((t) => i < t.plan.rangeCount));
        if (bad.length) throw new Error(`no range ${bad.join(', ')} in ${r.table ?? 'any table'}`);
      },
    },
  );
  // Pure and synchronous (an async validator's rejection is ignored): the reason, or undefined.
  function approvalRefusal(a: { approver?: unknown; digest?: unknown } | undefined): string | undefined {
    if (!a || typeof a.approver !== 'string' || !a.approver.trim()) return 'approveCutover needs { approver, digest }';
    if (phase !== 'awaiting_approval') return `cannot approve: the migration is in phase ${phase}, not awaiting_approval`;
    if (a.digest !== digest) return `digest ${String(a.digest)} is not the evidence presented now (${digest}); read the report again and approve what it shows`;
    const allowed = spec.cutover.approvers;
    if (allowed && !allowed.includes(a.approver.trim())) return `"${a.approver}" is not an allowed approver (cutover.approvers: ${allowed.join(', ')})`;
    if (approval) return 'this evidence is already approved';
    return undefined;
  }
  function refused(action: string, a: { approver?: unknown; digest?: unknown } | undefined, reason: string): void {
    const actor = typeof a?.approver === 'string' ? a.approver : undefined;
    const d = typeof a?.digest === 'string' ? a.digest : undefined;
    auditSink.refused({ control: controlAlias(spec), migration: name, execution, action, actor, digest: d, reason });
  }
  function tableIndexOf(name: string): number {
    return tables.findIndex((t, i) => t.plan.source === name || t.plan.target === name || spec.tables[i].source === name);
  }

  // ---- planning (a continued run takes the plan and the counters from the run before) ----
  let plans: TablePlan[];
  if (carried) {
    plans = carried.plans;
    tables = plans.map((plan, i) => {
      const c = carried.tables[i];
      return { plan, next: c.next, verified: c.verified, inFlight: new Set(), failed: new Map(c.failed.map((f) => [f.index, f])), rowsCopied: c.rowsCopied };
    });
    approvals.push(...carried.approvals);
    concurrency = carried.concurrency;
    paused = carried.paused;
    rerunQueue.push(...carried.rerunQueue);
    live = carried.live;
  } else {
    plans = await acts.planMigration({ migration: name, spec });
    tables = plans.map((plan) => ({ plan, next: 0, verified: 0, inFlight: new Set(), failed: new Map(), rowsCopied: 0 }));
    log.info('planned', { migration: name, ranges: plans.reduce((a, p) => a + p.rangeCount, 0) });
    if (isLive(spec)) {
      // Read before the first range is copied: catch-up starts from here.
      const mark = spec.tables.some((t) => t.delta) ? await acts.captureWatermark({ spec }) : null;
      live = { stage: 'backfill', marks: spec.tables.map((t) => (t.delta ? mark : null)), rowsApplied: 0, remaining: 0, evidenceMark: null, finalChecks: 0 };
    }
  }
  const carry = (): Carried => ({
    plans,
    // Located keys of many failed ranges would bloat the input: the ledger has them all.
    tables: tables.map((st) => ({
      next: st.next,
      verified: st.verified,
      rowsCopied: st.rowsCopied,
      failed: [...st.failed.values()].map((f, k) => (k < 100 || !f.located ? f : { ...f, located: { ...f.located, keys: NO_KEYS } })),
    })),
    startedAt,
    approvals,
    concurrency,
    paused,
    rerunQueue,
    runs: (carried?.runs ?? 0) + 1,
    ...(live ? { live } : {}),
  });
  const historyFull = () => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength >= HISTORY_BUDGET;

  // ---- backfilling: a sliding window of ranges in flight ----
  let fatal: unknown;
  const runRange = async (t: number, i: number) => {
    const st = tables[t];
    st.inFlight.add(i);
    try {
      for (let attempt = 1; ; attempt++) {
        const finalAttempt = attempt >= spec.retries.rangeAttempts || aborted !== undefined;
        const args = {
          migration: name,
          spec: { source: spec.source, target: spec.target, control: spec.control, mode: spec.mode },
          table: spec.tables[t],
          tableIndex: t,
          plan: st.plan,
          rangeIndex: i,
          attempt,
          finalAttempt,
        };
        const res: RangeResult = spec.mode === 'verify' ? await acts.verifyRange(args) : await acts.copyRange(args);
        st.rowsCopied += res.rowsCopied;
        if (res.status === 'verified') {
          st.failed.delete(i);
          st.verified++;
          return;
        }
        if (finalAttempt) {
          // Narrow the range down to its exact keys; the evidence stays in the ledger.
          // (Patched: migrations started before locating existed go on without it.)
          const located = patched('locate-failed-ranges') ? await acts.locateRange(args) : undefined;
          st.failed.set(i, { index: i, lo: res.lo, hi: res.hi, attempts: attempt, source: res.source, target: res.target, failed: res.failed, located });
          return;
        }
        // A target loaded by replication may be catching up: look again a little later.
        if (spec.mode === 'verify') await sleep(Math.min(60_000, 2_000 * attempt));
      }
    } catch (e) {
      fatal ??= e;
    } finally {
      st.inFlight.delete(i);
      touch();
    }
  };

  const nextRange = (): { t: number; i: number } | undefined => {
    const r = rerunQueue.shift();
    if (r) {
      // Reruns are taken only once every range has a status: take it out of the counts until proven again.
      const st = tables[r.t];
      if (!st.failed.delete(r.i)) st.verified--;
      return r;
    }
    for (const [t, st] of tables.entries()) if (st.next < st.plan.rangeCount) return { t, i: st.next++ };
    return undefined;
  };
  const hasWork = () => rerunQueue.length > 0 || tables.some((st) => st.next < st.plan.rangeCount);
  const inFlight = () => tables.reduce((a, st) => a + st.inFlight.size, 0);

  const backfill = async () => {
    setPhase('backfilling');
    for (;;) {
      await condition(
        () =>
          fatal !== undefined ||
          aborted !== undefined ||
          (!hasWork() && inFlight() === 0) ||
          (!paused && hasWork() && inFlight() < concurrency) ||
          (hasWork() && historyFull()),
      );
      if (fatal !== undefined || aborted !== undefined || !hasWork()) break;
      if (historyFull()) {
        // Let the ranges in flight land, then go on in a fresh run with the counters.
        await condition(() => inFlight() === 0);
        if (fatal === undefined && aborted === undefined) {
          await condition(allHandlersFinished);
          await continueAsNew<typeof backfillMigration>(spec, carry());
        }
        break;
      }
      const next = nextRange()!;
      void runRange(next.t, next.i);
    }
    await condition(() => inFlight() === 0);
    if (fatal !== undefined) {
      setPhase('failed', rootCause(fatal).message);
      throw fatal;
    }
  };
  const stopIfAborted = async (): Promise<MigrationResult | undefined> => {
    if (aborted === undefined) return undefined;
    await condition(() => inFlight() === 0);
    setPhase('aborted', aborted);
    await audit('abort', undefined, digest, { reason: aborted });
    return { migration: name, phase: 'aborted', verdict: 'red', reason: aborted };
  };

  // Reconciling: the global checks, then the report and its digest.
  const reconcileAll = async () => {
    setPhase('reconciling');
    for (const [i, st] of tables.entries()) {
      await acts.reconcileTable({ migration: name, spec, tableIndex: i, plan: st.plan });
    }
  };
  const deltaNow = () => live && { watermark: oldestMark(live.marks), rowsApplied: live.rowsApplied, remaining: live.remaining };
  const buildReport = async (o: { evidenceMark?: string | null; final?: boolean } = {}) => {
    const delta = deltaNow();
    report = await acts.buildReport({
      migration: name, spec, phase, plans, generatedAt: now(),
      ...(delta ? { delta: { ...delta, watermark: o.evidenceMark === undefined ? delta.watermark : o.evidenceMark } } : {}),
      ...(live && !o.final ? { live: true } : {}),
    });
    digest = report.digest;
  };
  const failedCount = () => tables.reduce((a, st) => a + st.failed.size, 0);
  const needsAttention = async (why: string): Promise<MigrationResult | undefined> => {
    setPhase('needs_attention', why);
    await condition(() => rerunQueue.length > 0 || aborted !== undefined);
    return stopIfAborted();
  };

  // One catch-up round over the tables with a change column; false when a window did not verify.
  const deltaRound = async (): Promise<boolean> => {
    const l = live!;
    let applied = 0;
    let ok = true;
    let more = false;
    for (const [t, mark] of l.marks.entries()) {
      if (mark === null) continue;
      const r: DeltaResult = await acts.applyDelta({ migration: name, spec, tableIndex: t, since: mark });
      l.marks[t] = r.watermark;
      applied += r.upserted + r.deleted;
      tables[t].rowsCopied += r.upserted;
      ok &&= r.verified;
      more ||= r.more;
    }
    l.rowsApplied += applied;
    l.remaining = more ? Math.max(applied, catchUpOf(spec).remaining + 1) : applied;
    touch();
    return ok;
  };
  const hasDelta = () => !!live && live.marks.some((m) => m !== null);

  // Every range measured again and the changed ones copied again (deletes are invisible to a
  // change column); ranges that still differ fail and wait in needs_attention.
  const sweep = async () => {
    for (const [t, st] of tables.entries()) {
      const r = await acts.sweepTable({ migration: name, spec, tableIndex: t, plan: st.plan, repair: true });
      st.rowsCopied += r.rowsCopied;
      const still = new Map(r.failed.map((f) => [f.index, f]));
      for (const i of st.failed.keys()) if (!still.has(i)) st.verified++;
      for (const f of r.failed) if (!st.failed.has(f.index)) st.verified--;
      st.failed = still;
      touch();
    }
  };

  // Catching up: delta rounds until what remains is small, then a sweep; the evidence is then new.
  const catchUp = async () => {
    setPhase('catching_up', 'applying the rows written since the backfill started');
    const c = catchUpOf(spec);
    if (hasDelta()) {
      for (let round = 1; round <= c.maxRounds && aborted === undefined; round++) {
        const ok = await deltaRound();
        detail = `round ${round}: ${live!.remaining} row(s) applied; watermark ${oldestMark(live!.marks)}`;
        if (ok && live!.remaining <= c.remaining) break;
        await condition(() => aborted !== undefined, durationMs(c.interval));
      }
    }
    if (aborted !== undefined) return;
    detail = 'checking every range again';
    await sweep();
  };

  let stage: LiveState['stage'] = live?.stage ?? 'backfill';
  for (;;) {
    if (stage === 'backfill') {
      await backfill();
      let stop = await stopIfAborted();
      if (stop) return stop;

      // ---- reconciling: the global checks, also when ranges failed (the report needs both) ----
      // (Patched: migrations started before this skipped them when ranges failed.) A live source
      // is reconciled by the final check, when it is frozen: totals read now could not agree.
      const failedRanges = failedCount();
      if (!live && (failedRanges === 0 || patched('reconcile-with-failed-ranges'))) await reconcileAll();
      await buildReport();
      if (report!.verdict === 'red' || failedRanges > 0) {
        stop = await needsAttention(`${failedRanges} range(s) failed or the global checks disagree: rerun the failed ranges or abort`);
        if (stop) return stop;
        continue;
      }
      stage = live ? 'catchup' : 'gate';
    }

    if (stage === 'catchup') {
      await catchUp();
      const stop = await stopIfAborted();
      if (stop) return stop;
      await buildReport();
      if (report!.verdict === 'red' || failedCount() > 0) {
        const s2 = await needsAttention(`${failedCount()} range(s) failed while catching up, or the global checks disagree: rerun the failed ranges or abort`);
        if (s2) return s2;
        stage = 'backfill';
        continue;
      }
      live!.evidenceMark = report!.delta.watermark;
      stage = 'gate';
    }
    if (live) live.stage = stage;

    // ---- the gate ----
    // A run continued from the gate presents the same evidence again (the ledger did not change).
    if (!report) await buildReport({ evidenceMark: live?.evidenceMark ?? null });
    approval = undefined;
    rejection = undefined;
    if (spec.cutover.approval === 'auto') {
      approval = { approver: 'auto', digest: report!.digest, approvedAt: now() };
      approvals.push(approval);
    } else {
      setPhase('awaiting_approval', `approve digest ${digest} to switch`);
      const c = catchUpOf(spec);
      const enteredAt = Date.now();
      const overdueAt = spec.cutover.approvalTimeout ? enteredAt + durationMs(spec.cutover.approvalTimeout) : undefined;
      let red = false;
      for (;;) {
        const decided = () => approval !== undefined || rejection !== undefined || rerunQueue.length > 0 || aborted !== undefined;
        const waits = [hasDelta() ? durationMs(c.interval) : undefined, overdueAt && !attention ? Math.max(1, overdueAt - Date.now()) : undefined]
          .filter((w): w is number => w !== undefined);
        if (waits.length === 0) await condition(decided);
        else if (await condition(decided, Math.min(...waits))) break;
        if (decided()) break;
        if (overdueAt !== undefined && !attention && Date.now() >= overdueAt) {
          // Waiting too long is worth a look; it never approves anything by itself.
          attention = ATTENTION.approvalOverdue;
          detail = `approve digest ${digest} to switch; waiting for approval for longer than ${spec.cutover.approvalTimeout}`;
          upsertSearchAttributes([{ key: attentionKey, value: attention }]);
        }
        if (hasDelta() && !decided()) {
          // Catch-up goes on while the gate waits; a window that does not verify turns it red.
          if (!(await deltaRound())) {
            red = true;
            break;
          }
        }
        if (historyFull() && !decided()) {
          await condition(allHandlersFinished);
          await continueAsNew<typeof backfillMigration>(spec, carry());
        }
      }
      if (attention) {
        attention = undefined;
        upsertSearchAttributes([{ key: attentionKey, value: null }]);
      }
      const stop = await stopIfAborted();
      if (stop) return stop;
      if (red) {
        if (approval) await voidApproval('a catch-up window did not verify while the gate waited');
        stage = 'catchup';
        continue;
      }
      if (rejection) {
        const r: { approver: string; reason: string } = rejection;
        await audit('reject', r.approver, digest, { reason: r.reason });
        const s2 = await needsAttention(`rejected by ${r.approver}: ${r.reason}`);
        if (s2) return s2;
      }
      if (!approval) {
        stage = 'backfill';
        continue;
      }
    }
    const approved: Approval = approval;
    await audit('approve', approved.approver, approved.digest, { comment: approved.comment });

    // ---- final check: freeze, the last window, every range again; red voids the approval ----
    if (live) {
      setPhase('final_check', 'freezing the source and checking the final window');
      live.finalChecks++;
      const why = await finalCheck(approved);
      if (why) {
        if (spec.cutover.unfreeze) await acts.runAction({ migration: name, execution, spec, action: 'unfreeze', reason: why });
        await voidApproval(why);
        stage = 'catchup';
        live.stage = stage;
        continue;
      }
    }

    // ---- switching ----
    setPhase('switching');
    await acts.advanceSequences({ spec });
    const sw = await acts.runSwitch({ migration: name, execution, spec, digest: approved.digest, approver: approved.approver });
    report = { ...report!, switchedAt: sw.switchedAt };
    setPhase('completed');
    return { migration: name, phase: 'completed', verdict: 'green', digest: approved.digest, switchedAt: sw.switchedAt, ...(finalWindow ? { finalWindow } : {}) };
  }

  async function voidApproval(why: string): Promise<void> {
    const a = approval;
    approval = undefined;
    await audit('approval-void', a?.approver, a?.digest, { reason: why });
  }

  /** The final check; returns why it is red, or undefined when green. */
  async function finalCheck(approved: Approval): Promise<string | undefined> {
    const l = live!;
    const started = Date.now();
    let frozenAt: string | undefined;
    if (spec.cutover.freeze) {
      frozenAt = (await acts.runAction({ migration: name, execution, spec, action: 'freeze', actor: approved.approver, digest: approved.digest })).at;
      // Writers already inside a transaction when the freeze ran may still commit: wait for them.
      const w = await acts.awaitWriters({ spec, before: frozenAt, timeoutMs: WRITERS_GRACE_MS });
      if (w.open > 0) return `${w.open} writing transaction(s) opened before the freeze were still open after ${WRITERS_GRACE_MS / 1000} s`;
    }
    const before = l.rowsApplied;
    if (hasDelta() && !(await deltaRound())) return 'the final delta window did not verify';
    detail = 'checking every range again';
    await sweep();
    if (failedCount() > 0) return `${failedCount()} range(s) still differ after the final window was copied`;
    if (frozenAt && hasDelta()) {
      const late = (await acts.changedSince({ spec, since: frozenAt })).filter((x) => x.rows > 0);
      if (late.length) return `writes after the freeze: ${late.map((x) => `${x.rows} row(s) in ${x.table}`).join(', ')}`;
    }
    await reconcileAll();
    setPhase('final_check', 'building the final report');
    await buildReport({ final: true });
    finalWindow = { rows: l.rowsApplied - before, ms: Date.now() - started, watermark: oldestMark(l.marks) };
    if (report!.verdict === 'red') return 'the final report is red';
    return undefined;
  }
}

/** The oldest of the tables' watermarks: catch-up has reached at least this far everywhere. */
function oldestMark(marks: (string | null)[]): string | null {
  const m = marks.filter((x): x is string => x !== null).sort();
  return m.length ? m[0] : null;
}

/** The report while the evidence is still being gathered: red, and every failed range so far. */
function provisionalReport(migration: string, tables: TableState[], at: string): Report {
  const tableReports: TableReport[] = tables.map((st) => ({
    source: st.plan.source,
    target: st.plan.target,
    totals: { source: null, target: null, match: false, failedChecks: [], sumOfRanges: { source: '0', target: '0', match: false } },
    ranges: [...st.failed.values()].map((f) => ({
      index: f.index,
      lo: f.lo,
      hi: f.hi,
      status: 'failed',
      attempts: f.attempts,
      source: f.source,
      target: f.target,
      missing: f.located ? f.located.missing : null,
      extra: f.located ? f.located.extra : null,
      changed: f.located ? f.located.changed : null,
      duplicates: f.located ? f.located.duplicates : null,
      keys: f.located?.keys ?? NO_KEYS,
      failedChecks: f.failed,
      changedColumns: f.located?.columns ?? {},
      rerun: rerunCommand(migration, st.plan.source, f.index),
    })),
    rangeSummary: {
      total: st.plan.rangeCount,
      verified: st.verified,
      failed: st.failed.size,
      pending: st.plan.rangeCount - st.verified - st.failed.size,
      shown: st.failed.size,
    },
    outside: { count: '0', keys: [] },
    sourceOutside: { count: '0', keys: [] },
  }));
  return {
    migration,
    digest: '',
    verdict: 'red',
    complete: false,
    phase: 'planning',
    generatedAt: at,
    tables: tableReports,
    delta: { watermark: null, rowsApplied: 0, remaining: 0 },
    approvals: [],
  };
}

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
} from '@temporalio/workflow';
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import type * as activities from '../activities';
import type { TablePlan } from '../activities/ranges';
import type { RangeResult } from '../activities/range';
import type { Located } from '../activities/locate';
import { checkSpec, type MigrationSpec } from '../spec/schema';
import { NO_KEYS, rerunCommand, type Approval, type Report, type TableReport } from '../report/model';
import {
  SEARCH_ATTRIBUTES,
  abortSignal,
  approveCutoverUpdate,
  pauseSignal,
  progressQuery,
  rejectCutoverUpdate,
  reportQuery,
  rerunUpdate,
  resumeSignal,
  setConcurrencySignal,
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
}

const migrationKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.migration, SearchAttributeType.KEYWORD);
const phaseKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.phase, SearchAttributeType.KEYWORD);

interface FailedRange {
  index: number;
  lo: string;
  hi: string;
  attempts: number;
  source: { count: string; checksum: string };
  target: { count: string; checksum: string };
  failed: string[];
  located?: Located;
}

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
        if (!a || typeof a.approver !== 'string' || !a.approver.trim()) throw new Error('approveCutover needs { approver, digest }');
        if (phase !== 'awaiting_approval') throw new Error(`cannot approve: the migration is in phase ${phase}, not awaiting_approval`);
        if (a.digest !== digest)
          throw new Error(`digest ${String(a.digest)} is not the evidence presented now (${digest}); read the report again and approve what it shows`);
        const allowed = spec.cutover.approvers;
        if (allowed && !allowed.includes(a.approver.trim()))
          throw new Error(`"${a.approver}" is not an allowed approver (cutover.approvers: ${allowed.join(', ')})`);
        if (approval) throw new Error('this evidence is already approved');
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
        if (!r || typeof r.approver !== 'string' || !r.approver.trim() || typeof r.reason !== 'string' || !r.reason.trim())
          throw new Error('rejectCutover needs { approver, reason }');
        if (phase !== 'awaiting_approval') throw new Error(`cannot reject: the migration is in phase ${phase}, not awaiting_approval`);
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
  } else {
    plans = await acts.planMigration({ migration: name, spec });
    tables = plans.map((plan) => ({ plan, next: 0, verified: 0, inFlight: new Set(), failed: new Map(), rowsCopied: 0 }));
    log.info('planned', { migration: name, ranges: plans.reduce((a, p) => a + p.rangeCount, 0) });
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

  for (;;) {
    await backfill();
    let stop = await stopIfAborted();
    if (stop) return stop;

    // ---- reconciling: the global checks, also when ranges failed (the report needs both) ----
    // (Patched: migrations started before this skipped them when ranges failed.)
    const failedRanges = tables.reduce((a, st) => a + st.failed.size, 0);
    if (failedRanges === 0 || patched('reconcile-with-failed-ranges')) {
      setPhase('reconciling');
      for (const [i, st] of tables.entries()) {
        await acts.reconcileTable({ migration: name, spec, tableIndex: i, plan: st.plan });
      }
    }
    report = await acts.buildReport({ migration: name, spec, phase, plans, generatedAt: now() });
    digest = report.digest;

    if (report.verdict === 'red' || failedRanges > 0) {
      setPhase('needs_attention', `${failedRanges} range(s) failed or the global checks disagree: rerun the failed ranges or abort`);
      await condition(() => rerunQueue.length > 0 || aborted !== undefined);
      stop = await stopIfAborted();
      if (stop) return stop;
      continue;
    }

    // ---- the gate ----
    approval = undefined;
    rejection = undefined;
    if (spec.cutover.approval === 'auto') {
      approval = { approver: 'auto', digest: report.digest, approvedAt: now() };
      approvals.push(approval);
    } else {
      setPhase('awaiting_approval', `approve digest ${digest} to switch`);
      await condition(() => approval !== undefined || rejection !== undefined || rerunQueue.length > 0 || aborted !== undefined);
      stop = await stopIfAborted();
      if (stop) return stop;
      if (rejection) {
        const r: { approver: string; reason: string } = rejection;
        await audit('reject', r.approver, digest, { reason: r.reason });
        setPhase('needs_attention', `rejected by ${r.approver}: ${r.reason}`);
        await condition(() => rerunQueue.length > 0 || aborted !== undefined);
        stop = await stopIfAborted();
        if (stop) return stop;
      }
      if (!approval) continue;
    }
    const approved: Approval = approval;
    await audit('approve', approved.approver, approved.digest, { comment: approved.comment });

    // ---- switching ----
    setPhase('switching');
    await acts.advanceSequences({ spec });
    const sw = await acts.runSwitch({ migration: name, execution, spec, digest: approved.digest, approver: approved.approver });
    report = { ...report, switchedAt: sw.switchedAt };
    setPhase('completed');
    return { migration: name, phase: 'completed', verdict: 'green', digest: approved.digest, switchedAt: sw.switchedAt };
  }

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

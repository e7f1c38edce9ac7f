// The migration workflow: orchestration only. Every read, write and comparison happens in an
// activity; the state (state.ts, composed of each capability's own) keeps counters, failed ranges
// and the digest, and this stage loop decides where the migration goes next. Each phase has its own
// module (*.workflow.ts): planning here; range/window (the window of ranges); report/evidence
// (reconciling, the report); catchup/rounds and capture/epochs (a live source); gate/approval;
// gate/final-check; gate/switch.
import { ApplicationFailure, CancellationScope, ContinueAsNew, isCancellation, log, patched, workflowInfo } from '@temporalio/workflow';
import { checkSpec, isLive } from '../spec/schema';
import { capturedBackfill, capturedCatchUp } from '../capture/epochs.workflow';
import { newLiveState } from '../catchup/state.workflow';
import { acts, heartbeatFrom, summarised } from './activities';
import { needsAttention, stopIfAborted } from './attention';
import { voidApproval, audit } from './audit';
import { backfill } from '../range/window.workflow';
import { catchUp } from '../catchup/rounds.workflow';
import { failure } from '../domain/failures';
import { abortedFailure, endingFailure, rootCause } from './errors';
import { refreshReport, hasConstraints, reconcileAll, restoreAndValidate } from '../report/evidence.workflow';
import { finalCheck, unfreezeAfter } from '../gate/final-check.workflow';
import { gate } from '../gate/approval.workflow';
import { setControlHandlers, setQueryHandlers } from './handlers';
import { waitInSight } from './waits';
import type { MigrationResult } from './messages';
import { MigrationState } from './state';
import { showDetails } from './details';
import { showMetrics } from './metrics';
import { switchAuthority } from '../gate/switch.workflow';
import { finishOnCancellation, followBack } from '../reverse/stream.workflow';
import { undoOnFailure } from './undo';
import { schemaDrift } from '../schema/drift.workflow';
import type { Carried, Stage } from './types';
import type { TablePlan } from '../domain/plan';
import { resumeFromLedger } from '../plan/resume.workflow';

export async function backfillMigration(input: unknown, carried?: Carried): Promise<MigrationResult> {
  let state: MigrationState | undefined;
  let result: MigrationResult;
  try {
    result = await migrate(input, carried, (s) => (state = s));
  } catch (e) {
    if (e instanceof ContinueAsNew) throw e;
    if (isCancellation(e)) {
      // Temporal's cancellation means what `abort` means: clean up, phase aborted, not Completed.
      // (Patched: migrations started before this ended as Canceled with nothing cleaned up.)
      if (!state || !patched('cancellation-is-abort')) throw e;
      const s: MigrationState = state;
      const finished = finishOnCancellation(s);
      if (finished) return await finished;
      result = await CancellationScope.nonCancellable(async () => {
        s.control.cancelled('cancelled through Temporal');
        if (s.gate.frozen) await unfreezeAfter(s, `aborted: ${s.control.aborted}`);
        return (await stopIfAborted(s))!;
      });
      throw abortedFailure(result);
    }
    // Show the root cause at the top of the failure; the phase says failed.
    const root = rootCause(e);
    if (state && state.phase !== 'failed') state.setPhase('failed', root.message);
    // A failed migration leaves no foreign key dropped, nor a replication slot holding WAL on the
    // source, nor the source frozen before a switch that did not run. What could not be undone is
    // said: in the worker's log and at the end of the failure's message.
    const left = await undoOnFailure(state, root.message);
    const message = left.length ? `${root.message}\n(and ${left.join('; ')})` : root.message;
    if (root instanceof ApplicationFailure && (root !== e || left.length)) throw endingFailure(root, message);
    throw e;
  }
  // (Patched: migrations started before this ended an abort as Completed.)
  if (result.phase === 'aborted' && patched('aborted-ends-failed')) throw abortedFailure(result);
  return result;
}

/** The ranges whose rows the target refused, in a sentence an operator can act on ('' when none). */
function refusals(s: MigrationState): string {
  const out: string[] = [];
  for (const st of s.ranges.tables) {
    for (const f of st.failed.values()) {
      if (!f.refused) continue;
      const key = f.refused.key ? ` at key ${JSON.stringify(f.refused.key)}` : '';
      out.push(`${st.plan.target} range ${f.index} refused by ${f.refused.constraint ?? 'the target'}${key} (${f.refused.message})`);
    }
  }
  if (out.length === 0) return '';
  const shown = out.slice(0, 3).join('; ');
  return `${shown}${out.length > 3 ? `; and ${out.length - 3} more` : ''}; fix the target, then `;
}

async function migrate(input: unknown, carried: Carried | undefined, started: (s: MigrationState) => void): Promise<MigrationResult> {
  const info = workflowInfo();
  const parsed = checkSpec(input);
  const shown = { details: showDetails, metrics: showMetrics };
  const s = new MigrationState(parsed.ok ? parsed.spec.name : info.workflowId, parsed.ok ? parsed.spec.concurrency : 1, shown, carried);
  setQueryHandlers(s);
  waitInSight(s);
  started(s);
  s.setPhase('planning');
  if (!parsed.ok) {
    s.setPhase('failed', 'the spec is not valid');
    throw failure('InvalidSpec', `invalid spec:\n${parsed.problems.join('\n')}`);
  }
  if (parsed.spec.name !== info.workflowId) {
    s.setPhase('failed', 'the workflow id is not the spec name');
    throw failure('InvalidSpec', `the workflow id "${info.workflowId}" must equal the spec name "${parsed.spec.name}"`);
  }
  s.specified(parsed.spec);
  heartbeatFrom(parsed.spec);
  setControlHandlers(s);

  // ---- planning (a continued run takes the plan and the counters from the run before) ----
  if (!s.restore()) {
    const planned = await summarised('plan: check every table, set aside foreign keys, split into ranges').planMigration({ migration: s.name, spec: s.spec });
    // (Histories recorded before schema patterns have the plans alone.)
    const plans = Array.isArray(planned) ? (planned as TablePlan[]) : planned.plans;
    // Schema patterns expanded: from here on the spec lists every table (and carries it on).
    if (!Array.isArray(planned)) s.expanded(planned.tables);
    log.info('planned', { migration: s.name, ranges: plans.reduce((a, p) => a + p.rangeCount, 0) });
    const spec = s.spec;
    let live;
    if (isLive(spec)) {
      // Read before the first range is copied: catch-up starts from here.
      const mark = spec.tables.some((t) => t.delta) ? await acts.captureWatermark({ spec }) : null;
      live = newLiveState(spec, mark);
    }
    s.planned(plans, live);
    // Started again after an abort or a failure: the ranges the earlier run verified are verified, not copied.
    if (!Array.isArray(planned)) await resumeFromLedger(s, planned.resume);
  }

  let stage: Stage = s.live?.stage ?? 'backfill';
  // Where a continued run starts from (carried): kept current with every move.
  const enter = (to: Stage) => {
    stage = to;
    s.catchup.enter(to);
  };
  // Switched, the way back open: a continued run follows it on.
  if (stage === 'switched') return followBack(s);
  for (;;) {
    if (stage === 'backfill') {
      if (s.live?.capture) await capturedBackfill(s);
      else await backfill(s);
      let stop = await stopIfAborted(s);
      if (stop) return stop;
      // Reconciling: the global checks, also when ranges failed (the report needs both).
      // (Patched: migrations started before this skipped them when ranges failed.) A live source
      // is reconciled by the final check, when it is frozen: totals read now could not agree.
      const failedRanges = s.ranges.failedCount();
      // Foreign keys set aside for the copy hold again before the evidence is presented (a live
      // source keeps them aside until the final check: catch-up still writes).
      const broken = !s.live && hasConstraints(s) ? await restoreAndValidate(s) : [];
      if (!s.live && (failedRanges === 0 || patched('reconcile-with-failed-ranges'))) await reconcileAll(s);
      await refreshReport(s);
      if (s.evidence.report!.verdict === 'red' || failedRanges > 0) {
        const constraints = broken.length ? `rows break ${broken.join('; ')}; ` : '';
        stop = await needsAttention(
          s,
          `${failedRanges} range(s) failed or the global checks disagree: ${refusals(s)}${constraints}rerun the failed ranges or abort`,
        );
        if (stop) return stop;
        continue;
      }
      enter(s.live ? 'catchup' : 'gate');
    }

    if (stage === 'catchup') {
      if (s.live?.capture) await capturedCatchUp(s);
      else await catchUp(s);
      const stop = await stopIfAborted(s);
      if (stop) return stop;
      await refreshReport(s);
      if (s.evidence.report!.verdict === 'red' || s.ranges.failedCount() > 0) {
        const end = await needsAttention(
          s,
          `${s.ranges.failedCount()} range(s) failed while catching up, or the global checks disagree: rerun the failed ranges or abort`,
        );
        if (end) return end;
        enter('backfill');
        continue;
      }
      s.catchup.evidenceTaken(s.evidence.report!.delta.watermark);
      enter('gate');
    }

    // The evidence covers the tables as planned: both catalogs compared before it is presented.
    const drift = await schemaDrift(s);
    if (drift.kind === 'stop') return stopOnDrift(s, drift.why);
    if (drift.kind === 'reprove') {
      log.info('partitions changed: a new checkpoint', { migration: s.name, why: drift.why });
      enter('catchup');
      continue;
    }
    const g = await gate(s);
    if ('end' in g) return g.end;
    if ('to' in g) {
      enter(g.to);
      continue;
    }
    await audit(s, 'approve', g.approved.approver, g.approved.digest, { comment: g.approved.comment });
    // An abort taken while the approval was recorded stops the migration before anything is frozen.
    // (Patched: migrations started before this went on to the switch.)
    const abortable = patched('abort-before-switch');
    if (abortable) {
      const stop = await stopIfAborted(s);
      if (stop) return stop;
    }

    if (s.live) {
      s.setPhase('final_check', 'freezing the source and checking the final window');
      s.catchup.finalCheckStarted();
      let why = await finalCheck(s, g.approved);
      if (!why) {
        // Under the freeze, before the switch: the tables are still those the evidence covers.
        const late = await schemaDrift(s);
        if (late.kind === 'stop') return stopOnDrift(s, late.why);
        if (late.kind === 'reprove') why = late.why;
      }
      if (why) {
        await unfreezeAfter(s, why);
        await voidApproval(s, why);
        enter('catchup');
        continue;
      }
    }
    if (abortable && s.control.aborted !== undefined) {
      // Aborted during the final check: writes come back to the source, nothing is switched.
      if (s.gate.frozen) await unfreezeAfter(s, `aborted: ${s.control.aborted}`);
      const stop = await stopIfAborted(s);
      if (stop) return stop;
    }
    if (!s.live) {
      const late = await schemaDrift(s);
      if (late.kind !== 'none') return stopOnDrift(s, late.why);
    }
    return switchAuthority(s, g.approved);
  }
}

/** A schema change the evidence cannot cover: writes back on the source, then the migration fails with the sentence. */
async function stopOnDrift(s: MigrationState, why: string): Promise<never> {
  if (s.gate.frozen) await unfreezeAfter(s, why);
  s.setPhase('failed', why);
  throw failure('SchemaChanged', why);
}

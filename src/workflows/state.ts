// The migration's state, owned by one class: counters per table, the window's queue, the gate's
// decision, catch-up's marks. Handlers and phases read and change it through these methods; a run
// hands `carry()` to the next one at continue-as-new.
import { setCurrentDetails, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { TablePlan } from '../plan/bounds';
import type { MigrationSpec } from '../spec/schema';
import { NO_KEYS, provisionalReport, withAuditSince, type Approval, type AuditRecord, type Report } from '../domain/report';
import type { CaptureProgress, Progress } from './messages';
import type { Phase } from '../domain/phases';
import { migrationKey, phaseKey } from './search-attributes';
import type { Carried, FinalWindow, LiveState, RangeRef, TableState } from './types';
import { currentDetails } from './details';
import { showMetrics } from './metrics';
import type { Waiting } from '../domain/waits';
import { resumeSummary, type ResumeState } from '../domain/resume';

/** Below the 10,240-event warning with room for the completions of ranges still in flight. */
export const HISTORY_BUDGET = 5000;

/** Failed ranges carried with their located keys; beyond this, counts only (the ledger has the keys). */
const CARRIED_KEYS = 100;

const now = () => new Date().toISOString();

/** The oldest of the tables' watermarks: catch-up has reached at least this far everywhere. */
export function oldestMark(marks: (string | null)[]): string | null {
  const m = marks.filter((x): x is string => x !== null).sort();
  return m.length ? m[0] : null;
}

export class MigrationState {
  phase: Phase = 'planning';
  /** why the migration waits or stopped, in a sentence */
  detail?: string;
  readonly startedAt: string;
  updatedAt: string;
  /** set once the spec is valid */
  spec!: MigrationSpec;
  plans: TablePlan[] = [];
  tables: TableState[] = [];
  report?: Report;
  digest?: string;
  /**
   * Audit entries recorded since the report was built (the workflow's own, and refused attempts the
   * worker signalled), shown with it; `raced`: recorded while a report was being built.
   */
  auditSince: { entry: AuditRecord; raced?: boolean }[] = [];
  /** a report is being built (its ledger read may or may not see an entry recorded now) */
  buildingReport = false;
  paused = false;
  aborted?: string;
  approval?: Approval;
  rejection?: { approver: string; reason: string };
  readonly approvals: Approval[] = [];
  readonly rerunQueue: RangeRef[] = [];
  live?: LiveState;
  attention?: string;
  finalWindow?: FinalWindow;
  concurrency: number;
  /** the first error a range in flight hit that its retries did not cure */
  fatal?: unknown;
  /** the freeze action ran and no unfreeze or switch has followed: an abort must unfreeze */
  frozen = false;
  /** what activities wait for now (a database that cannot be reached, retries that ran out), by key */
  readonly waits = new Map<string, Waiting>();
  /** while the migration waits for a person after waiting too long: the phase to go back to */
  stranded?: { phase: Phase; detail?: string };
  /** resume signals received: a wait for a person ends at the next one */
  resumeSignals = 0;
  /** started again after an earlier run of this name: what its ledger offered, and what was reused (resume.ts) */
  resume?: ResumeState;
  private readonly runs: number;

  constructor(
    readonly name: string,
    concurrency: number,
    private readonly carried?: Carried,
  ) {
    this.startedAt = carried?.startedAt ?? now();
    this.updatedAt = this.startedAt;
    this.concurrency = concurrency;
    this.runs = carried?.runs ?? 0;
  }

  get execution(): string {
    return workflowInfo().firstExecutionRunId;
  }

  setPhase(p: Phase, why?: string): void {
    this.phase = p;
    this.detail = why;
    this.updatedAt = now();
    upsertSearchAttributes([
      { key: migrationKey, value: this.name },
      { key: phaseKey, value: p },
    ]);
    this.showDetails();
    showMetrics(this);
  }

  /** Something changed (in one table's ranges, when `table` is given): the UI and the gauges follow. */
  touch(table?: number): void {
    this.updatedAt = now();
    this.showDetails();
    showMetrics(this, table);
  }

  /** The UI's "Current Details", from the state as it is now (no command: not in the history). */
  showDetails(): void {
    // What the UI shows must never stop the migration (and replays over older state shapes).
    try {
      setCurrentDetails(currentDetails(this));
    } catch {
      setCurrentDetails(`**Phase:** \`${this.phase}\``);
    }
  }

  /** The partitions of a table as a proof now covers them (a checkpoint under capture, the final sweep). */
  partitionsProven(table: number, now: { source: string[]; target: string[] }): void {
    const plan = this.plans[table];
    if (!plan) return;
    plan.partitions = now;
    const t = this.tables[table];
    if (t && t.plan !== plan) t.plan.partitions = now;
  }

  /** A fresh run: the plans from planning, and the live state when the source takes writes. */
  planned(plans: TablePlan[], live: LiveState | undefined): void {
    this.plans = plans;
    this.tables = plans.map((plan) => ({
      plan,
      next: 0,
      verified: 0,
      inFlight: new Set(),
      released: new Set(),
      failed: new Map(),
      rowsCopied: 0,
      rowsRecopied: 0,
    }));
    this.live = live;
  }

  /** A continued run: the plan and the counters from the run before. Returns false on a first run. */
  restore(): boolean {
    const c = this.carried;
    if (!c) return false;
    this.plans = c.plans;
    this.tables = c.plans.map((plan, i) => {
      const t = c.tables[i];
      return {
        plan,
        next: t.next,
        verified: t.verified,
        inFlight: new Set(),
        released: new Set(),
        failed: new Map(t.failed.map((f) => [f.index, f])),
        rowsCopied: t.rowsCopied,
        // A run carried from before re-copies were counted apart: its copies read as first copies.
        rowsRecopied: t.rowsRecopied ?? 0,
      };
    });
    this.approvals.push(...c.approvals);
    this.concurrency = c.concurrency;
    this.paused = c.paused;
    this.rerunQueue.push(...c.rerunQueue);
    this.live = c.live;
    this.resume = c.resume;
    return true;
  }

  carry(): Carried {
    return {
      plans: this.plans,
      // Located keys of many failed ranges would bloat the input: the ledger has them all.
      tables: this.tables.map((st) => ({
        next: st.next,
        verified: st.verified,
        rowsCopied: st.rowsCopied,
        rowsRecopied: st.rowsRecopied,
        failed: [...st.failed.values()].map((f, k) => (k < CARRIED_KEYS || !f.located ? f : { ...f, located: { ...f.located, keys: NO_KEYS } })),
      })),
      startedAt: this.startedAt,
      approvals: this.approvals,
      concurrency: this.concurrency,
      paused: this.paused,
      rerunQueue: this.rerunQueue,
      runs: this.runs + 1,
      ...(this.live ? { live: this.live } : {}),
      ...(this.resume ? { resume: this.resume } : {}),
    };
  }

  historyFull(): boolean {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength >= HISTORY_BUDGET;
  }

  // ---- the backfill window ----

  hasWork(): boolean {
    // Change capture: no range starts in an epoch whose snapshot is gone (the next epoch takes them).
    if (this.live?.capture?.lost) return false;
    return this.workLeft();
  }

  /** Ranges still to take, whatever the epoch. */
  workLeft(): boolean {
    return this.rerunQueue.length > 0 || (this.live?.capture?.again.length ?? 0) > 0 || this.tables.some((st) => st.next < st.plan.rangeCount);
  }

  inFlight(): number {
    return this.tables.reduce((a, st) => a + st.inFlight.size, 0);
  }

  /** Slots of the window in use: ranges in flight but those waiting out the lag grace. */
  slotsInUse(): number {
    return this.tables.reduce((a, st) => a + st.inFlight.size - st.released.size, 0);
  }

  failedCount(): number {
    return this.tables.reduce((a, st) => a + st.failed.size, 0);
  }

  /** The next range to attempt: a rerun first, else the next planned range of the first table with one. */
  nextRange(): RangeRef | undefined {
    // A range whose epoch ended under it: it never got a status, so no count changes.
    const again = this.live?.capture?.again.shift();
    if (again) return again;
    const r = this.rerunQueue.shift();
    if (r) {
      // Reruns are taken only once every range has a status: take it out of the counts until proven again.
      const st = this.tables[r.t];
      if (!st.failed.delete(r.i)) st.verified--;
      return { ...r, copiedBefore: true };
    }
    for (const [t, st] of this.tables.entries()) if (st.next < st.plan.rangeCount) return { t, i: st.next++ };
    return undefined;
  }

  tableIndexOf(name: string): number {
    return this.tables.findIndex((t, i) => t.plan.source === name || t.plan.target === name || this.spec.tables[i].source === name);
  }

  /** Queues ranges for a rerun (each once); returns how many were queued. */
  queueRerun(table: string | undefined, ranges: number[]): number {
    const ts = table === undefined ? this.tables.map((_, t) => t) : [this.tableIndexOf(table)];
    let n = 0;
    for (const t of ts) {
      for (const i of new Set(ranges)) {
        if (i >= this.tables[t].plan.rangeCount || this.rerunQueue.some((q) => q.t === t && q.i === i)) continue;
        this.rerunQueue.push({ t, i });
        n++;
      }
    }
    this.touch();
    return n;
  }

  // ---- the gate ----

  /** A person (or the gate, or an operator's signal) decided something the gate must act on. */
  decided(): boolean {
    return this.approval !== undefined || this.rejection !== undefined || this.rerunQueue.length > 0 || this.aborted !== undefined;
  }

  hasDelta(): boolean {
    return !!this.live && this.live.marks.some((m) => m !== null);
  }

  delta(): Report['delta'] | undefined {
    const l = this.live;
    // Change capture: the evidence's point is the last green checkpoint's LSN.
    return l && { watermark: l.capture ? l.capture.checkpoint : oldestMark(l.marks), rowsApplied: l.rowsApplied, remaining: l.remaining };
  }

  /** Change capture as the progress query and the report show it. */
  captureView(): CaptureProgress | undefined {
    const c = this.live?.capture;
    return (
      c && {
        appliedLsn: c.applied,
        checkpoint: c.checkpoint,
        lagSeconds: c.lagSeconds,
        lagBytes: c.lagBytes,
        transactions: c.transactions,
        rows: c.rows,
        epochs: c.epochs,
      }
    );
  }

  // ---- waiting in sight (waits.ts) ----

  /** One more failed try of something the migration waits for; the first one starts the clock. */
  failedTry(key: string, what: string, error: string): Waiting {
    let w = this.waits.get(key);
    if (!w) {
      w = { what, error, since: now(), tries: 0 };
      this.waits.set(key, w);
    }
    w.error = error;
    w.tries++;
    return w;
  }

  /** It answered again: no longer waited for. */
  reached(key: string): void {
    if (this.waits.delete(key)) this.touch();
  }

  /** Waited too long: needs_attention, with why, until a person resumes (the first waiter to give up says so). */
  strand(why: string): void {
    if (this.stranded) return;
    this.stranded = { phase: this.phase, detail: this.detail };
    this.setPhase('needs_attention', why);
  }

  /** A person resumed: back to the phase the wait interrupted, trying again. */
  unstrand(): void {
    const back = this.stranded;
    if (!back) return;
    this.stranded = undefined;
    for (const w of this.waits.values()) w.since = now();
    this.setPhase(back.phase, back.detail);
  }

  // ---- what the queries show ----

  progress(): Progress {
    const delta = this.delta();
    return {
      migration: this.name,
      phase: this.phase,
      detail: this.detail,
      tables: this.tables.map((t) => ({
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
        rowsRecopied: t.rowsRecopied,
      })),
      digest: this.phase === 'awaiting_approval' ? this.digest : undefined,
      ...(this.phase === 'awaiting_approval' && this.spec ? { approvers: this.spec.cutover.approvers ?? [] } : {}),
      ...(delta ? { delta } : {}),
      ...(this.live?.capture ? { capture: this.captureView() } : {}),
      ...(this.attention ? { attention: this.attention } : {}),
      ...(this.finalWindow ? { finalWindow: this.finalWindow } : {}),
      ...(this.waits.size ? { waiting: [...this.waits.values()].map((w) => ({ ...w })) } : {}),
      ...(this.resume ? { resume: resumeSummary(this.resume, this.plans) } : {}),
      paused: this.paused,
      concurrency: this.concurrency,
      startedAt: this.startedAt,
      updatedAt: this.updatedAt,
    };
  }

  /** An audit entry recorded now, for the report until it is built again. */
  audited(entry: AuditRecord): void {
    this.auditSince.push({ entry, ...(this.buildingReport ? { raced: true } : {}) });
  }

  /** The last report built, or a provisional one while the evidence is still being gathered. */
  reportView(): Report {
    const base =
      this.report ??
      provisionalReport(
        this.name,
        this.tables.map((st) => ({
          source: st.plan.source,
          target: st.plan.target,
          rangeCount: st.plan.rangeCount,
          verified: st.verified,
          failed: [...st.failed.values()],
        })),
        now(),
      );
    return { ...withAuditSince(base, this.auditSince), phase: this.phase, approvals: [...this.approvals] };
  }
}

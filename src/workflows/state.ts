// The migration's state, composed of the capabilities' own: the ranges (range/), the live source and
// change capture (catchup/, capture/), the gate's decisions (gate/), the evidence (report/), what
// operators steer (control.ts) and what is waited for (waiting.ts). Each part is changed only
// through its own methods; this class keeps the phase, the spec, and what a run hands on at
// continue-as-new (`carry()`) and shows in the queries. The UI's details and the gauges read it: it
// tells them through the observer the workflow gives it.
import { upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { TablePlan } from '../domain/plan';
import type { MigrationSpec } from '../spec/schema';
import { provisionalReport, type AuditRecord, type Report } from '../domain/report';
import type { Progress } from './messages';
import type { Phase } from '../domain/phases';
import { migrationKey, phaseKey } from './search-attributes';
import type { Carried, LiveState, RangeRef } from './types';
import { resumeSummary } from '../domain/resume';
import { Ranges } from '../range/state.workflow';
import { CatchUp, type LiveView } from '../catchup/state.workflow';
import { Decisions } from '../gate/state.workflow';
import { Evidence } from '../report/state.workflow';
import { Control } from './control';
import { Waits } from './waiting';

/** Below the 10,240-event warning with room for the completions of ranges still in flight. */
export const HISTORY_BUDGET = 5000;

const now = () => new Date().toISOString();

/** Who shows the state: the UI's "Current Details" and the gauges (no command: not in the history). */
export interface StateObserver {
  details(s: MigrationState): void;
  /** every gauge, or with `table` the phase and that table's ranges */
  metrics(s: MigrationState, table?: number): void;
}

export class MigrationState {
  private _phase: Phase = 'planning';
  private _detail?: string;
  readonly startedAt: string;
  private _updatedAt: string;
  private _spec?: MigrationSpec;
  private readonly runs: number;

  readonly ranges = new Ranges();
  readonly catchup = new CatchUp();
  /** change capture's part of the live state */
  readonly capture = this.catchup.capture;
  /** the way back's part of the live state (`cutover.reverse`) */
  readonly reverse = this.catchup.reverse;
  readonly gate = new Decisions();
  readonly evidence = new Evidence();
  readonly control: Control;
  readonly waits = new Waits();

  constructor(
    readonly name: string,
    concurrency: number,
    private readonly observer: StateObserver,
    private readonly carried?: Carried,
  ) {
    this.startedAt = carried?.startedAt ?? now();
    this._updatedAt = this.startedAt;
    this.control = new Control(concurrency);
    this.runs = carried?.runs ?? 0;
  }

  get phase(): Phase {
    return this._phase;
  }
  /** why the migration waits or stopped, in a sentence */
  get detail(): string | undefined {
    return this._detail;
  }
  get updatedAt(): string {
    return this._updatedAt;
  }
  /** set once the spec is valid */
  get spec(): MigrationSpec {
    return this._spec!;
  }
  /** the live source's state (undefined: the source takes no writes) */
  get live(): LiveView | undefined {
    return this.catchup.view;
  }

  get execution(): string {
    return workflowInfo().firstExecutionRunId;
  }

  setPhase(p: Phase, why?: string): void {
    this._phase = p;
    this._detail = why;
    this._updatedAt = now();
    upsertSearchAttributes([
      { key: migrationKey, value: this.name },
      { key: phaseKey, value: p },
    ]);
    this.showDetails();
    this.observer.metrics(this);
  }

  /** Says what the migration does now, in the same phase (shown at the next `showDetails` or `touch`). */
  describe(why: string): void {
    this._detail = why;
  }

  /** Something changed (in one table's ranges, when `table` is given): the UI and the gauges follow. */
  touch(table?: number): void {
    this._updatedAt = now();
    this.showDetails();
    this.observer.metrics(this, table);
  }

  /** The UI's "Current Details", from the state as it is now (no command: not in the history). */
  showDetails(): void {
    this.observer.details(this);
  }

  /** The spec is valid. */
  specified(spec: MigrationSpec): void {
    this._spec = spec;
  }

  /** Schema patterns expanded by planning: from here on the spec lists every table (and carries it on). */
  expanded(tables: MigrationSpec['tables']): void {
    this._spec = { ...this.spec, tables };
  }

  /** A fresh run: the plans from planning, and the live state when the source takes writes. */
  planned(plans: TablePlan[], live: LiveState | undefined): void {
    this.ranges.planned(plans);
    this.catchup.started(live);
  }

  /** A continued run: the plan and the counters from the run before. Returns false on a first run. */
  restore(): boolean {
    const c = this.carried;
    if (!c) return false;
    this.ranges.restore(c);
    this.gate.restore(c.approvals);
    this.control.restore(c);
    this.catchup.started(c.live);
    return true;
  }

  carry(): Carried {
    const r = this.ranges.carried();
    const live = this.catchup.carried();
    return {
      plans: r.plans,
      tables: r.tables,
      startedAt: this.startedAt,
      approvals: this.gate.carried(),
      concurrency: this.control.concurrency,
      paused: this.control.paused,
      rerunQueue: r.rerunQueue,
      runs: this.runs + 1,
      ...(live ? { live } : {}),
      ...(r.resume ? { resume: r.resume } : {}),
      ...(r.sessions ? { sessions: r.sessions } : {}),
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
    return (this.live?.capture?.again.length ?? 0) > 0 || this.ranges.workLeft();
  }

  /** The next range to attempt: one a lost snapshot gave back, a rerun, else the next planned range. */
  nextRange(): RangeRef | undefined {
    // A range whose epoch ended under it: it never got a status, so no count changes.
    return this.capture.takeAgain() ?? this.ranges.next();
  }

  tableIndexOf(name: string): number {
    return this.ranges.tables.findIndex((t, i) => t.plan.source === name || t.plan.target === name || this.spec.tables[i].source === name);
  }

  /** Queues ranges for a rerun (each once); returns how many were queued. */
  queueRerun(table: string | undefined, ranges: number[]): number {
    const ts = table === undefined ? this.ranges.tables.map((_, t) => t) : [this.tableIndexOf(table)];
    const n = this.ranges.queueRerun(ts, ranges);
    this.touch();
    return n;
  }

  // ---- the gate ----

  /** A person (or the gate, or an operator's signal) decided something the gate must act on. */
  decided(): boolean {
    return this.gate.approval !== undefined || this.gate.rejection !== undefined || this.ranges.rerunQueue.length > 0 || this.control.aborted !== undefined;
  }

  // ---- waiting in sight (waits.ts) ----

  /** It answered again: no longer waited for. */
  reached(key: string): void {
    if (this.waits.reached(key)) this.touch();
  }

  /** Waited too long: needs_attention, with why, until a person resumes (the first waiter to give up says so). */
  strand(why: string): void {
    if (!this.waits.strand({ phase: this.phase, detail: this.detail })) return;
    this.setPhase('needs_attention', why);
  }

  /** A person resumed: back to the phase the wait interrupted, trying again. */
  unstrand(): void {
    const back = this.waits.unstrand();
    if (!back) return;
    this.setPhase(back.phase, back.detail);
  }

  // ---- what the queries show ----

  progress(): Progress {
    const delta = this.catchup.delta();
    const { gate, control } = this;
    return {
      migration: this.name,
      phase: this.phase,
      detail: this.detail,
      tables: this.ranges.tables.map((t) => ({
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
      digest: this.phase === 'awaiting_approval' ? this.evidence.digest : undefined,
      ...(this.phase === 'awaiting_approval' && this.spec ? { approvers: this.spec.cutover.approvers ?? [] } : {}),
      ...(delta ? { delta } : {}),
      ...(this.live?.capture ? { capture: this.capture.view() } : {}),
      ...(this.live?.reverse ? { reverse: this.reverse.progress() } : {}),
      ...(gate.attention ? { attention: gate.attention } : {}),
      ...(gate.finalWindow ? { finalWindow: gate.finalWindow } : {}),
      ...(this.waits.size ? { waiting: this.waits.all().map((w) => ({ ...w })) } : {}),
      ...(this.ranges.resume ? { resume: resumeSummary(this.ranges.resume, this.ranges.plans) } : {}),
      paused: control.paused,
      concurrency: control.concurrency,
      ...(this.ranges.workersInSight() ? { workers: this.ranges.workersInSight() } : {}),
      ...(this.ranges.sessions ? { sessions: { ...this.ranges.sessions } } : {}),
      startedAt: this.startedAt,
      updatedAt: this.updatedAt,
    };
  }

  /** An audit entry recorded now, for the report until it is built again. */
  audited(entry: AuditRecord): void {
    this.evidence.audited(entry);
  }

  /** The last report built, or a provisional one while the evidence is still being gathered. */
  reportView(): Report {
    const base =
      this.evidence.report ??
      provisionalReport(
        this.name,
        this.ranges.tables.map((st) => ({
          source: st.plan.source,
          target: st.plan.target,
          rangeCount: st.plan.rangeCount,
          verified: st.verified,
          failed: [...st.failed.values()],
        })),
        now(),
      );
    const reverse = this.reverse.report();
    return { ...this.evidence.withAuditSince(base), phase: this.phase, approvals: [...this.gate.approvals], ...(reverse ? { reverse } : {}) };
  }
}

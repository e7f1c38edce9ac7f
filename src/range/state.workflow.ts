// The ranges' state: the plans, each table's counters and ranges in flight, the reruns queued, and
// what an earlier run of this name left to reuse. The window, the sweeps and the checkpoints change
// it through these methods; the rest reads it.
import type { TablePlan } from '../domain/plan';
import type { FailedRange, RangeOutcome, RangeResult, SessionUse } from '../domain/range-lifecycle';
import { NO_KEYS } from '../domain/report';
import { dispatchNext, noSharing, provenBy, workersInSight } from '../domain/sharing';
import { tallyFirstAttempt, type ResumeState, type Reuse } from '../domain/resume';
import type { Carried, RangeRef, TableState } from '../workflows/types';

/** Failed ranges carried with their located keys; beyond this, counts only (the ledger has the keys). */
const CARRIED_KEYS = 100;

/** One table's state as the others read it. */
export interface TableView {
  readonly plan: Readonly<TablePlan>;
  /** the next range the window takes */
  readonly next: number;
  readonly verified: number;
  readonly inFlight: ReadonlySet<number>;
  /** ranges in flight that wait out verify.lagGrace: they hold no slot of the window */
  readonly released: ReadonlySet<number>;
  readonly failed: ReadonlyMap<number, FailedRange>;
  /** rows written into the target by copies: first copies, re-copies and catch-up's writes */
  readonly rowsCopied: number;
  /** of rowsCopied, the rows of ranges copied again */
  readonly rowsRecopied: number;
}

export class Ranges {
  private _plans: TablePlan[] = [];
  private _tables: TableState[] = [];
  private readonly queue: RangeRef[] = [];
  private _resume?: ResumeState;
  private sharing = noSharing();
  private _sessions?: SessionUse;

  /** (typed as the activities take them; changed only here, like the rest) */
  get plans(): TablePlan[] {
    return this._plans;
  }
  get tables(): readonly TableView[] {
    return this._tables;
  }
  /** ranges to copy and verify again, each once */
  get rerunQueue(): readonly RangeRef[] {
    return this.queue;
  }
  /** started again after an earlier run of this name: what its ledger offered, and what was reused (resume.ts) */
  get resume(): Readonly<ResumeState> | undefined {
    return this._resume;
  }

  /** A fresh run: the plans from planning. */
  planned(plans: TablePlan[]): void {
    this._plans = plans;
    this._tables = plans.map((plan) => ({
      plan,
      next: 0,
      verified: 0,
      inFlight: new Set(),
      released: new Set(),
      failed: new Map(),
      rowsCopied: 0,
      rowsRecopied: 0,
    }));
  }

  /** A continued run: the plan and the counters from the run before. */
  restore(c: Carried): void {
    this._plans = c.plans;
    this._tables = c.plans.map((plan, i) => {
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
    this.queue.push(...c.rerunQueue);
    this._resume = c.resume;
    this._sessions = c.sessions;
  }

  /** What the next run takes over (counters, not ranges). */
  carried(): Pick<Carried, 'plans' | 'tables' | 'rerunQueue' | 'resume' | 'sessions'> {
    return {
      plans: this._plans,
      // Located keys of many failed ranges would bloat the input: the ledger has them all.
      tables: this._tables.map((st) => ({
        next: st.next,
        verified: st.verified,
        rowsCopied: st.rowsCopied,
        rowsRecopied: st.rowsRecopied,
        failed: [...st.failed.values()].map((f, k) => (k < CARRIED_KEYS || !f.located ? f : { ...f, located: { ...f.located, keys: NO_KEYS } })),
      })),
      rerunQueue: this.queue,
      resume: this._resume,
      ...(this._sessions ? { sessions: this._sessions } : {}),
    };
  }

  /** Started again after an earlier run: what its ledger offers to reuse. */
  startedAgain(resume: ResumeState): void {
    this._resume = resume;
  }

  /** A resumed migration's first attempt at a range of table `t`: reused, or copied. */
  firstAttempted(t: number, reuse: Reuse | undefined): void {
    const r = this._resume?.tables[t];
    if (r) tallyFirstAttempt(r, reuse);
  }

  /** Planned ranges not yet taken, or reruns queued. */
  workLeft(): boolean {
    return this.queue.length > 0 || this._tables.some((st) => st.next < st.plan.rangeCount);
  }

  inFlight(): number {
    return this._tables.reduce((a, st) => a + st.inFlight.size, 0);
  }

  /** Slots of the window in use: ranges in flight but those waiting out the lag grace. */
  slotsInUse(): number {
    return this._tables.reduce((a, st) => a + st.inFlight.size - st.released.size, 0);
  }

  failedCount(): number {
    return this._tables.reduce((a, st) => a + st.failed.size, 0);
  }

  /** The next range to attempt: a rerun first, else the next planned range of the first table with one. */
  next(): RangeRef | undefined {
    const r = this.queue.shift();
    if (r) {
      // Reruns are taken only once every range has a status: take it out of the counts until proven again.
      const st = this._tables[r.t];
      if (!st.failed.delete(r.i)) st.verified--;
      return { ...r, copiedBefore: true };
    }
    for (const [t, st] of this._tables.entries()) if (st.next < st.plan.rangeCount) return { t, i: st.next++ };
    return undefined;
  }

  /** Queues ranges of the tables `ts` for a rerun (each once); returns how many were queued. */
  queueRerun(ts: number[], ranges: number[]): number {
    let n = 0;
    for (const t of ts) {
      for (const i of new Set(ranges)) {
        if (i >= this._tables[t].plan.rangeCount || this.queue.some((q) => q.t === t && q.i === i)) continue;
        this.queue.push({ t, i });
        n++;
      }
    }
    return n;
  }

  /** Whether the next range may go eagerly to the worker that schedules it (domain/sharing.ts). */
  dispatch(): boolean {
    const { eager, next } = dispatchNext(this.sharing);
    this.sharing = next;
    return eager;
  }

  /** An attempt of a range ran: on which worker, and how long it waited for capped sessions. */
  ran(r: Pick<RangeResult, 'worker' | 'sessions'>): void {
    this.sharing = provenBy(this.sharing, r.worker);
    if (r.sessions) this._sessions = { caps: r.sessions.caps, waitedMs: (this._sessions?.waitedMs ?? 0) + r.sessions.waitedMs };
  }

  /** The caps on our sessions the latest range's worker had, and the ranges' waits for one in all. */
  get sessions(): Readonly<SessionUse> | undefined {
    return this._sessions;
  }

  /** The workers that ran the latest ranges. */
  workersInSight(): number {
    return workersInSight(this.sharing);
  }

  /** Range `i` of table `t` is in flight. */
  started(t: number, i: number): void {
    this._tables[t].inFlight.add(i);
  }

  /** It waits out the lag grace: it holds no slot of the window. */
  released(t: number, i: number): void {
    this._tables[t].released.add(i);
  }

  /** How its attempts ended: verified, or failed with the evidence. */
  settled(t: number, i: number, outcome: RangeOutcome): void {
    const st = this._tables[t];
    if (outcome.verified) {
      st.failed.delete(i);
      st.verified++;
    } else {
      st.failed.set(i, outcome.failure);
    }
  }

  /** It is no longer in flight (settled, given back to a new epoch, or stopped). */
  landed(t: number, i: number): void {
    const st = this._tables[t];
    st.inFlight.delete(i);
    st.released.delete(i);
  }

  /** Rows written into table `t`'s target; `again`: by ranges copied before (re-copies). */
  copied(t: number, rows: number, again = false): void {
    const st = this._tables[t];
    if (!st) return;
    st.rowsCopied += rows;
    if (again) st.rowsRecopied += rows;
  }

  /** Every range of table `t` measured again (a sweep, a checkpoint): these still differ, the others are verified. */
  measured(t: number, failed: FailedRange[]): void {
    const st = this._tables[t];
    const still = new Map(failed.map((f) => [f.index, f]));
    for (const i of st.failed.keys()) if (!still.has(i)) st.verified++;
    for (const f of failed) if (!st.failed.has(f.index)) st.verified--;
    st.failed = still;
  }

  /** The partitions of a table as a proof now covers them (a checkpoint under capture, the final sweep). */
  partitionsProven(table: number, now: { source: string[]; target: string[] }): void {
    const plan = this._plans[table];
    if (!plan) return;
    plan.partitions = now;
    const t = this._tables[table];
    if (t && t.plan !== plan) t.plan.partitions = now;
  }
}

// Change capture's state (`capture: logical`), inside the live state that continue-as-new carries:
// the snapshot epochs, how far the stream has applied, the last green checkpoint, the ranges to take
// again in a new epoch. The capture phases (epochs.workflow.ts) and the window change it through
// these methods; the rest reads it (`state.live.capture`).
import type { CaptureProgress } from '../workflows/messages';
import type { CaptureState, RangeRef } from '../workflows/types';

export function newCaptureState(): CaptureState {
  return { epochs: 0, applied: null, transactions: 0, rows: 0, lagBytes: '0', lagSeconds: 0, checkpoint: null, again: [], lost: false, dropped: false };
}

/** Change capture's state as the others read it. */
export type CaptureView = Readonly<Omit<CaptureState, 'again'>> & { readonly again: readonly RangeRef[] };

/** What one call of the stream did (applyCapture's outcome, in part). */
export interface Applied {
  transactions: number;
  rows: number;
  appliedLsn: string | null;
  lagBytes: string;
  lagSeconds: number;
}

/** A stream's counts (either direction's) after one apply call: its work added, its position and lag taken. */
export function countApplied(c: Pick<CaptureState, 'transactions' | 'rows' | 'applied' | 'lagBytes' | 'lagSeconds'>, r: Applied): void {
  c.transactions += r.transactions;
  c.rows += r.rows;
  if (r.appliedLsn) c.applied = r.appliedLsn;
  c.lagBytes = r.lagBytes;
  c.lagSeconds = r.lagSeconds;
}

export class Capture {
  /** `state`: the capture state as it stands now (the live state's, which a continued run replaces). */
  constructor(private readonly state: () => CaptureState | undefined) {}

  private get c(): CaptureState {
    return this.state()!;
  }

  /** Change capture as the progress query and the report show it. */
  view(): CaptureProgress | undefined {
    const c = this.state();
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

  /** Counts an apply call's work. */
  applied(r: Applied): void {
    countApplied(this.c, r);
  }

  /** A new snapshot epoch is opened: its number. */
  openEpoch(): number {
    return ++this.c.epochs;
  }

  /** The holder of `epoch` ended: if the ranges read it, they stop being taken (the next epoch copies them). */
  holderEnded(epoch: number): void {
    const c = this.c;
    if (c.epoch === epoch) c.lost = true;
  }

  /** The ranges change: the next checkpoint is the evidence (and the final window's start). */
  rangesChange(): void {
    this.c.checkpoint = null;
  }

  /** The ranges read `epoch`'s snapshot at `point` now (`lost`: its holder ended already). */
  reading(epoch: number, point: string, lost: boolean): void {
    const c = this.c;
    c.epoch = epoch;
    c.point = point;
    c.lost = lost;
  }

  /** A range found its epoch's snapshot gone: take no more ranges in it. */
  snapshotGone(): void {
    this.c.lost = true;
  }

  /** A range whose snapshot went away under it: a new epoch takes it again. */
  giveBack(r: RangeRef): void {
    const c = this.c;
    c.lost = true;
    c.again.push(r);
  }

  /** The next range given back, if any (it never got a status, so no count changes). */
  takeAgain(): RangeRef | undefined {
    return this.state()?.again.shift();
  }

  /** The ranges no longer read the epoch's snapshot. */
  doneReading(): void {
    this.c.epoch = undefined;
  }

  /** The loss of the epoch was taken into account: the next one starts clean. */
  lossHandled(): void {
    this.c.lost = false;
  }

  /** A green checkpoint at `point`: the evidence's point, and the source's counts before it (the tripwire's start). */
  checkpointed(point: string, baseline: CaptureState['baseline']): void {
    const c = this.c;
    c.checkpoint = point;
    c.baseline = baseline;
  }

  /** The final window compared this many changed keys. */
  windowCompared(keys: number): void {
    this.c.windowKeys = keys;
  }

  /** How the final window's tripwire judged it. */
  judged(tripwire: string): void {
    this.c.tripwire = tripwire;
  }

  /** The slot and the publication were dropped. */
  slotDropped(): void {
    this.c.dropped = true;
  }
}

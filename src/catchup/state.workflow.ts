// The state of a migration whose source keeps taking writes (carried at continue-as-new): the stage
// the loop is in, catch-up's watermarks and counts, the watermark of the evidence, and change
// capture's state within it (capture/state.workflow.ts). Catch-up, the gate and the stage loop change
// it through these methods; the rest reads it (`state.live`).
import { Capture, newCaptureState, type CaptureView } from '../capture/state.workflow';
import { Reverse } from '../reverse/state.workflow';
import { captureOf, type MigrationSpec } from '../spec/schema';
import type { Report } from '../domain/report';
import type { LiveState, Stage } from '../workflows/types';

/** The oldest of the tables' watermarks: catch-up has reached at least this far everywhere. */
export function oldestMark(marks: readonly (string | null)[]): string | null {
  const m = marks.filter((x): x is string => x !== null).sort();
  return m.length ? m[0] : null;
}

/** A live source's state at planning: catch-up starts from `mark`, read before the first range was copied. */
export function newLiveState(spec: MigrationSpec, mark: string | null): LiveState {
  return {
    stage: 'backfill',
    marks: spec.tables.map((t) => (t.delta ? mark : null)),
    rowsApplied: 0,
    remaining: 0,
    evidenceMark: null,
    finalChecks: 0,
    ...(captureOf(spec) ? { capture: newCaptureState() } : {}),
  };
}

/** The live state as the others read it. */
export type LiveView = Readonly<Omit<LiveState, 'marks' | 'capture' | 'reverse'>> & {
  readonly marks: readonly (string | null)[];
  readonly capture?: CaptureView;
  readonly reverse?: Readonly<LiveState['reverse']>;
};

export class CatchUp {
  private state?: LiveState;
  /** change capture's part of it */
  readonly capture = new Capture(() => this.state?.capture);
  /** the way back's part of it (`cutover.reverse`) */
  readonly reverse = new Reverse(() => this.state);

  /** undefined: the source takes no writes */
  get view(): LiveView | undefined {
    return this.state;
  }

  /** Planning found a live source (a fresh run), or the run before had one (a continued run). */
  started(live: LiveState | undefined): void {
    this.state = live;
  }

  /** What the next run takes over. */
  carried(): LiveState | undefined {
    return this.state;
  }

  /** The stage loop moves on: a continued run starts there. */
  enter(stage: Stage): void {
    if (this.state) this.state.stage = stage;
  }

  /** Table `t` caught up to `mark`. */
  marked(t: number, mark: string | null): void {
    this.state!.marks[t] = mark;
  }

  /** Rows applied by a round (or a call of the stream), and what remained behind the source. */
  applied(rows: number, remaining: number): void {
    const l = this.state!;
    l.rowsApplied += rows;
    l.remaining = remaining;
  }

  /** The evidence presented at the gate was taken at this watermark (the digest covers it). */
  evidenceTaken(mark: string | null): void {
    this.state!.evidenceMark = mark;
  }

  finalCheckStarted(): void {
    this.state!.finalChecks++;
  }

  /** Some table has a change column to catch up from. */
  hasDelta(): boolean {
    return !!this.state && this.state.marks.some((m) => m !== null);
  }

  delta(): Report['delta'] | undefined {
    const l = this.state;
    // Change capture: the evidence's point is the last green checkpoint's LSN.
    return l && { watermark: l.capture ? l.capture.checkpoint : oldestMark(l.marks), rowsApplied: l.rowsApplied, remaining: l.remaining };
  }
}

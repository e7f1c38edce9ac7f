// What operators steer, and what stops the window: pause, abort, the number of ranges in flight at
// once, and the first error a range in flight could not get past. Signals change it; the window and
// the stage loop read it.

export class Control {
  private _paused = false;
  private _aborted?: string;
  private _concurrency: number;
  private _fatal?: unknown;

  constructor(concurrency: number) {
    this._concurrency = concurrency;
  }

  /** no new range starts until resume (ranges in flight finish) */
  get paused(): boolean {
    return this._paused;
  }
  /** why the migration is to stop, once an abort (or Temporal's cancellation) asked for it */
  get aborted(): string | undefined {
    return this._aborted;
  }
  /** ranges in flight at once */
  get concurrency(): number {
    return this._concurrency;
  }
  /** the first error a range in flight hit that its retries did not cure */
  get fatal(): unknown {
    return this._fatal;
  }

  /** A continued run: as the run before left it. */
  restore(c: { paused: boolean; concurrency: number }): void {
    this._paused = c.paused;
    this._concurrency = c.concurrency;
  }

  pause(): void {
    this._paused = true;
  }

  unpause(): void {
    this._paused = false;
  }

  /** An operator's abort: its reason (a later one says why instead). */
  abort(reason: string): void {
    this._aborted = reason;
  }

  /** Temporal's cancellation: an abort, unless one was asked for already (its reason stands). */
  cancelled(reason: string): void {
    this._aborted ??= reason;
  }

  setConcurrency(value: number): void {
    this._concurrency = value;
  }

  /** A range in flight failed past its retries: the window stops (the first such error is the one said). */
  failedInFlight(e: unknown): void {
    this._fatal ??= e;
  }
}

// Frames between a producer that cannot wait (a stream's 'data' events) and one consumer that
// awaits them one at a time. Past `high` queued frames the producer is paused, so a slow apply
// holds the server back through TCP instead of filling memory; below `low` it resumes. A failure
// is delivered after the frames that arrived before it: a transaction received whole before the
// connection died can still be applied.
export class FrameQueue<T> {
  private readonly items: T[] = [];
  private waiter?: { resolve: (v: T | undefined) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout };
  private failure?: Error;
  private ended = false;
  private paused = false;

  constructor(
    private readonly pause: () => void,
    private readonly resume: () => void,
    private readonly high = 256,
    private readonly low = 64,
  ) {}

  push(item: T): void {
    if (this.failure || this.ended) return;
    const w = this.takeWaiter();
    if (w) return w.resolve(item);
    this.items.push(item);
    if (!this.paused && this.items.length >= this.high) {
      this.paused = true;
      this.pause();
    }
  }

  /** No more frames: the consumer gets `e` once the queued ones are taken. */
  fail(e: Error): void {
    if (this.failure || this.ended) return;
    this.failure = e;
    this.takeWaiter()?.reject(e);
  }

  /** Closed by the consumer: what is queued is dropped, and waiting ends with `undefined`. */
  end(): void {
    this.ended = true;
    this.items.length = 0;
    this.takeWaiter()?.resolve(undefined);
  }

  get size(): number {
    return this.items.length;
  }

  /** The next frame; `undefined` when `waitMs` passed first, or the queue was ended. */
  next(waitMs?: number): Promise<T | undefined> {
    if (this.waiter) return Promise.reject(new Error('FrameQueue has one consumer: next() is already waiting'));
    if (this.items.length) {
      const item = this.items.shift() as T;
      if (this.paused && this.items.length <= this.low) {
        this.paused = false;
        this.resume();
      }
      return Promise.resolve(item);
    }
    if (this.ended) return Promise.resolve(undefined);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<T | undefined>((resolve, reject) => {
      const waiter: NonNullable<FrameQueue<T>['waiter']> = { resolve, reject };
      if (waitMs !== undefined) {
        waiter.timer = setTimeout(
          () => {
            if (this.waiter === waiter) this.waiter = undefined;
            resolve(undefined);
          },
          Math.max(0, waitMs),
        );
      }
      this.waiter = waiter;
    });
  }

  private takeWaiter() {
    const w = this.waiter;
    this.waiter = undefined;
    if (w?.timer) clearTimeout(w.timer);
    return w;
  }
}

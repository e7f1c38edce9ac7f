// What the migration waits for (waits.ts keeps it in sight): a database that cannot be reached, an
// activity whose quick retries ran out, by key; whether it waits for a person after waiting too
// long (and in which phase it was); and the resume signals that end such a wait.
import type { Phase } from '../domain/phases';
import type { Waiting } from '../domain/waits';

const now = () => new Date().toISOString();

/** Where the migration stood when it began to wait for a person. */
export interface Stranded {
  phase: Phase;
  detail?: string;
}

export class Waits {
  private readonly byKey = new Map<string, Waiting>();
  private _stranded?: Stranded;
  private _resumeSignals = 0;

  /** how many things are waited for now */
  get size(): number {
    return this.byKey.size;
  }
  /** while the migration waits for a person after waiting too long: the phase to go back to */
  get stranded(): Readonly<Stranded> | undefined {
    return this._stranded;
  }
  /** resume signals received: a wait for a person ends at the next one */
  get resumeSignals(): number {
    return this._resumeSignals;
  }

  /** What is waited for now, oldest first. */
  all(): Readonly<Waiting>[] {
    return [...this.byKey.values()];
  }

  /** One more failed try of something the migration waits for; the first one starts the clock. */
  failedTry(key: string, what: string, error: string): Readonly<Waiting> {
    let w = this.byKey.get(key);
    if (!w) {
      w = { what, error, since: now(), tries: 0 };
      this.byKey.set(key, w);
    }
    w.error = error;
    w.tries++;
    return w;
  }

  /** When the next try of `key` is due (undefined: a person is waited for). */
  nextTry(key: string, at: string | undefined): void {
    const w = this.byKey.get(key);
    if (w) w.nextTryAt = at;
  }

  /** It answered again: no longer waited for. Returns whether it was. */
  reached(key: string): boolean {
    return this.byKey.delete(key);
  }

  /** Waited too long: a person is waited for, from where the migration stands. False when one is already. */
  strand(at: Stranded): boolean {
    if (this._stranded) return false;
    this._stranded = at;
    return true;
  }

  /** A person resumed: where the migration stood (undefined: it waited for nobody); every wait's clock starts again. */
  unstrand(): Stranded | undefined {
    const back = this._stranded;
    if (!back) return undefined;
    this._stranded = undefined;
    for (const w of this.byKey.values()) w.since = now();
    return back;
  }

  /** The resume signal arrived. */
  resumeSignalled(): void {
    this._resumeSignals++;
  }
}

// How a `backfill` command ends: its exit code (0 done, 1 the migration is red or failed, 2 bad input,
// 130 a watch stopped with Ctrl-C), which each command's action returns.
export const EXIT = { ok: 0, red: 1, badInput: 2, interrupted: 130 } as const;

export function exitFor(r: { phase: string }): number {
  return r.phase === 'completed' ? EXIT.ok : EXIT.red;
}

/** Wraps an action that returns its exit code into one commander runs (commander itself does not carry the code). */
export type Act = <A extends unknown[]>(fn: (...a: A) => Promise<number>) => (...a: A) => Promise<void>;

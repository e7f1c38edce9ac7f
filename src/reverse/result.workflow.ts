// The end of a migration whose way back ended (a finish, or the switch back): completed, green, with
// what went back to the source and who ended it.
import type { MigrationResult } from '../workflows/messages';
import type { MigrationState } from '../workflows/state';

export function reverseEnded(s: MigrationState, by: string, reason: string, switchedBackAt?: string): MigrationResult {
  const r = s.reverse.view!;
  return {
    migration: s.name,
    phase: 'completed',
    verdict: 'green',
    ...(r.digest ? { digest: r.digest } : {}),
    ...(r.switchedAt ? { switchedAt: r.switchedAt } : {}),
    ...(s.gate.finalWindow ? { finalWindow: s.gate.finalWindow } : {}),
    reverse: { transactions: r.transactions, rows: r.rows, finishedBy: by, reason, ...(switchedBackAt ? { switchedBackAt } : {}) },
  };
}

// The phases of a migration, in the order a migration can pass through them; the public names
// (the progress query, the search attribute BackfillPhase, the metrics' phase codes).
export const PHASES = [
  'planning',
  'backfilling',
  'reconciling',
  'catching_up',
  'needs_attention',
  'awaiting_approval',
  'final_check',
  'switching',
  'completed',
  'aborted',
  'failed',
  // Appended (the metrics' phase codes are positions): switched with the way back open, between switching and completed.
  'switched',
] as const;
export type Phase = (typeof PHASES)[number];
export const TERMINAL: readonly Phase[] = ['completed', 'aborted', 'failed'];

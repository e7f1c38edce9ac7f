// Schema drift, judged where the evidence is presented and again before the switch: both catalogs
// compared with the plan (columns, partitions). A column changed on either side stops the migration
// with a sentence: its ranges were proven without it. Partitions that changed are followed where a
// proof of the whole table comes next (a checkpoint under change capture, the final sweep of a
// change column); a static source has no such proof to come, so it stops too.
import { patched } from '@temporalio/workflow';
import { summarised } from '../workflows/activities';
import type { MigrationState } from '../workflows/state';

export type Drift =
  /** nothing changed, or a proof still to come covers what did */
  | { kind: 'none' }
  /** the migration cannot go on: the sentence says why and what to do */
  | { kind: 'stop'; why: string }
  /** partitions changed under change capture: a new checkpoint must prove them */
  | { kind: 'reprove'; why: string };

/**
 * Compares both catalogs with the plan. (Patched: migrations started before this never compared
 * them.)
 */
export async function schemaDrift(s: MigrationState): Promise<Drift> {
  if (!patched('schema-drift')) return { kind: 'none' };
  const d = await summarised('compare both catalogs with the plan: columns and partitions').checkSchema({ spec: s.spec, plans: s.ranges.plans });
  if (d.columns.length) return { kind: 'stop', why: d.columns.join('\n') };
  if (d.partitions.length === 0) return { kind: 'none' };
  const why = d.partitions.map((p) => p.sentence).join('; ');
  if (s.live?.capture) {
    // The next checkpoint reads every range again, through the partitioned table: it proves them.
    for (const p of d.partitions) s.ranges.partitionsProven(p.table, p.now);
    return { kind: 'reprove', why: `${why}: a new checkpoint proves the table again` };
  }
  if (s.live) {
    // A change column: the final check measures every range again on the frozen source, through
    // the partitioned table, and copies again the ranges that changed.
    for (const p of d.partitions) s.ranges.partitionsProven(p.table, p.now);
    return { kind: 'none' };
  }
  return {
    kind: 'stop',
    why: `${why}; the evidence was taken before, and a static source is not proven again: abort, then start the migration again under a new name`,
  };
}

// The way back's activities (`cutover.reverse`): its preflight, and its start at the switch (the
// publication and the slot on the target, before the switch hands the writes over). The stream
// itself and its cleanup are change capture's own activities, run on the reversed spec
// (src/spec/reverse.ts).
import type pg from 'pg';
import { failure } from '../domain/failures';
import { captureOf, type MigrationSpec, type TableSpec } from '../spec/schema';
import { reversedSpec } from '../spec/reverse';
import { connectionStringFor } from '../spec/aliases';
import { poolFor } from '../db/pools';
import { guarded } from '../db/errors';
import { PUBLICATION_SQL, SLOT_SQL } from '../capture/sql';
import { captureProblems } from '../capture/preflight';
import { createSlot } from '../capture/replication';
import { ensurePublication } from '../capture/steps';
import { captureBaseline } from '../capture/tripwire';
import type { CaptureBaseline } from '../capture/baseline';
import { digestOf } from '../report/digest';
import { bindingFor, checkTable, type Binding, type TableSides } from '../plan/binding';
import { refusals, reverseRights, tableRights } from '../plan/privileges';
import { measure } from '../range/measure';
import { compareProfiles, failedChecks } from '../range/compare';
import { heartbeat } from '../activities/heartbeat';

/** Said before every problem of the way back: the messages name "the source", which is the target here. */
const BACK = 'cutover.reverse (the way back streams from the target to the source, so below "source" means the target and "target" the source)';

/**
 * What the way back needs that is missing, each with how to fix it: every table bound with its sides
 * swapped (the source must take every column the target holds), the target's server and tables as
 * change capture checks a source's, and no slot or publication of its name left on the target by
 * an earlier run. Reads only.
 */
export async function reverseProblems(spec: MigrationSpec): Promise<string[]> {
  const back = reversedSpec(spec);
  if (!back) return [];
  const out: string[] = [];
  const bindings: Binding[] = [];
  for (const [i, table] of back.tables.entries()) {
    // Each table with its sides swapped, with the rights its roles need that way (the source's role
    // writes the source's tables).
    const privileges = async (b: Binding, sides: TableSides) => refusals(await tableRights(back, i, b, sides));
    const r = await checkTable({ sourceAlias: back.source, targetAlias: back.target, table, tableIndex: i, catalogOnly: true, privileges });
    out.push(...r.problems.map((p) => `${BACK}: ${p}`));
    if (r.binding) bindings.push(r.binding);
  }
  if (out.length) return out;
  out.push(...refusals(await reverseRights(back, bindings)).map((p) => `${BACK}: ${p}`));
  if (out.length) return out;
  out.push(...(await captureProblems(back, bindings)).map((p) => `${BACK}: ${p}`));
  const cap = captureOf(back)!;
  const tgt = poolFor(back.source, 'read');
  if ((await tgt.query(SLOT_SQL, [cap.slot])).rowCount)
    out.push(
      `${BACK}: the target holds a replication slot ${cap.slot} from an earlier run of this migration: drop it (SELECT pg_drop_replication_slot('${cap.slot}'))`,
    );
  if ((await tgt.query(PUBLICATION_SQL, [cap.publication])).rowCount)
    out.push(`${BACK}: the target holds a publication ${cap.publication} from an earlier run of this migration: drop it (DROP PUBLICATION ${cap.publication})`);
  return out;
}

export interface ReverseStarted {
  /** the LSN on the target from which every change goes back to the source */
  point: string;
  /** false: the slot was there already (an earlier attempt of this call made it) */
  created: boolean;
  /** the digest of the way back's evidence: a switch back approves exactly it */
  digest: string;
  /** both sides' transaction ids and the target's counters before the slot: the switch back's tripwire starts there */
  baseline: CaptureBaseline;
}

/** What the way back rests on, in words: the digest of the switch's evidence, the point the stream starts at, the tables. */
function reverseEvidence(migration: string, switchDigest: string, point: string, back: MigrationSpec): string {
  const tables = back.tables.map((t) => `${JSON.stringify(t.source)} -> ${JSON.stringify(t.target)}`).join('; ');
  return `the way back of ${migration}: source and target proven equal under digest ${switchDigest}; every change the target commits from ${point} on goes back to the source; tables ${tables}`;
}

/**
 * Under the freeze, after the final window and before the switch: the publication and the slot of
 * the way back on the target. Every change the target commits after the slot's point goes back; the
 * target and the source are equal at it (the window was proven, the source takes no writes).
 * Idempotent: a slot an earlier attempt created is kept (planning refused one left by an earlier run).
 */
export async function startReverse(input: { migration: string; spec: MigrationSpec; digest: string }): Promise<ReverseStarted> {
  const back = reversedSpec(input.spec);
  if (!back) throw failure('InvalidSpec', 'the spec has no cutover.reverse');
  return guarded('starting the way back', async () => {
    const problems: string[] = [];
    const bindings: Binding[] = [];
    for (const [i, t] of back.tables.entries()) bindings.push(await bindingFor(back, t, i));
    problems.push(...(await captureProblems(back, bindings)));
    if (problems.length) throw failure('ReverseRefused', `${BACK}:\n${problems.join('\n')}`);
    await ensurePublication(back, bindings);
    const cap = captureOf(back)!;
    // Read before the slot: every row version either side writes after the slot's point is newer.
    const baseline = await captureBaseline({ spec: back });
    const started = (point: string, created: boolean) => ({
      point,
      created,
      baseline,
      digest: digestOf(reverseEvidence(input.migration, input.digest, point, back)),
    });
    const slot = (await poolFor(back.source, 'read').query(SLOT_SQL, [cap.slot])).rows[0] as { confirmed: string | null } | undefined;
    if (slot) return started(slot.confirmed ?? '0/0', false);
    const made = await createSlot(connectionStringFor(back.source), { slot: cap.slot, temporary: false });
    // Nothing reads its snapshot: the stream starts at the slot's point.
    await made.client.end().catch(() => undefined);
    return started(made.consistentPoint, true);
  });
}

/**
 * The switch back's last resort (`cutover.reverse`), when the rows written since the switch cannot be
 * compared by key: each table's every row measured on both sides (rows, the checksum of every row by
 * the forward column plan, the spec's aggregates and distributions, duplicate keys), the target frozen
 * and the source written only by the way back. Returns each table's failed checks (none: equal).
 */
export async function compareTotals(input: { spec: MigrationSpec; tables: { tableIndex: number; table: TableSpec }[] }): Promise<{ failed: string[] }[]> {
  const out: { failed: string[] }[] = [];
  for (const t of input.tables) {
    out.push({ failed: await wholeTableFailures(input.spec, await bindingFor(input.spec, t.table, t.tableIndex)) });
    heartbeat({ compared: out.length });
  }
  return out;
}

/** How one side's measure is read: on its pool as it is now, or in a session at a snapshot. */
type SideReader = <T>(fn: (c: pg.ClientBase | pg.Pool) => Promise<T>) => Promise<T>;

/**
 * A table's every row measured on both sides and compared (rows, the checksum of every row, the
 * spec's aggregates and distributions, duplicate keys): the checks that failed, none when equal.
 * `source`: how the spec's source side is read (as it is now, by default).
 */
export async function wholeTableFailures(spec: MigrationSpec, b: Binding, source?: SideReader, at = ''): Promise<string[]> {
  const every = { outside: null };
  const read: SideReader = source ?? ((fn) => fn(poolFor(spec.source, 'read')));
  const [s, d] = await guarded(`measuring ${b.sourceName} and ${b.targetName} whole${at}`, () =>
    Promise.all([read((c) => measure(c, b, 'source', every)), measure(poolFor(spec.target, 'write'), b, 'target', every)]),
  );
  return failedChecks(compareProfiles(s.profile, d.profile, b, { source: s.dups, target: d.dups }));
}

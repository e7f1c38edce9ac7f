// Catch-up by a change column: the rows written since the last watermark (minus the overlap) are
// applied to the target by key, and the window is then proven equal on both sides, all in one
// source snapshot and one target transaction. Applying a window twice leaves the target as once.
//
// The watermark rule: `now()` is a transaction's start, not its commit, so the next window starts
// no later than the oldest writing transaction still open when this one was read.
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { tableOf, type MigrationSpec, type OneTable } from '../spec/schema';
import { poolFor } from '../db/pools';
import { BEGIN_SNAPSHOT, copyInSql, copyOutSql, quoteIdent, type Changed } from '../db/sql';
import {
  GONE,
  STAGE,
  WATERMARK_SQL,
  WINDOW_START_SQL,
  analyzeSql,
  copyGoneKeysSql,
  copyKeysInSql,
  deleteKeysSql,
  deleteStagedSql,
  existingKeysSql,
  insertStagedSql,
  keepIdenticalSql,
  stageTableSql,
  unsentKeysSql,
} from './sql';
import { guarded } from '../db/errors';
import { bindingFor } from '../plan/binding';
import { ensureSetAside } from '../schema/constraints';
import { CopyMeter, copyPipe, withCopyClients } from '../range/pipe';
import { countCatchUp } from '../activities/metrics';
import { compareMeasured, measure } from '../range/measure';
import type { SideEvidence } from '../domain/range-lifecycle';

/** Target rows of the window that the source did not send, looked up per round at most. */
const UNSENT_PER_ROUND = 10_000;

export interface DeltaInput extends OneTable {
  migration: string;
  /** the watermark the previous round (or the plan) read */
  since: string;
}

export interface DeltaResult {
  /** where the next round reads from (before its overlap) */
  watermark: string;
  /** the window this round read: rows whose change column is at or after this */
  from: string;
  /** rows the source sent (the whole window, overlap included) */
  sent: number;
  /** rows written to the target because they were new or differed */
  upserted: number;
  /** target rows deleted because the source no longer has them (or they left the filter) */
  deleted: number;
  /** after applying, the window's rows are equal on both sides (count, checksum, checks) */
  verified: boolean;
  source: SideEvidence;
  target: SideEvidence;
  /** more unsent target rows than one round looks up: another round is needed */
  more: boolean;
}

/** The first watermark of a table, read before the first range is copied. */
export async function captureWatermark(input: { spec: MigrationSpec }): Promise<string> {
  return guarded('reading the watermark', async () => String((await poolFor(input.spec.source, 'read').query(WATERMARK_SQL)).rows[0].mark));
}

const keyOf = (row: Record<string, unknown>, n: number) => JSON.stringify(Array.from({ length: n }, (_, j) => row[`k${j}`]));

export async function applyDelta(input: DeltaInput): Promise<DeltaResult> {
  const { spec, tableIndex: i } = input;
  const table = tableOf(input);
  if (!table.delta) throw new Error(`tables[${i}] has no delta column`);
  const delta = table.delta;
  const b = await bindingFor(spec, table, i);
  return guarded(`catching up ${b.sourceName}`, async () => {
    // Constraints restored by a final check that turned red are set aside again first.
    await ensureSetAside(spec, input.migration, b.target);
    return withCopyClients(spec, async (src, tgt) => {
      // The mark is read before the snapshot: whatever commits in between is in the snapshot or
      // was open when the mark was read (and holds the mark back).
      const watermark = String((await src.query(WATERMARK_SQL)).rows[0].mark);
      const from = String((await src.query(WINDOW_START_SQL, [input.since, delta.overlap])).rows[0].start);
      const changed: Changed = { column: delta.column, from };
      await src.query(BEGIN_SNAPSHOT);
      await tgt.query('BEGIN');
      await tgt.query(stageTableSql(b, STAGE));
      const sink = tgt.query(copyFrom(copyInSql(b, quoteIdent(STAGE))));
      const meters = [new CopyMeter()];
      await copyPipe([src.query(copyTo(copyOutSql(b, { changed }))), meters[0], sink]);
      const sent = Number(sink.rowCount ?? 0);
      await tgt.query(analyzeSql(STAGE));

      let deleted = 0;
      if (b.where) {
        // Changed so that the filter no longer takes them: gone, as far as this migration goes.
        await tgt.query(stageTableSql(b, GONE, true));
        const keys = tgt.query(copyFrom(copyKeysInSql(b, GONE)));
        meters.push(new CopyMeter());
        await copyPipe([src.query(copyTo(copyGoneKeysSql(b, changed))), meters[1], keys]);
        deleted += (await tgt.query(deleteStagedSql(b, GONE))).rowCount ?? 0;
      }
      // Target rows in the window the source did not send: deleted at the source, unless it has them.
      const unsent = (await tgt.query(unsentKeysSql(b, changed, UNSENT_PER_ROUND))).rows;
      if (unsent.length) {
        const n = b.key.length;
        const present = new Set(
          (
            await src.query(
              existingKeysSql(b, b.keyTypes),
              b.key.map((_, j) => unsent.map((r) => r[`k${j}`])),
            )
          ).rows.map((r) => keyOf(r, n)),
        );
        const gone = unsent.filter((r) => !present.has(keyOf(r, n)));
        if (gone.length)
          deleted +=
            (
              await tgt.query(
                deleteKeysSql(b, b.keyTypes),
                b.key.map((_, j) => gone.map((r) => r[`k${j}`])),
              )
            ).rowCount ?? 0;
      }
      // Upsert by key without needing a unique index on the target: drop the rows that differ,
      // keep the identical ones (the overlap re-sends them), insert what is left of the stage.
      await tgt.query(deleteStagedSql(b, STAGE, true));
      await tgt.query(keepIdenticalSql(b));
      const upserted = (await tgt.query(insertStagedSql(b))).rowCount ?? 0;

      const [s, t] = await Promise.all([measure(src, b, 'source', { changed }), measure(tgt, b, 'target', { changed })]);
      const checks = compareMeasured(b, s, t);
      await tgt.query('COMMIT');
      await src.query('COMMIT');
      countCatchUp(
        { migration: input.migration, table: b.sourceName },
        upserted + deleted,
        meters.reduce((a, m) => a + m.bytes, 0),
      );
      return {
        watermark,
        from,
        sent,
        upserted,
        deleted,
        verified: checks.ok,
        source: { count: s.profile.count, checksum: s.profile.checksum },
        target: { count: t.profile.count, checksum: t.profile.checksum },
        more: unsent.length >= UNSENT_PER_ROUND,
      };
    });
  });
}

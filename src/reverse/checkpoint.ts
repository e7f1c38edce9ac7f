// A checkpoint of the way back (`cutover.reverse`), in phase switched, between two calls of the
// stream back: the target is read at a snapshot exported at a point P (a temporary slot), the stream
// back applied to the source exactly up to P, and every table measured whole on both sides (rows, the
// checksum of every row, aggregates, distributions, duplicate keys). Equal: the source equals the
// target at P, and a switch back need only compare what was written since P. The transaction ids
// and storage read just before the snapshot are the switch back's tripwire baseline from there.
import { connectionStringFor } from '../spec/aliases';
import { captureOf, type MigrationSpec } from '../spec/schema';
import { reversedSpec } from '../spec/reverse';
import { poolFor, inTransaction } from '../db/pools';
import { guarded } from '../db/errors';
import { BEGIN_SNAPSHOT } from '../db/sql';
import { setSnapshotSql } from '../range/sql';
import { wholeTableFailures } from './steps';
import type pg from 'pg';
import { bindingFor } from '../plan/binding';
import { createSlot } from '../capture/replication';
import { applyCapture, epochSlotPrefix } from '../capture/steps';
import { captureBaseline } from '../capture/tripwire';
import type { CaptureBaseline } from '../capture/baseline';
import { heartbeat } from '../activities/heartbeat';
import type { Applied } from '../capture/state.workflow';
import { failure } from '../domain/failures';

export interface CheckpointBack {
  /** the LSN on the target the source was proven equal at */
  point: string;
  /** read just before the snapshot: the switch back's tripwire starts there */
  baseline: CaptureBaseline;
  /** the tables that differ at the point, with the checks that failed (none: the checkpoint holds) */
  differ: string[];
  /** what the stream back applied to reach the point, and its lag then */
  applied: Applied;
}

export async function checkpointBack(input: { migration: string; spec: MigrationSpec }): Promise<CheckpointBack> {
  const back = reversedSpec(input.spec);
  if (!back) throw failure('InvalidSpec', 'the spec has no cutover.reverse');
  const cap = captureOf(back)!;
  const baseline = await captureBaseline({ spec: back });
  const held = await guarded('opening a snapshot of the target for a checkpoint of the way back', () =>
    createSlot(connectionStringFor(back.source), { slot: `${epochSlotPrefix(cap.slot)}cp_${Math.random().toString(36).slice(2, 8)}`, temporary: true }),
  );
  try {
    const point = held.consistentPoint;
    const applied: Applied = { transactions: 0, rows: 0, appliedLsn: null, lagBytes: '0', lagSeconds: 0 };
    for (;;) {
      const r = await applyCapture({ migration: back.name, spec: back, untilLsn: point, maxMs: 20_000 });
      applied.transactions += r.transactions;
      applied.rows += r.rows;
      applied.appliedLsn = r.appliedLsn ?? applied.appliedLsn;
      Object.assign(applied, { lagBytes: r.lagBytes, lagSeconds: r.lagSeconds });
      if (r.reached) break;
    }
    const differ: string[] = [];
    for (const [i, t] of back.tables.entries()) {
      const b = await bindingFor(back, t, i);
      // The target (the way back's source) at the snapshot; the source as the stream left it at P.
      const atSnapshot = <T>(fn: (c: pg.ClientBase) => Promise<T>) =>
        inTransaction(
          poolFor(back.source, 'read'),
          async (c) => {
            await c.query(BEGIN_SNAPSHOT);
            await c.query(setSnapshotSql(held.snapshot));
          },
          fn,
        );
      const failed = await wholeTableFailures(back, b, atSnapshot, ` at ${point}`);
      if (failed.length) differ.push(`${b.targetName} (${failed.join(', ')})`);
      heartbeat({ measured: i + 1 });
    }
    return { point, baseline, differ, applied };
  } finally {
    // Its session's end drops the temporary slot.
    await held.client.end().catch(() => undefined);
  }
}

// The cutover: sequences advanced past the copied keys, then the authority switch, exactly once.
// The switch SQL and its record commit in one transaction on the switch connection, so a retry
// after a crash finds the record and does not run the switch again.
import { controlAlias, type MigrationSpec } from '../spec/schema';
import { poolFor, inTransaction } from '../db/pools';
import { APPEND_AUDIT, SWITCH_DDL, ensureSchema } from '../db/ledger';
import { guarded } from '../db/errors';
import { advanceSequenceSql } from '../db/sql';
import { bindingFor } from './binding';

export interface AuditEntry {
  migration: string;
  execution: string;
  action: string;
  actor?: string;
  digest?: string;
  detail?: unknown;
}

export async function appendAudit(spec: MigrationSpec, e: AuditEntry): Promise<void> {
  await guarded('writing the audit', () =>
    poolFor(controlAlias(spec), 'write').query(APPEND_AUDIT, [
      e.migration, e.execution, e.action, e.actor ?? null, e.digest ?? null, JSON.stringify(e.detail ?? null),
    ]),
  );
}

/** Sets every serial/identity sequence of the copied columns past the largest copied value. */
export async function advanceSequences(input: { spec: MigrationSpec }): Promise<{ sequence: string; value: string }[]> {
  const { spec } = input;
  const out: { sequence: string; value: string }[] = [];
  for (const [i, t] of spec.tables.entries()) {
    const b = await bindingFor(spec, t, i);
    await guarded(`advancing sequences of ${b.targetName}`, async () => {
      const tgt = poolFor(spec.target, 'write');
      for (const col of b.columns) {
        const r = await tgt.query('SELECT pg_get_serial_sequence($1, $2) AS seq', [b.target, col]);
        const seq = r.rows[0]?.seq as string | null;
        if (!seq) continue;
        const v = await tgt.query(advanceSequenceSql(b.target, col), [seq]);
        if (v.rows[0]) out.push({ sequence: seq, value: String(v.rows[0].value) });
      }
    });
  }
  return out;
}

export interface SwitchResult {
  applied: boolean;
  switchedAt: string;
}

export async function runSwitch(input: {
  migration: string;
  execution: string;
  spec: MigrationSpec;
  digest: string;
  approver: string;
}): Promise<SwitchResult> {
  const { spec } = input;
  const sw = spec.cutover.switch;
  const alias = sw?.connection ?? controlAlias(spec);
  return guarded('switching authority', async () => {
    const pool = poolFor(alias, 'write');
    const c = await pool.connect();
    try {
      await ensureSchema(c, SWITCH_DDL);
    } finally {
      c.release();
    }
    const result = await inTransaction(pool, 'BEGIN', async (tx) => {
      // Two attempts at once (a retry racing a slow first try) serialise here.
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`backfill.switch:${input.migration}:${input.execution}`]);
      const seen = await tx.query('SELECT switched_at::text AS at FROM backfill.switches WHERE migration = $1 AND execution = $2', [
        input.migration,
        input.execution,
      ]);
      if (seen.rows.length) return { applied: false, switchedAt: String(seen.rows[0].at) };
      if (sw) await tx.query(sw.sql);
      const ins = await tx.query(
        'INSERT INTO backfill.switches (migration, execution, digest, approver) VALUES ($1, $2, $3, $4) RETURNING switched_at::text AS at',
        [input.migration, input.execution, input.digest, input.approver],
      );
      return { applied: true, switchedAt: String(ins.rows[0].at) };
    });
    if (result.applied) {
      await appendAudit(spec, {
        migration: input.migration,
        execution: input.execution,
        action: 'switch',
        actor: input.approver,
        digest: input.digest,
        detail: { connection: alias, switchedAt: result.switchedAt },
      });
    }
    return result;
  });
}

// The cutover: sequences advanced past the copied keys, then the authority switch, exactly once.
// The switch SQL and its record commit in one transaction on the switch connection, so a retry
// after a crash finds the record and does not run the switch again.
import { controlAlias, type MigrationSpec } from '../spec/schema';
import { poolFor, inTransaction } from '../db/pools';
import type pg from 'pg';
import { APPEND_AUDIT, LEDGER_DDL, RECORD_SWITCH, SWITCH_DDL, SWITCH_DONE, SWITCH_LOCK, ensureSchema } from '../db/ledger';
import { guarded } from '../db/errors';
import { CLOCK_SQL, OPEN_WRITERS_SQL, SERIAL_SEQUENCE_SQL, advanceSequenceSql, changedSinceSql } from './sql';
import { bindingFor } from '../plan/binding';
import { heartbeat } from '../activities/heartbeat';
import { enforcePolicy } from '../plan/trust';

export interface AuditEntry {
  migration: string;
  execution: string;
  action: string;
  actor?: string;
  digest?: string;
  detail?: unknown;
}

/** Appends an audit entry; returns when it was recorded (ISO 8601, UTC). */
export async function appendAudit(spec: Pick<MigrationSpec, 'control' | 'target'>, e: AuditEntry): Promise<string> {
  const pool = poolFor(controlAlias(spec), 'write');
  const append = () => pool.query(APPEND_AUDIT, [e.migration, e.execution, e.action, e.actor ?? null, e.digest ?? null, JSON.stringify(e.detail ?? null)]);
  const r = await guarded('writing the audit', async () => {
    try {
      return await append();
    } catch (err) {
      // Before planning made the ledger (an abort while a database could not be reached): make it now.
      if (!['42P01', '3F000'].includes((err as { code?: string }).code ?? '')) throw err;
      const c = await pool.connect();
      try {
        await ensureSchema(c, LEDGER_DDL);
      } finally {
        c.release();
      }
      return append();
    }
  });
  return String(r.rows[0].at);
}

/**
 * The freeze or unfreeze action: the spec's SQL on its connection, in one transaction, recorded in
 * the audit. Returns the source's clock after it committed: writes stamped later slipped past it.
 * A retry runs the SQL again, so the actions must be repeatable (REVOKE and GRANT are).
 */
export async function runAction(input: {
  migration: string;
  execution: string;
  spec: MigrationSpec;
  action: 'freeze' | 'unfreeze';
  actor?: string;
  digest?: string;
  reason?: string;
}): Promise<{ at: string }> {
  const { spec } = input;
  const a = spec.cutover[input.action];
  if (!a) throw new Error(`the spec has no cutover.${input.action}`);
  // Checked at planning; again here, where the SQL runs (a policy may have been tightened since).
  enforcePolicy(spec);
  return guarded(`running cutover.${input.action}`, async () => {
    await inTransaction(poolFor(a.connection, 'write'), 'BEGIN', (tx) => tx.query(a.sql));
    const at = String((await poolFor(spec.source, 'read').query(CLOCK_SQL)).rows[0].at);
    await appendAudit(spec, {
      migration: input.migration,
      execution: input.execution,
      action: input.action,
      actor: input.actor,
      digest: input.digest,
      detail: { connection: a.connection, at, reason: input.reason },
    });
    return { at };
  });
}

/**
 * Waits until no transaction that started writing before `before` is open on the source (its rows
 * carry a start time older than the freeze and commit later). Returns how many are still open
 * after `timeoutMs`.
 */
export async function awaitWriters(input: { spec: MigrationSpec; before: string; timeoutMs: number }): Promise<{ open: number }> {
  return guarded('waiting for open writers on the source', async () => {
    const pool = poolFor(input.spec.source, 'read');
    const deadline = Date.now() + input.timeoutMs;
    for (;;) {
      const n = Number((await pool.query(OPEN_WRITERS_SQL, [input.before])).rows[0].n);
      heartbeat({ openWriters: n });
      if (n === 0 || Date.now() >= deadline) return { open: n };
      await new Promise((r) => setTimeout(r, 250));
    }
  });
}

/** Rows of each table with a change column stamped at or after `since` (writes after the freeze). */
export async function changedSince(input: { spec: MigrationSpec; since: string }): Promise<{ table: string; rows: number }[]> {
  const { spec } = input;
  const out: { table: string; rows: number }[] = [];
  for (const [i, t] of spec.tables.entries()) {
    if (!t.delta) continue;
    const b = await bindingFor(spec, t, i);
    const n = await guarded(`looking for writes after the freeze in ${b.sourceName}`, async () =>
      Number((await poolFor(spec.source, 'read').query(changedSinceSql(b, t.delta!.column), [input.since])).rows[0].n),
    );
    out.push({ table: b.sourceName, rows: n });
  }
  return out;
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
        const r = await tgt.query(SERIAL_SEQUENCE_SQL, [b.target, col]);
        const seq = r.rows[0]?.seq as string | null;
        if (!seq) continue;
        const v = await tgt.query(advanceSequenceSql(b.target, col), [seq]);
        if (v.rows[0]) out.push({ sequence: seq, value: String(v.rows[0].value) });
      }
    });
  }
  return out;
}

/**
 * Whether the switch (or the switch back) is recorded as run, read on its connection: after runSwitch
 * failed, the one way to know whether `cutover.switch` committed. Null when it is not recorded.
 */
export async function switchRecorded(input: { migration: string; execution: string; spec: MigrationSpec; back?: true }): Promise<{ at: string } | null> {
  const { once, alias } = switchRecord(input);
  return guarded('reading the record of the switch', async () => {
    const pool = await switchPool(alias);
    const seen = await pool.query(SWITCH_DONE, [input.migration, once]);
    return seen.rows.length ? { at: String(seen.rows[0].at) } : null;
  });
}

/** Where a switch is recorded: its key (the execution, and `:back` for the switch back) and its connection. */
function switchRecord(input: { execution: string; spec: MigrationSpec; back?: true }): { once: string; alias: string } {
  return { once: input.back ? `${input.execution}:back` : input.execution, alias: input.spec.cutover.switch?.connection ?? controlAlias(input.spec) };
}

/** The switch connection's pool, with the table of switches made if it is not there yet. */
async function switchPool(alias: string): Promise<pg.Pool> {
  const pool = poolFor(alias, 'write');
  const c = await pool.connect();
  try {
    await ensureSchema(c, SWITCH_DDL);
  } finally {
    c.release();
  }
  return pool;
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
  /** the switch back (`cutover.reverse`, its spec reversed): recorded once under the execution and `:back` */
  back?: true;
}): Promise<SwitchResult> {
  const { spec } = input;
  const { once, alias } = switchRecord(input);
  enforcePolicy(spec);
  const sw = spec.cutover.switch;
  return guarded('switching authority', async () => {
    const pool = await switchPool(alias);
    const result = await inTransaction(pool, 'BEGIN', async (tx) => {
      // Two attempts at once (a retry racing a slow first try) serialise here.
      await tx.query(SWITCH_LOCK, [`${input.migration}:${once}`]);
      const seen = await tx.query(SWITCH_DONE, [input.migration, once]);
      if (seen.rows.length) return { applied: false, switchedAt: String(seen.rows[0].at) };
      if (sw) await tx.query(sw.sql);
      const ins = await tx.query(RECORD_SWITCH, [input.migration, once, input.digest, input.approver]);
      return { applied: true, switchedAt: String(ins.rows[0].at) };
    });
    if (result.applied) {
      await appendAudit(spec, {
        migration: input.migration,
        execution: input.execution,
        action: input.back ? 'switch-back' : 'switch',
        actor: input.approver,
        digest: input.digest,
        detail: { connection: alias, switchedAt: result.switchedAt },
      });
    }
    return result;
  });
}

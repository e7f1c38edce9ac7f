// Foreign keys on the target are the user's schema. While ranges are written they are set aside:
// each one's definition is kept in the ledger first, then it is dropped, so ranges of any tables
// (a table that references itself, a cycle) can be written in any order, and deleting a parent's
// range before copying it again cascades nowhere. After the data is proven they are re-created
// NOT VALID and validated; a crash at any point leaves the ledger knowing what to re-create.
import type pg from 'pg';
import { controlAlias, type MigrationSpec } from '../spec/schema';
import { inTransaction, poolFor } from '../db/pools';
import { CONSTRAINTS_LOCK, CONSTRAINT_STATE, MIGRATION_CONSTRAINTS, RECORD_CONSTRAINT } from '../db/ledger';
import { CONSTRAINT_PRESENT, RELATION_KIND, foreignKeys, toBool, type ForeignKey } from '../db/catalog';
import { addConstraintNotValidSql, addConstraintSql, dropConstraintSql, validateConstraintSql } from './sql';
import { guarded } from '../db/errors';
import { redact } from '../db/redact';
import { heartbeat } from '../activities/heartbeat';
import type { ConstraintReport } from '../domain/report';

/** A constraint's state: the report's shape (set-aside, or restored and valid or not, and why). */
export type ConstraintState = ConstraintReport;

type Spec = Pick<MigrationSpec, 'target' | 'control'>;

async function ledgerRows(
  spec: Spec,
  migration: string,
  table: string | null,
): Promise<{ owner: string; name: string; referenced: string; ddl: string; was_valid: boolean; state: string; detail: string | null }[]> {
  try {
    const rows = (await poolFor(controlAlias(spec), 'write').query(MIGRATION_CONSTRAINTS, [migration, table])).rows;
    return rows.map((r) => ({ ...r, was_valid: toBool(r.was_valid) }));
  } catch (e) {
    // A ledger made before constraints were kept: none were set aside.
    if ((e as { code?: string }).code === '42P01') return [];
    throw e;
  }
}

/** Runs `fn` on the target with the migration's constraint lock held (one worker at a time). */
function locked<T>(spec: Spec, migration: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(poolFor(spec.target, 'write'), 'BEGIN', async (c) => {
    await c.query(CONSTRAINTS_LOCK, [migration]);
    return fn(c);
  });
}

/**
 * Planning: every foreign key owned by or referencing a target table of the spec (from tables
 * outside the spec too) is recorded in the ledger, then dropped. Returns what was set aside.
 * A retry finds the ones already dropped in the ledger and sets aside the rest.
 */
export async function setAsideConstraints(spec: Spec, migration: string, targets: string[]): Promise<ForeignKey[]> {
  return guarded('setting aside the foreign keys of the target tables', async () => {
    const found = await foreignKeys(poolFor(spec.target, 'write'), targets);
    const ctl = poolFor(controlAlias(spec), 'write');
    // The definition is kept before the constraint is dropped, never after.
    for (const f of found) await ctl.query(RECORD_CONSTRAINT, [migration, f.owner, f.name, f.referenced, f.ddl, f.valid]);
    await locked(spec, migration, async (c) => {
      for (const f of found) await c.query(dropConstraintSql(f.owner, f.name));
    });
    const ledger = await ledgerRows(spec, migration, null);
    return ledger.map((r) => ({ owner: r.owner, name: r.name, referenced: r.referenced, ddl: r.ddl, valid: r.was_valid }));
  });
}

/**
 * Before rows of `table` (quoted) are written: the constraints owned by it or referencing it that
 * were restored (a rerun after the evidence was proven) are set aside again. Nothing to do, one query.
 */
export async function ensureSetAside(spec: Spec, migration: string, table: string): Promise<void> {
  const restored = (await ledgerRows(spec, migration, table)).filter((r) => r.state !== 'set-aside');
  if (restored.length === 0) return;
  const ctl = poolFor(controlAlias(spec), 'write');
  await locked(spec, migration, async (c) => {
    for (const r of restored) {
      await ctl.query(CONSTRAINT_STATE, [migration, r.owner, r.name, 'set-aside', null]);
      await c.query(dropConstraintSql(r.owner, r.name));
    }
  });
}

/**
 * After the data is proven (and on abort): each constraint set aside is re-created NOT VALID where it
 * is missing, then validated if it was valid before. A row that breaks it is named in `detail` and
 * the constraint stays NOT VALID (present, never dropped) until the data is fixed and this runs again.
 */
export async function restoreConstraints(input: { spec: MigrationSpec; migration: string }): Promise<ConstraintState[]> {
  const { spec, migration } = input;
  return guarded('restoring the foreign keys of the target tables', async () => {
    const ctl = poolFor(controlAlias(spec), 'write');
    const tgt = poolFor(spec.target, 'write');
    const out: ConstraintState[] = [];
    const rows = await ledgerRows(spec, migration, null);
    const partitioned = new Set<string>();
    for (const owner of new Set(rows.map((r) => r.owner))) if ((await tgt.query(RELATION_KIND, [owner])).rows[0]?.kind === 'p') partitioned.add(owner);
    // A partitioned table's key first: added there, it is added to its partitions, whose own entries then find it.
    rows.sort((a, b) => Number(partitioned.has(b.owner)) - Number(partitioned.has(a.owner)));
    for (const r of rows) {
      heartbeat({ constraint: r.name });
      const present = await tgt.query(CONSTRAINT_PRESENT, [r.owner, r.name]);
      let valid = present.rows.length > 0 && toBool(present.rows[0].valid);
      let detail: string | null = null;
      if (present.rows.length === 0 && partitioned.has(r.owner)) {
        // No NOT VALID on a partitioned table (PostgreSQL before 18): added and checked at once. Rows
        // that break it keep it set aside, said, until they are fixed and this runs again.
        try {
          await locked(spec, migration, (c) => c.query(addConstraintSql(r.owner, r.name, r.ddl)));
          valid = true;
        } catch (e) {
          const err = e as { code?: string; message?: string; detail?: string };
          if (!String(err.code ?? '').startsWith('23')) throw e;
          detail = redact(`${err.message ?? ''}${err.detail ? ` (${err.detail})` : ''}`);
          await ctl.query(CONSTRAINT_STATE, [migration, r.owner, r.name, 'set-aside', detail]);
          out.push({ owner: r.owner, name: r.name, referenced: r.referenced, state: 'set-aside', valid: false, wasValid: r.was_valid, detail });
          continue;
        }
      } else if (present.rows.length === 0) await locked(spec, migration, (c) => c.query(addConstraintNotValidSql(r.owner, r.name, r.ddl)));
      if (r.was_valid && !valid) {
        try {
          await tgt.query(validateConstraintSql(r.owner, r.name));
          valid = true;
        } catch (e) {
          const err = e as { code?: string; message?: string; detail?: string };
          if (!String(err.code ?? '').startsWith('23')) throw e;
          detail = redact(`${err.message ?? ''}${err.detail ? ` (${err.detail})` : ''}`);
        }
      }
      await ctl.query(CONSTRAINT_STATE, [migration, r.owner, r.name, 'restored', detail]);
      out.push({ owner: r.owner, name: r.name, referenced: r.referenced, state: 'restored', valid, wasValid: r.was_valid, detail });
    }
    return out;
  });
}

/** The constraints' states as the ledger has them (for the report). */
export async function constraintStates(spec: Spec, migration: string): Promise<ConstraintState[]> {
  const rows = await ledgerRows(spec, migration, null);
  if (rows.length === 0) return [];
  // One catalog read for all of them: what is there now, and validated.
  const present = new Map(
    (await foreignKeys(poolFor(spec.target, 'write'), [...new Set(rows.map((r) => r.owner))])).map((f) => [`${f.owner}\0${f.name}`, f.valid]),
  );
  return rows.map((r) => ({
    owner: r.owner,
    name: r.name,
    referenced: r.referenced,
    state: r.state === 'set-aside' ? 'set-aside' : 'restored',
    valid: present.get(`${r.owner}\0${r.name}`) ?? false,
    wasValid: r.was_valid,
    detail: r.detail,
  }));
}

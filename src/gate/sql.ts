// The SQL of the final check and the switch: counts and key samples of the rows outside the plan,
// the source's clock and open writers, writes after a freeze, and the sequences advanced past the
// copied keys. Built on src/db/sql.ts.
import { keyExprs, quoteIdent, rowsOf, type BoundTable, type Selection, type Side } from '../db/sql';

/** The source's clock now (not the transaction's start). */
export const CLOCK_SQL = 'SELECT clock_timestamp()::text AS at';

/** $1 a table (regclass text), $2 a column: its serial or identity sequence, or NULL. */
/**
 * $1 a table, $2 a column name: its serial or identity sequence (pg_get_serial_sequence, by ownership),
 * else a sequence its default draws from (`DEFAULT nextval('seq')` of a sequence no column owns).
 */
export const SERIAL_SEQUENCE_SQL = `
SELECT coalesce(pg_get_serial_sequence($1, $2),
                (SELECT s.oid::regclass::text
                   FROM pg_attribute a
                   JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                   JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
                   JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
                  WHERE a.attrelid = $1::regclass AND a.attname = $2
                  LIMIT 1)) AS seq`;

export function countSql(t: BoundTable, side: Side): string {
  return `SELECT count(*)::text AS count ${rowsOf(t, side)}`;
}

/** Writing transactions that started before $1 and are still open (the final check waits for them). */
export const OPEN_WRITERS_SQL = `
SELECT count(*)::int AS n FROM pg_stat_activity
 WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND datname = current_database() AND xact_start < $1::timestamptz`;

/** Rows changed at or after $1 on the source, filter or not (writes after a freeze). */
export function changedSinceSql(t: BoundTable, column: string): string {
  return `SELECT count(*)::int AS n FROM ${t.source} WHERE ${quoteIdent(column)} >= $1::timestamptz`;
}

/** A sample of the keys a selection reads (for rows outside the span). */
export function keySampleSql(t: BoundTable, side: Side, sel: Selection, limit: number): string {
  const k = keyExprs(t, side);
  return `SELECT json_build_array(${k.map((e) => `${e}::text`).join(', ')})::text AS key ${rowsOf(t, side, sel)} ORDER BY ${k.join(', ')} LIMIT ${Math.trunc(limit)}`;
}

/** $1 is the sequence (from pg_get_serial_sequence); it only ever moves forward. */
export function advanceSequenceSql(target: string, column: string): string {
  const c = quoteIdent(column);
  return `SELECT setval($1::regclass, greatest(max(${c})::bigint, coalesce(pg_sequence_last_value($1::regclass), 1))) AS value FROM ${target} HAVING max(${c}) IS NOT NULL`;
}

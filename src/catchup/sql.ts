// The SQL of catch-up by a change column: the watermark, the window's rows staged in a temporary
// table and applied to the target by key, and the keys gone from the source. Built on src/db/sql.ts.
import { changedPredicate, keyExprs, quoteIdent, type BoundTable, type Changed } from '../db/sql';

/** Planner statistics for a staging table just filled. */
export function analyzeSql(name: string): string {
  return `ANALYZE ${quoteIdent(name)}`;
}

/**
 * The watermark to read from next time: the source's clock, held back to the start of the oldest
 * transaction that is writing in this database (its rows carry its start time and commit later).
 * Read before the snapshot that copies the changes is taken.
 */
export const WATERMARK_SQL = `
SELECT least(clock_timestamp(), (SELECT min(xact_start) FROM pg_stat_activity
                                  WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND datname = current_database()))::text AS mark`;

/** $1 the watermark, $2 the overlap: where the next window starts. */
export const WINDOW_START_SQL = `SELECT ($1::timestamptz - $2::interval)::text AS start`;

export const STAGE = 'backfill_stage';
export const GONE = 'backfill_gone';

/** A temporary table shaped like the copied target columns (or the key alone), dropped at commit. */
export function stageTableSql(t: BoundTable, name: string, keyOnly = false): string {
  const cols = (keyOnly ? t.key : t.columns).map(quoteIdent).join(', ');
  return `CREATE TEMP TABLE ${quoteIdent(name)} ON COMMIT DROP AS SELECT ${cols} FROM ${t.target} WITH NO DATA`;
}

function keysEqual(t: BoundTable, a: string, b: string): string {
  return t.key.map((k) => `${a}.${quoteIdent(k)} = ${b}.${quoteIdent(k)}`).join(' AND ');
}

function rowText(t: BoundTable, alias: string): string {
  return `ROW(${t.columns.map((c) => `${alias}.${quoteIdent(c)}`).join(', ')})::text`;
}

/**
 * Removes the target rows whose keys are staged; with `differing`, only those whose copied columns
 * differ from the staged row (compared as text, as the checksums are: json has no equality).
 */
export function deleteStagedSql(t: BoundTable, name: string, differing = false): string {
  const diff = differing ? ` AND ${rowText(t, 't')} IS DISTINCT FROM ${rowText(t, 's')}` : '';
  return `DELETE FROM ${t.target} t USING ${quoteIdent(name)} s WHERE ${keysEqual(t, 't', 's')}${diff}`;
}

/** After the differing rows are gone, a staged key still in the target is identical there: unstage it. */
export function keepIdenticalSql(t: BoundTable): string {
  return `DELETE FROM ${quoteIdent(STAGE)} s USING ${t.target} t WHERE ${keysEqual(t, 't', 's')}`;
}

/** The staged rows, with the source's values (an identity column GENERATED ALWAYS takes them too, as with COPY). */
export function insertStagedSql(t: BoundTable): string {
  const cols = t.columns.map(quoteIdent).join(', ');
  return `INSERT INTO ${t.target} (${cols}) OVERRIDING SYSTEM VALUE SELECT ${cols} FROM ${quoteIdent(STAGE)}`;
}

/** Keys of source rows that changed but no longer pass the spec's filter: gone, for this migration. */
export function copyGoneKeysSql(t: BoundTable, c: Changed): string {
  const k = keyExprs(t, 'source').map((e, i) => `${e} AS ${quoteIdent(t.key[i])}`);
  return `COPY (SELECT ${k.join(', ')} FROM ${t.source} WHERE ${changedPredicate(c)} AND NOT coalesce((${t.where ?? 'true'}), false)) TO STDOUT (FORMAT binary)`;
}

export function copyKeysInSql(t: BoundTable, name: string): string {
  return `COPY ${quoteIdent(name)} (${t.key.map(quoteIdent).join(', ')}) FROM STDIN (FORMAT binary)`;
}

/**
 * Target rows in the window that the source did not send: deleted at the source, or changed
 * there so that they fell out of the window. Their keys are looked up at the source next.
 */
export function unsentKeysSql(t: BoundTable, c: Changed, limit: number): string {
  const k = t.key.map((x) => `t.${quoteIdent(x)}`);
  return `SELECT ${k.map((e, i) => `${e}::text AS k${i}`).join(', ')} FROM ${t.target} t
           WHERE t.${changedPredicate(c)} AND NOT EXISTS (SELECT 1 FROM ${quoteIdent(STAGE)} s WHERE ${keysEqual(t, 't', 's')})
           LIMIT ${Math.trunc(limit)}`;
}

/** $1..$n: one text array per key column; the keys that exist (and pass the filter) on the source. */
export function existingKeysSql(t: BoundTable, types: string[]): string {
  const k = keyExprs(t, 'source');
  const arrays = types.map((ty, i) => `$${i + 1}::text[]::${ty}[]`).join(', ');
  return `SELECT ${k.map((e, i) => `${e}::text AS k${i}`).join(', ')} FROM ${t.source}
           WHERE (${k.join(', ')}) IN (SELECT * FROM unnest(${arrays}))${t.where ? ` AND (${t.where})` : ''}`;
}

/** $1..$n: one text array per key column. */
export function deleteKeysSql(t: BoundTable, types: string[]): string {
  const k = t.key.map(quoteIdent);
  const arrays = types.map((ty, i) => `$${i + 1}::text[]::${ty}[]`).join(', ');
  return `DELETE FROM ${t.target} WHERE (${k.join(', ')}) IN (SELECT * FROM unnest(${arrays}))`;
}

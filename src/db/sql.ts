// Every SQL text the product runs is built here, by small functions. Identifiers are quoted part by
// part; values go as parameters. COPY cannot take parameters, so range bounds inside a COPY are
// rendered by `typedLiteral`: a quoted string literal with an explicit cast to the column's
// catalog type (sessions pin standard_conforming_strings=on).

export function quoteIdent(name: string): string {
  if (name.includes('\0')) throw new Error('identifier contains a NUL byte');
  return `"${name.replace(/"/g, '""')}"`;
}

export function qualifiedName(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

export function quoteLiteral(v: string): string {
  if (v.includes('\0')) throw new Error('a value contains a NUL byte');
  return `'${v.replace(/'/g, "''")}'`;
}

/** `type` comes from the catalog (format_type), never from the spec. */
export function typedLiteral(v: string, type: string, collateC: boolean): string {
  return `${quoteLiteral(v)}::${type}${collateC ? ' COLLATE "C"' : ''}`;
}

/**
 * A half-open range on the range columns: lo <= cols < hi, compared as a row (lexicographic), text
 * in the "C" collation so both sides order alike. `null` is unbounded.
 */
export interface KeyRange {
  lo: string[] | null;
  hi: string[] | null;
}

/** The columns ranges are taken on, with their types on each side. */
export interface RangeColumns {
  names: string[];
  sourceTypes: string[];
  targetTypes: string[];
  /** collatable (text-like): compared in the "C" collation */
  collate: boolean[];
}

export type Side = 'source' | 'target';

export interface CheckSpec {
  /** target column names whose value counts are compared */
  distribution: string[];
  aggregates: { fn: 'sum' | 'min' | 'max'; column: string }[];
}

/** A table as the SQL builders need it: resolved, quoted, and its mapped projection. */
export interface BoundTable {
  /** quoted, schema-qualified */
  source: string;
  target: string;
  /** target column names, in copy order */
  columns: string[];
  /** per target column: the source expression that yields it, already cast to the target type */
  sourceExprs: string[];
  /**
   * Columns compared but not written: generated on the target (it computes them), read from the
   * source's column of the same name. They enter the row hash after `columns`.
   */
  compared?: string[];
  key: string[];
  /** the key columns' target types (source keys are cast to them) */
  keyTypes: string[];
  range: RangeColumns;
  checks: CheckSpec;
  /** the spec's source filter, checked in preflight to be one expression */
  where?: string;
  /**
   * How each column enters the row hash, when both servers are PostgreSQL 14 or newer: its stored
   * value by its type's own hash, the same in the "C" collation (text types), or its text.
   * Absent: the whole row's text is hashed.
   */
  hashAs?: HashAs[];
}

/** `bits`: a float's IEEE bits (float8send): exact, and cheaper than its text (which they match but for NaN payloads). */
export type HashAs = 'value' | 'collated' | 'text' | 'bits';

function tableOf(t: BoundTable, side: Side): string {
  return side === 'source' ? t.source : t.target;
}

/** Every column the row hash covers, in hash order: the copied ones, then the compared-only ones. */
export function hashedColumns(t: BoundTable): string[] {
  return t.compared?.length ? [...t.columns, ...t.compared] : t.columns;
}

/** The expression that yields target column `c` on `side`. */
export function columnExpr(t: BoundTable, side: Side, c: string): string {
  if (side === 'target') return quoteIdent(c);
  const i = t.columns.indexOf(c);
  return i >= 0 ? t.sourceExprs[i] : quoteIdent(c);
}

function keyExprs(t: BoundTable, side: Side): string[] {
  return t.key.map((k) => columnExpr(t, side, k));
}

function whereClause(parts: (string | undefined | false)[]): string {
  const ps = parts.filter((p): p is string => Boolean(p));
  return ps.length ? ` WHERE ${ps.map((p) => `(${p})`).join(' AND ')}` : '';
}

function sideFilter(t: BoundTable, side: Side): string | undefined {
  return side === 'source' ? t.where : undefined;
}

export function rangePredicate(t: BoundTable, side: Side, r: KeyRange): string | undefined {
  const types = side === 'source' ? t.range.sourceTypes : t.range.targetTypes;
  const cols = t.range.names.map((n, i) => `${quoteIdent(n)}${t.range.collate[i] ? ' COLLATE "C"' : ''}`);
  const tuple = (vals: string[]) => vals.map((v, i) => typedLiteral(v, types[i], t.range.collate[i]));
  const one = cols.length === 1;
  const lhs = one ? cols[0] : `ROW(${cols.join(', ')})`;
  const rhs = (vals: string[]) => (one ? tuple(vals)[0] : `ROW(${tuple(vals).join(', ')})`);
  const parts: string[] = [];
  if (r.lo) parts.push(`${lhs} >= ${rhs(r.lo)}`);
  if (r.hi) parts.push(`${lhs} < ${rhs(r.hi)}`);
  return parts.length ? parts.join(' AND ') : undefined;
}

/**
 * Which rows a statement reads: one range, the rows outside the planned span (all rows when
 * nothing is planned), or the rows whose change column is at or after `from` (a timestamptz).
 */
export type Selection = { range: KeyRange } | { outside: KeyRange | null } | { changed: Changed };

export interface Changed {
  column: string;
  from: string;
}

function changedPredicate(c: Changed): string {
  return `${quoteIdent(c.column)} >= ${typedLiteral(c.from, 'timestamptz', false)}`;
}

function selectionPredicate(t: BoundTable, side: Side, sel?: Selection): string | undefined {
  if (!sel) return undefined;
  if ('range' in sel) return rangePredicate(t, side, sel.range);
  if ('changed' in sel) return changedPredicate(sel.changed);
  const inside = sel.outside && rangePredicate(t, side, sel.outside);
  if (!inside) return undefined;
  // NOT (a AND b) becomes (NOT a OR NOT b) in the planner: two index range scans, not a full scan.
  return `NOT (${inside}) OR ${t.range.names.map((n) => `${quoteIdent(n)} IS NULL`).join(' OR ')}`;
}

/** A source snapshot for a copy and its checks: one consistent view, never a write. */
export const BEGIN_SNAPSHOT = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';

/** The server's version as a number (140000 = 14.0). */
export const SERVER_VERSION_SQL = `SELECT current_setting('server_version_num') AS v`;

/** The source's clock now (not the transaction's start). */
export const CLOCK_SQL = 'SELECT clock_timestamp()::text AS at';

/** $1 a table (regclass text), $2 a column: its serial or identity sequence, or NULL. */
export const SERIAL_SEQUENCE_SQL = 'SELECT pg_get_serial_sequence($1, $2) AS seq';

/** Planner statistics for a staging table just filled. */
export function analyzeSql(name: string): string {
  return `ANALYZE ${quoteIdent(name)}`;
}

/**
 * For the statements on the rows outside the planned span: take the key index even when the
 * planner believes a full scan is cheaper. A freshly loaded target has no statistics, and the
 * default guesses for `key < lo OR key >= hi` make it scan and hash the whole table (seen: 0.35 s
 * for no rows at 2M), or walk the whole index for a sorted sample (0.7-1 s).
 */
export const PREFER_INDEX = 'SET LOCAL enable_seqscan = off';

function asSelection(sel?: KeyRange | Selection): Selection | undefined {
  return sel && !('range' in sel) && !('outside' in sel) && !('changed' in sel) ? { range: sel } : sel;
}

function rowsOf(t: BoundTable, side: Side, sel?: KeyRange | Selection): string {
  const s = asSelection(sel);
  return `FROM ${tableOf(t, side)}${whereClause([selectionPredicate(t, side, s), sideFilter(t, side)])}`;
}

export function countSql(t: BoundTable, side: Side): string {
  return `SELECT count(*)::text AS count ${rowsOf(t, side)}`;
}

export function sourceSelect(t: BoundTable, r?: KeyRange | Selection): string {
  const proj = t.sourceExprs.map((e, i) => `${e} AS ${quoteIdent(t.columns[i])}`).join(', ');
  return `SELECT ${proj} ${rowsOf(t, 'source', r)}`;
}

/**
 * Evaluates one copied column's expression (a cast to the target's type, or a transform) over every
 * source row the spec selects, so a value the cast cannot take fails here, in a dry run, and not in
 * the first range. `count(*) FILTER` makes the server evaluate it for each row.
 */
export function columnProbeSql(t: BoundTable, i: number): string {
  return `SELECT count(*) FILTER (WHERE (${t.sourceExprs[i]}) IS NULL) AS nulls ${rowsOf(t, 'source')}`;
}

export function copyOutSql(t: BoundTable, r: KeyRange | Selection): string {
  return `COPY (${sourceSelect(t, r)}) TO STDOUT (FORMAT binary)`;
}

/** The source's COPY with each row's hash as one more column, last (see HashSplitter). */
export function copyOutHashedSql(t: BoundTable, r: KeyRange | Selection): string {
  const proj = t.sourceExprs.map((e, i) => `${e} AS ${quoteIdent(t.columns[i])}`).join(', ');
  return `COPY (SELECT ${proj}, ${rowHashExpr(t, 'source')} AS "backfill row hash" ${rowsOf(t, 'source', r)}) TO STDOUT (FORMAT binary)`;
}

/** Into the target table, or into the catch-up's staging table. */
export function copyInSql(t: BoundTable, into: string = t.target): string {
  return `COPY ${into} (${t.columns.map(quoteIdent).join(', ')}) FROM STDIN (FORMAT binary)`;
}

export function deleteRangeSql(t: BoundTable, r: KeyRange | Selection): string {
  return `DELETE ${rowsOf(t, 'target', r)}`;
}

// ---- catch-up: rows changed since a watermark, applied by key ----

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

/** Writing transactions that started before $1 and are still open (the final check waits for them). */
export const OPEN_WRITERS_SQL = `
SELECT count(*)::int AS n FROM pg_stat_activity
 WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND datname = current_database() AND xact_start < $1::timestamptz`;

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

export function insertStagedSql(t: BoundTable): string {
  const cols = t.columns.map(quoteIdent).join(', ');
  return `INSERT INTO ${t.target} (${cols}) SELECT ${cols} FROM ${quoteIdent(STAGE)}`;
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

/** Rows changed at or after $1 on the source, filter or not (writes after a freeze). */
export function changedSinceSql(t: BoundTable, column: string): string {
  return `SELECT count(*)::int AS n FROM ${t.source} WHERE ${quoteIdent(column)} >= $1::timestamptz`;
}

/**
 * A 64-bit hash of a row over the mapped projection. Never XOR, never 32-bit.
 * With `hashAs`, columns whose type's hash tells apart every value its text does are hashed from
 * the stored value (no text conversion: about 3x cheaper), the rest from their text, all in the
 * "C" collation. hash_record_extended combines the columns linearly, so its result is mixed once
 * more: a sum of linear row hashes would not see values swapped between two rows.
 */
export function rowHashExpr(t: BoundTable, side: Side): string {
  const exprs = hashedColumns(t).map((c) => columnExpr(t, side, c));
  const how = t.hashAs;
  if (!how) return `hashtextextended(ROW(${exprs.join(', ')})::text, 0)`;
  const parts = exprs.map((e, i) =>
    how[i] === 'value' ? e : how[i] === 'collated' ? `(${e}) COLLATE "C"` : how[i] === 'bits' ? `float8send((${e})::float8)` : `(${e})::text COLLATE "C"`,
  );
  return `hashint8extended(hash_record_extended(ROW(${parts.join(', ')}), 0), 0)`;
}

/** Built-in types whose hash tells apart every value their text output does (numeric: only with a fixed scale). */
const VALUE_HASHED = new Set(['int2', 'int4', 'int8', 'bool', 'bytea', 'date', 'time', 'timestamp', 'timestamptz', 'uuid']);
// (bpchar is left out: its hash ignores the trailing blanks its text keeps)
const TEXT_TYPES = new Set(['text', 'varchar']);

/** How a target column enters the row hash, from the catalog: `typeName` (pg_type), `type` (format_type). */
export function hashAs(col: { typeName: string; type: string; builtin: boolean }): HashAs {
  if (!col.builtin) return 'text';
  if (TEXT_TYPES.has(col.typeName)) return 'collated';
  if (col.typeName === 'numeric') return /^numeric\(\d+,\d+\)$/.test(col.type) ? 'value' : 'text';
  // Its hash calls -0 and 0 alike; its bits do not (widening a float4 to float8 is exact).
  if (col.typeName === 'float8' || col.typeName === 'float4') return 'bits';
  return VALUE_HASHED.has(col.typeName) ? 'value' : 'text';
}

export function aggregateName(a: { fn: string; column: string }): string {
  return `${a.fn}(${a.column})`;
}

/**
 * One scan per side: count, checksum (the numeric sum of the row hashes, so it cannot overflow),
 * the configured aggregates, and the value counts of the distribution columns (grouping sets).
 */
export function profileSql(t: BoundTable, side: Side, r?: KeyRange | Selection, hash = true): string {
  const inner = [`${hash ? rowHashExpr(t, side) : '0::bigint'} AS h`];
  t.checks.distribution.forEach((c, i) => inner.push(`${columnExpr(t, side, c)}::text AS d${i}`));
  t.checks.aggregates.forEach((a, i) => inner.push(`${columnExpr(t, side, a.column)} AS a${i}`));
  const outer = ['count(*)::text AS count', 'coalesce(sum(h), 0)::text AS checksum'];
  t.checks.aggregates.forEach((a, i) => outer.push(`${a.fn}(a${i})::text AS a${i}`));
  const dist = t.checks.distribution.map((_, i) => `d${i}`);
  if (dist.length === 0) return `SELECT ${outer.join(', ')} FROM (SELECT ${inner.join(', ')} ${rowsOf(t, side, r)}) s`;
  const grouping = dist.map((d, i) => `GROUPING(${d}) AS g${i}, ${d} AS v${i}`);
  return `SELECT ${grouping.join(', ')}, ${outer.join(', ')} FROM (SELECT ${inner.join(', ')} ${rowsOf(t, side, r)}) s GROUP BY GROUPING SETS ((), ${dist.map((d) => `(${d})`).join(', ')})`;
}

/** Keys that occur more than once on a side (only run where no unique index guarantees it). */
export function duplicatesSql(t: BoundTable, side: Side, r: KeyRange | Selection | undefined, limit: number): string {
  const k = keyExprs(t, side);
  return `SELECT json_build_array(${k.map((e) => `${e}::text`).join(', ')})::text AS key, n::text AS n, count(*) OVER ()::text AS keys, sum(n - 1) OVER ()::text AS surplus
            FROM (SELECT ${k.join(', ')}, count(*) AS n ${rowsOf(t, side, r)} GROUP BY ${k.map((_, i) => String(i + 1)).join(', ')} HAVING count(*) > 1) d
           ORDER BY 1 LIMIT ${Math.trunc(limit)}`;
}

/** The key's bucket at a narrowing level: the low `bits` bits of a 64-bit hash of the key. */
export function keyBucketExpr(t: BoundTable, side: Side, bits: number): string {
  const mask = (1n << BigInt(bits)) - 1n;
  const keys = keyExprs(t, side);
  // One integer key: its own hash, without the text of a row (a third of a narrowing scan's cost).
  if (keys.length === 1 && INTEGER_TYPES.has(t.keyTypes[0])) return `(hashint8extended((${keys[0]})::int8, 7) & ${mask.toString()})`;
  return `(hashtextextended(ROW(${keys.join(', ')})::text, 7) & ${mask.toString()})`;
}
const INTEGER_TYPES = new Set(['smallint', 'integer', 'bigint']);

/** Count and checksum per key bucket, inside the buckets still suspect (all, at the first level). */
export function bucketSql(t: BoundTable, side: Side, r: KeyRange, bits: number, parentBits: number): string {
  const parent = parentBits > 0 ? `${keyBucketExpr(t, side, parentBits)} = ANY ($1::bigint[])` : undefined;
  // Grouped on the bucket number over (bucket, hash) pairs computed first (OFFSET 0 keeps the planner
  // from folding them back): a sort then moves 16 bytes a row, not the whole row to disk.
  return `SELECT b::text AS b, count(*)::text AS n, sum(h)::text AS s
            FROM (SELECT ${keyBucketExpr(t, side, bits)} AS b, ${rowHashExpr(t, side)} AS h
                    FROM ${tableOf(t, side)}${whereClause([rangePredicate(t, side, r), sideFilter(t, side), parent])} OFFSET 0) x
           GROUP BY b`;
}

/** Each row's key (JSON text), row hash and per-column hashes: what locating compares. */
function rowEvidence(t: BoundTable, side: Side): string {
  const colHashes = hashedColumns(t).map((c) => `hashtextextended(ROW(${columnExpr(t, side, c)})::text, 0)::text`);
  return `SELECT json_build_array(${keyExprs(t, side)
    .map((e) => `${e}::text`)
    .join(', ')})::text AS key,
                 ${rowHashExpr(t, side)}::text AS h, json_build_array(${colHashes.join(', ')})::text AS ch
            FROM ${tableOf(t, side)}`;
}

/** Every row of a range as its key (JSON text) and row hash: a range small enough to compare whole in the worker. */
export function keyHashesSql(t: BoundTable, side: Side, r: KeyRange): string {
  return `SELECT json_build_array(${keyExprs(t, side)
    .map((e) => `${e}::text`)
    .join(', ')})::text AS key, ${rowHashExpr(t, side)}::text AS h
            FROM ${tableOf(t, side)}${whereClause([rangePredicate(t, side, r), sideFilter(t, side)])}`;
}

export function bucketRowsSql(t: BoundTable, side: Side, r: KeyRange, bits: number): string {
  return `${rowEvidence(t, side)}${whereClause([rangePredicate(t, side, r), sideFilter(t, side), bits > 0 && `${keyBucketExpr(t, side, bits)} = ANY ($1::bigint[])`])}`;
}

/**
 * The rows of the given keys within a range, shaped as bucketRowsSql's: $1.. one text[] per key
 * column (the keys' values as text, cast to the key types), so a lookup uses the key's index.
 */
export function keyedRowsSql(t: BoundTable, side: Side, r: KeyRange): string {
  const keys = keyExprs(t, side);
  const arrays = keys.map((_, i) => `$${i + 1}::text[]::${t.keyTypes[i]}[]`);
  const match = keys.length === 1 ? `${keys[0]} = ANY (${arrays[0]})` : `(${keys.join(', ')}) IN (SELECT * FROM unnest(${arrays.join(', ')}))`;
  return `${rowEvidence(t, side)}${whereClause([rangePredicate(t, side, r), sideFilter(t, side), match])}`;
}

/** Bounds of the range columns on the source: what the plan starts from. */
export function sourceBoundsSql(t: BoundTable): string {
  const c = quoteIdent(t.range.names[0]);
  return `SELECT min(${c})::text AS lo, max(${c})::text AS hi ${rowsOf(t, 'source')}`;
}

/**
 * Range i of a time-interval plan: [$1 + $2 * $3, $1 + ($2 + 1) * $3) on a column of `type` (from
 * the catalog). Planning and every range take their bounds from this one expression, so range i's
 * hi is range i+1's lo, even for months.
 */
export function intervalBoundsSql(type: string): string {
  return `SELECT ($1::${type} + $2::int * $3::interval)::text AS lo, ($1::${type} + ($2::int + 1) * $3::interval)::text AS hi`;
}

/**
 * Where a time-interval plan starts ($1 the lowest value, $2 the interval) and how many ranges reach
 * $3 (the highest): aligned starts, date_bin for fixed intervals, the month for calendar ones.
 */
export function intervalPlanSql(type: string): string {
  return `WITH p AS (SELECT CASE WHEN extract(month FROM $2::interval) + extract(year FROM $2::interval) > 0
                              THEN date_trunc('month', $1::${type})
                              ELSE date_bin($2::interval, $1::${type}, '2000-01-01 00:00:00'::${type}) END AS start)
       SELECT start::text AS start,
              (SELECT count(*) FROM generate_series(start, $3::${type}, $2::interval)) AS n
         FROM p`;
}

/** Every `every`-th key in key order: the boundaries of ranges of `every` rows. */
export function rowBoundariesSql(t: BoundTable, every: number): string {
  const cols = t.range.names.map((n, i) => `${quoteIdent(n)}${t.range.collate[i] ? ' COLLATE "C"' : ''}`);
  return `SELECT b FROM (SELECT json_build_array(${t.range.names.map((n) => `${quoteIdent(n)}::text`).join(', ')})::text AS b,
                                row_number() OVER (ORDER BY ${cols.join(', ')}) AS rn ${rowsOf(t, 'source')}) x
           WHERE rn % ${Math.trunc(every)} = 1 ORDER BY rn`;
}

/** A sample of the keys a selection reads (for rows outside the span). */
export function keySampleSql(t: BoundTable, side: Side, sel: Selection, limit: number): string {
  const k = keyExprs(t, side);
  return `SELECT json_build_array(${k.map((e) => `${e}::text`).join(', ')})::text AS key ${rowsOf(t, side, sel)} ORDER BY ${k.join(', ')} LIMIT ${Math.trunc(limit)}`;
}

/** `owner` is a quoted name from the catalog; `ddl` is pg_get_constraintdef's text. */
export function dropConstraintSql(owner: string, name: string): string {
  return `ALTER TABLE ${owner} DROP CONSTRAINT IF EXISTS ${quoteIdent(name)}`;
}

/** Re-created NOT VALID: no scan, no long lock; VALIDATE then checks the rows with a weaker lock. */
export function addConstraintNotValidSql(owner: string, name: string, ddl: string): string {
  return `${addConstraintSql(owner, name, ddl)} NOT VALID`;
}

/**
 * Re-created and checked at once: for a partitioned table, where PostgreSQL (before 18) refuses a
 * NOT VALID foreign key. It is added to every partition too.
 */
export function addConstraintSql(owner: string, name: string, ddl: string): string {
  const def = ddl.replace(/\s+NOT VALID\s*$/i, '');
  return `ALTER TABLE ${owner} ADD CONSTRAINT ${quoteIdent(name)} ${def}`;
}

export function validateConstraintSql(owner: string, name: string): string {
  return `ALTER TABLE ${owner} VALIDATE CONSTRAINT ${quoteIdent(name)}`;
}

/** The plan of `query` as JSON, names qualified (VERBOSE): which relations it reads. Not run. */
export function explainJsonSql(query: string): string {
  return `EXPLAIN (VERBOSE, FORMAT JSON) ${query}`;
}

/** `rel` (an oid) is the table `table` or a partition under it, at any depth (pg_partition_tree has nothing for a plain table). */
function underTable(rel: string, table: string): string {
  return `(${rel} = ${table} OR ${rel} IN (SELECT relid FROM pg_partition_tree(${table})))`;
}

/** The name of pg_class row `c`, schema-qualified, each part quoted where it must be. */
const relationName = (c: string) => `format('%I.%I', (SELECT nspname FROM pg_namespace WHERE oid = ${c}.relnamespace), ${c}.relname)`;

/** The relations under `table` (it, its partitions) that are UNLOGGED or temporary: a JSON array of names. */
const unloggedUnder = (table: string) =>
  `coalesce((SELECT json_agg(${relationName('u')}) FROM pg_class u WHERE ${underTable('u.oid', table)} AND u.relpersistence <> 'p'), '[]')::text`;

/** $1 a table (regclass text): it and its partitions, as schema.name (as EXPLAIN VERBOSE names them). */
export const PARTITION_TREE_SQL = `
SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE ${underTable('c.oid', '$1::regclass')}`;

/** For the embedded servers of the demo, tests and bench. */
export function createDatabaseSql(name: string): string {
  return `CREATE DATABASE ${quoteIdent(name)}`;
}

/** $1 is the sequence (from pg_get_serial_sequence); it only ever moves forward. */
export function advanceSequenceSql(target: string, column: string): string {
  const c = quoteIdent(column);
  return `SELECT setval($1::regclass, greatest(max(${c})::bigint, coalesce(pg_sequence_last_value($1::regclass), 1))) AS value FROM ${target} HAVING max(${c}) IS NOT NULL`;
}

// ---- change capture (logical replication) ----

/** What logical change capture needs of the source server, in one row. */
export const CAPTURE_SERVER_SQL = `
SELECT current_setting('wal_level') AS wal_level,
       current_setting('server_version_num')::int AS version,
       current_setting('max_replication_slots')::int AS max_slots,
       (SELECT count(*) FROM pg_replication_slots)::int AS slots_used,
       current_setting('max_wal_senders')::int AS max_senders,
       (SELECT count(*) FROM pg_stat_replication)::int AS senders_used,
       current_setting('max_slot_wal_keep_size') AS keep_size`;

/** Per table (by oid, $1 text[]): its replica identity, whether it has a primary key. */
export const CAPTURE_TABLES_SQL = `
SELECT c.oid::text AS oid, c.relreplident AS identity, c.relkind AS kind,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
       ${unloggedUnder('c.oid')} AS unlogged
  FROM pg_class c WHERE c.oid = ANY ($1::text[]::oid[])`;

export const PUBLICATION_SQL = `
SELECT p.pubname, p.puballtables AS all_tables, p.pubviaroot AS via_root,
       coalesce((SELECT json_agg(pt.prrelid::text) FROM pg_publication_rel pt WHERE pt.prpubid = p.oid), '[]')::text AS relids
  FROM pg_publication p WHERE p.pubname = $1`;

/**
 * What a publication sends, by table (PostgreSQL 14 to 17 alike): each relation its changes are
 * published under (a partition's under its topmost published ancestor when publish_via_partition_root
 * is on, under its own name when off), with the publication's row filter and column list where the
 * server has them (15+; `to_jsonb` of the view's row, so older servers simply lack the keys).
 */
export const PUBLICATION_TABLES_SQL = `
SELECT c.oid::text AS oid, pt.schemaname AS schema, pt.tablename AS name,
       to_jsonb(pt) ->> 'rowfilter' AS rowfilter, (to_jsonb(pt) -> 'attnames')::text AS attnames
  FROM pg_publication_tables pt
  JOIN pg_namespace n ON n.nspname = pt.schemaname
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
 WHERE pt.pubname = $1`;

/**
 * What change capture needs to still hold for a table ($1 its oid, $2 the publication): it is
 * published (under its own name: its partitions via it), and neither it nor a partition is UNLOGGED
 * or TEMPORARY (their writes never reach the write-ahead log, so no stream carries them).
 */
export const CAPTURE_COVERAGE_SQL = `
SELECT EXISTS (SELECT 1 FROM pg_publication_tables pt JOIN pg_namespace n ON n.nspname = pt.schemaname
                 JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
                WHERE pt.pubname = $2 AND c.oid = $1::oid) AS published,
       coalesce((SELECT p.pubviaroot FROM pg_publication p WHERE p.pubname = $2), false) AS via_root,
       ${unloggedUnder('$1::oid')} AS unlogged`;

/** $1 a table's oid: the rows written to it and every partition under it so far, and each relation's storage. */
export const WRITES_AND_STORAGE_SQL = `
SELECT coalesce(sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del), 0)::text AS writes,
       coalesce(json_agg(json_build_array(${relationName('c')}, pg_relation_filenode(c.oid)::text) ORDER BY c.oid), '[]')::text AS storage
  FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE ${underTable('c.oid', '$1::oid')}`;

/** The write counters can prove a window: PostgreSQL 15 or later (statistics in shared memory), track_counts on. */
export const COUNTERS_USABLE_SQL = `SELECT current_setting('server_version_num')::int >= 150000 AND current_setting('track_counts')::bool AS usable`;

// The insert position, not pg_current_wal_lsn() (the write position): with asynchronous commit a
// transaction is committed, and its statistics may be flushed, while its commit record still waits in
// the WAL buffers, behind the write position.
export const WAL_INSERT_SQL = 'SELECT pg_current_wal_insert_lsn()::text AS lsn';

/** Every partition (at any depth) of each table: $1 the tables' oids; `of` is the table's oid. */
export const PARTITIONS_SQL = `
SELECT r.oid::text AS of, n.nspname AS schema, c.relname AS name
  FROM unnest($1::text[]::oid[]) AS r(oid)
  CROSS JOIN LATERAL pg_partition_tree(r.oid) t
  JOIN pg_class c ON c.oid = t.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.relid <> r.oid`;

// Changes of every partition (existing, created or attached later) are published under the root's
// name and columns, which is the table the spec names.
export function createPublicationSql(name: string, tables: string[]): string {
  return `CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${tables.join(', ')} WITH (publish_via_partition_root = true)`;
}

/** Two statements: run each on its own. */
export function setPublicationTablesSql(name: string, tables: string[]): string[] {
  return [
    `ALTER PUBLICATION ${quoteIdent(name)} SET TABLE ${tables.join(', ')}`,
    `ALTER PUBLICATION ${quoteIdent(name)} SET (publish_via_partition_root = true)`,
  ];
}

export function dropPublicationSql(name: string): string {
  return `DROP PUBLICATION IF EXISTS ${quoteIdent(name)}`;
}

/** A slot, how much WAL it holds back, and whether something streams it now. */
export const SLOT_SQL = `
SELECT slot_name, temporary, active_pid, wal_status,
       confirmed_flush_lsn::text AS confirmed,
       greatest(pg_current_wal_lsn() - restart_lsn, 0)::bigint::text AS retained_bytes
  FROM pg_replication_slots WHERE slot_name = $1`;

export const TERMINATE_SLOT_USER_SQL = `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`;
export const DROP_SLOT_SQL = `SELECT pg_drop_replication_slot($1)`;

/**
 * The sessions holding a migration's temporary slots (the snapshots of epochs and checkpoints, $1 a
 * LIKE pattern): ended, so their snapshots and slots go at once rather than when the holder hears.
 */
export const END_EPOCH_HOLDERS_SQL = `
SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE temporary AND active_pid IS NOT NULL AND slot_name LIKE $1`;
export const EPOCH_SLOTS_SQL = `SELECT count(*)::int AS n FROM pg_replication_slots WHERE temporary AND slot_name LIKE $1`;

/** The keys applied by change capture since a point ($3), per table ($2), for the final window. */
export const CHANGED_KEYS_SQL = `
SELECT DISTINCT array_to_json(key)::text AS key FROM backfill.capture_keys WHERE migration = $1 AND table_index = $2 AND commit_lsn > $3::pg_lsn`;
export const FORGET_KEYS_SQL = `DELETE FROM backfill.capture_keys WHERE migration = $1`;

// The SQL the capabilities share: quoting, the bound table and its row selections (ranges, the rows
// outside the plan, a change window), the row hash, the profile and duplicate checks, the COPY of a
// selection, and catalog fragments. SQL lives only here (src/db/) and in each capability's own
// sql.ts (range, catchup, capture, gate, plan, schema), which builds on these; test/units.test.ts
// refuses an SQL text anywhere else. Identifiers are quoted part by part; values go as parameters.
// COPY cannot take parameters, so range bounds inside a COPY are rendered by `typedLiteral`: a
// quoted string literal with an explicit cast to the column's catalog type (sessions pin
// standard_conforming_strings=on).

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
   * Per target column, where the cast to the target's type can cut or round a value (a length, a
   * precision or a scale): the condition that it did not (see keptByCast). A value the cast changed
   * hashes as NULL on the source side, so its range differs from the target's: never green.
   */
  lossless?: (string | null)[];
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

/**
 * The type a value of `type` is held in without its length, precision or scale: `character
 * varying(5)` → `character varying`, `numeric(12,2)` → `numeric`. Undefined for a type without
 * one (nothing to cut).
 */
function unboundedType(type: string): string | undefined {
  const m = /^([a-z ]+?)\s*\(\d+(?:,\s*\d+)?\)(.*)$/.exec(type);
  if (!m) return undefined;
  // Without a length, character is character(1) and bit is bit(1): their unbounded kin.
  const base = m[1] === 'character' ? 'bpchar' : m[1] === 'bit' ? 'bit varying' : m[1];
  return `${base}${m[2]}`;
}

/**
 * The condition that `expr` (a source expression) keeps its value when cast to the target's `type`
 * (PostgreSQL's explicit casts cut a text to a varchar's length and round a numeric to a scale,
 * silently), or undefined when the type has nothing to cut.
 */
export function keptByCast(expr: string, type: string): string | undefined {
  const base = unboundedType(type);
  return base ? `(${expr})::${type} IS NOT DISTINCT FROM (${expr})::${base}` : undefined;
}

/** `bits`: a float's IEEE bits (float8send): exact, and cheaper than its text (which they match but for NaN payloads). */
export type HashAs = 'value' | 'collated' | 'text' | 'bits';

/** The side's table, quoted. */
export function tableOf(t: BoundTable, side: Side): string {
  return side === 'source' ? t.source : t.target;
}

/** Every column the row hash covers, in hash order: the copied ones, then the compared-only ones. */
export function hashedColumns(t: BoundTable): string[] {
  return t.compared?.length ? [...t.columns, ...t.compared] : t.columns;
}

/**
 * What the row hash covers on `side`, column by column (hashedColumns): on the source, a value its
 * cast changed (see BoundTable.lossless) is NULL, so it cannot match what the target holds.
 */
export function hashedExprs(t: BoundTable, side: Side): string[] {
  return hashedColumns(t).map((c, i) => {
    const e = columnExpr(t, side, c);
    const kept = side === 'source' ? t.lossless?.[i] : undefined;
    return kept ? `(CASE WHEN ${kept} THEN ${e} END)` : e;
  });
}

/** The expression that yields target column `c` on `side`. */
function columnExpr(t: BoundTable, side: Side, c: string): string {
  if (side === 'target') return quoteIdent(c);
  const i = t.columns.indexOf(c);
  return i >= 0 ? t.sourceExprs[i] : quoteIdent(c);
}

/** The key columns' expressions on `side`. */
export function keyExprs(t: BoundTable, side: Side): string[] {
  return t.key.map((k) => columnExpr(t, side, k));
}

/** ` WHERE (a) AND (b)` of the parts given, or nothing. */
export function whereClause(parts: (string | undefined | false)[]): string {
  const ps = parts.filter((p): p is string => Boolean(p));
  return ps.length ? ` WHERE ${ps.map((p) => `(${p})`).join(' AND ')}` : '';
}

/** The spec's filter, on the source only. */
export function sideFilter(t: BoundTable, side: Side): string | undefined {
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

export function changedPredicate(c: Changed): string {
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

/** `FROM` the side's table, with the selection's predicate and the spec's filter: the rows a statement reads. */
export function rowsOf(t: BoundTable, side: Side, sel?: KeyRange | Selection): string {
  const s = asSelection(sel);
  return `FROM ${tableOf(t, side)}${whereClause([selectionPredicate(t, side, s), sideFilter(t, side)])}`;
}

export function sourceSelect(t: BoundTable, r?: KeyRange | Selection): string {
  const proj = t.sourceExprs.map((e, i) => `${e} AS ${quoteIdent(t.columns[i])}`).join(', ');
  return `SELECT ${proj} ${rowsOf(t, 'source', r)}`;
}

export function copyOutSql(t: BoundTable, r: KeyRange | Selection): string {
  return `COPY (${sourceSelect(t, r)}) TO STDOUT (FORMAT binary)`;
}

/** Into the target table, or into the catch-up's staging table. */
export function copyInSql(t: BoundTable, into: string = t.target): string {
  return `COPY ${into} (${t.columns.map(quoteIdent).join(', ')}) FROM STDIN (FORMAT binary)`;
}

/**
 * A 64-bit hash of a row over the mapped projection. Never XOR, never 32-bit.
 * With `hashAs`, columns whose type's hash tells apart every value its text does are hashed from
 * the stored value (no text conversion: about 3x cheaper), the rest from their text, all in the
 * "C" collation. hash_record_extended combines the columns linearly, so its result is mixed once
 * more: a sum of linear row hashes would not see values swapped between two rows.
 */
export function rowHashExpr(t: BoundTable, side: Side): string {
  const exprs = hashedExprs(t, side);
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

/** `rel` (an oid) is the table `table` or a partition under it, at any depth (pg_partition_tree has nothing for a plain table). */
export function underTable(rel: string, table: string): string {
  return `(${rel} = ${table} OR ${rel} IN (SELECT relid FROM pg_partition_tree(${table})))`;
}

/** The name of pg_class row `c`, schema-qualified, each part quoted where it must be. */
export const relationName = (c: string) => `format('%I.%I', (SELECT nspname FROM pg_namespace WHERE oid = ${c}.relnamespace), ${c}.relname)`;

/** The relations under `table` (it, its partitions) that are UNLOGGED or temporary: a JSON array of names. */
export const unloggedUnder = (table: string) =>
  `coalesce((SELECT json_agg(${relationName('u')}) FROM pg_class u WHERE ${underTable('u.oid', table)} AND u.relpersistence <> 'p'), '[]')::text`;

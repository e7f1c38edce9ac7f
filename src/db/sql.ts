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

/** Splits a spec table name into [schema | null, table]. The spec schema already checked its shape. */
export function splitTableName(name: string): [string | null, string] {
  const parts = name.split('.');
  return parts.length === 2 ? [parts[0], parts[1]] : [null, parts[0]];
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
  key: string[];
  range: RangeColumns;
  checks: CheckSpec;
  /** the spec's source filter, checked in preflight to be one expression */
  where?: string;
}

function tableOf(t: BoundTable, side: Side): string {
  return side === 'source' ? t.source : t.target;
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

/** Which rows a statement reads: one range, or the rows outside the planned span (all rows when nothing is planned). */
export type Selection = { range: KeyRange } | { outside: KeyRange | null };

function selectionPredicate(t: BoundTable, side: Side, sel?: Selection): string | undefined {
  if (!sel) return undefined;
  if ('range' in sel) return rangePredicate(t, side, sel.range);
  const inside = sel.outside && rangePredicate(t, side, sel.outside);
  if (!inside) return undefined;
  // NOT (a AND b) becomes (NOT a OR NOT b) in the planner: two index range scans, not a full scan.
  return `NOT (${inside}) OR ${t.range.names.map((n) => `${quoteIdent(n)} IS NULL`).join(' OR ')}`;
}

function rowsOf(t: BoundTable, side: Side, sel?: KeyRange | Selection): string {
  const s = sel && !('range' in sel) && !('outside' in sel) ? { range: sel } : (sel as Selection | undefined);
  return `FROM ${tableOf(t, side)}${whereClause([selectionPredicate(t, side, s), sideFilter(t, side)])}`;
}

export function countSql(t: BoundTable, side: Side): string {
  return `SELECT count(*)::text AS count ${rowsOf(t, side)}`;
}

export function sourceSelect(t: BoundTable, r?: KeyRange): string {
  const proj = t.sourceExprs.map((e, i) => `${e} AS ${quoteIdent(t.columns[i])}`).join(', ');
  return `SELECT ${proj} ${rowsOf(t, 'source', r)}`;
}

export function copyOutSql(t: BoundTable, r: KeyRange): string {
  return `COPY (${sourceSelect(t, r)}) TO STDOUT (FORMAT binary)`;
}

export function copyInSql(t: BoundTable): string {
  return `COPY ${t.target} (${t.columns.map(quoteIdent).join(', ')}) FROM STDIN (FORMAT binary)`;
}

export function deleteRangeSql(t: BoundTable, r: KeyRange): string {
  return `DELETE ${rowsOf(t, 'target', r)}`;
}

/** A 64-bit hash of a row's canonical text over the mapped projection. Never XOR, never 32-bit. */
export function rowHashExpr(t: BoundTable, side: Side): string {
  return `hashtextextended(ROW(${t.columns.map((c) => columnExpr(t, side, c)).join(', ')})::text, 0)`;
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
  return `(hashtextextended(ROW(${keyExprs(t, side).join(', ')})::text, 7) & ${mask.toString()})`;
}

/** Count and checksum per key bucket, inside the buckets still suspect (all, at the first level). */
export function bucketSql(t: BoundTable, side: Side, r: KeyRange, bits: number, parentBits: number): string {
  const parent = parentBits > 0 ? `${keyBucketExpr(t, side, parentBits)} = ANY ($1::bigint[])` : undefined;
  return `SELECT ${keyBucketExpr(t, side, bits)}::text AS b, count(*)::text AS n, sum(${rowHashExpr(t, side)})::text AS s
            FROM ${tableOf(t, side)}${whereClause([rangePredicate(t, side, r), sideFilter(t, side), parent])}
           GROUP BY 1`;
}

/** The keys, row hashes and per-column hashes of the rows in the suspect buckets. */
export function bucketRowsSql(t: BoundTable, side: Side, r: KeyRange, bits: number): string {
  const colHashes = t.columns.map((c) => `hashtextextended(ROW(${columnExpr(t, side, c)})::text, 0)::text`);
  return `SELECT json_build_array(${keyExprs(t, side).map((e) => `${e}::text`).join(', ')})::text AS key,
                 ${rowHashExpr(t, side)}::text AS h, json_build_array(${colHashes.join(', ')})::text AS ch
            FROM ${tableOf(t, side)}${whereClause([rangePredicate(t, side, r), sideFilter(t, side), bits > 0 && `${keyBucketExpr(t, side, bits)} = ANY ($1::bigint[])`])}`;
}

/** Bounds of the range columns on the source: what the plan starts from. */
export function sourceBoundsSql(t: BoundTable): string {
  const c = quoteIdent(t.range.names[0]);
  return `SELECT min(${c})::text AS lo, max(${c})::text AS hi ${rowsOf(t, 'source')}`;
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

/** $1 is the sequence (from pg_get_serial_sequence); it only ever moves forward. */
export function advanceSequenceSql(target: string, column: string): string {
  const c = quoteIdent(column);
  return `SELECT setval($1::regclass, greatest(max(${c})::bigint, coalesce(pg_sequence_last_value($1::regclass), 1))) AS value FROM ${target} HAVING max(${c}) IS NOT NULL`;
}

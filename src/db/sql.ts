// Every SQL text the product runs is built here, by small functions. Identifiers are quoted part by
// part; values go as parameters. COPY cannot take parameters, so range bounds are rendered by
// `intLiteral`, which accepts nothing but a validated integer.

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

const INTEGER = /^-?\d{1,40}$/;

export function intLiteral(v: string | bigint): string {
  const s = typeof v === 'bigint' ? v.toString() : v;
  if (!INTEGER.test(s)) throw new Error(`not an integer bound: ${JSON.stringify(s).slice(0, 60)}`);
  return BigInt(s).toString();
}

/** A half-open integer range [lo, hi) on `column`. */
export interface IntRange {
  lo: string;
  hi: string;
}

export function rangePredicate(column: string, r: IntRange): string {
  const c = quoteIdent(column);
  return `${c} >= ${intLiteral(r.lo)} AND ${c} < ${intLiteral(r.hi)}`;
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
  chunkColumn: string;
  /** the spec's source filter, checked in preflight to be one expression */
  where?: string;
}

function whereClause(parts: (string | undefined)[]): string {
  const ps = parts.filter((p): p is string => Boolean(p));
  return ps.length ? ` WHERE ${ps.map((p) => `(${p})`).join(' AND ')}` : '';
}

function sourceProjection(t: BoundTable): string {
  return t.sourceExprs.map((e, i) => `${e} AS ${quoteIdent(t.columns[i])}`).join(', ');
}

export function sourceSelect(t: BoundTable, r?: IntRange): string {
  return `SELECT ${sourceProjection(t)} FROM ${t.source}${whereClause([r && rangePredicate(t.chunkColumn, r), t.where])}`;
}

export function copyOutSql(t: BoundTable, r: IntRange): string {
  return `COPY (${sourceSelect(t, r)}) TO STDOUT (FORMAT binary)`;
}

export function copyInSql(t: BoundTable): string {
  return `COPY ${t.target} (${t.columns.map(quoteIdent).join(', ')}) FROM STDIN (FORMAT binary)`;
}

export function deleteRangeSql(t: BoundTable, r: IntRange): string {
  return `DELETE FROM ${t.target} WHERE ${rangePredicate(t.chunkColumn, r)}`;
}

/**
 * Count and checksum: the sum (numeric, so it cannot overflow) of a 64-bit hash of each row's
 * canonical text over the mapped projection. Never XOR (pairs cancel), never 32-bit hashtext.
 */
function rowHash(exprs: string[]): string {
  return `hashtextextended(ROW(${exprs.join(', ')})::text, 0)`;
}

export function sourceChecksumSql(t: BoundTable, r?: IntRange): string {
  return `SELECT count(*)::text AS count, coalesce(sum(${rowHash(t.sourceExprs)}), 0)::text AS checksum FROM ${t.source}${whereClause([r && rangePredicate(t.chunkColumn, r), t.where])}`;
}

export function targetChecksumSql(t: BoundTable, r?: IntRange): string {
  return `SELECT count(*)::text AS count, coalesce(sum(${rowHash(t.columns.map(quoteIdent))}), 0)::text AS checksum FROM ${t.target}${whereClause([r && rangePredicate(t.chunkColumn, r)])}`;
}

export function sourceBoundsSql(t: BoundTable): string {
  const c = quoteIdent(t.chunkColumn);
  return `SELECT min(${c})::text AS lo, max(${c})::text AS hi, count(*)::text AS count FROM ${t.source}${whereClause([t.where])}`;
}

/** Target rows outside [lo, hi): rows no range covers. */
export function outsideSql(t: BoundTable, r: IntRange | null, limit: number): { count: string; sample: string } {
  const c = quoteIdent(t.chunkColumn);
  const cond = r ? `NOT (${rangePredicate(t.chunkColumn, r)}) OR ${c} IS NULL` : 'true';
  const keys = t.key.map((k) => `${quoteIdent(k)}::text`).join(', ');
  return {
    count: `SELECT count(*)::text AS count FROM ${t.target} WHERE ${cond}`,
    sample: `SELECT ARRAY[${keys}] AS key FROM ${t.target} WHERE ${cond} ORDER BY ${t.key.map(quoteIdent).join(', ')} LIMIT ${Math.trunc(limit)}`,
  };
}

/** $1 is the sequence (from pg_get_serial_sequence); it only ever moves forward. */
export function advanceSequenceSql(target: string, column: string): string {
  const c = quoteIdent(column);
  return `SELECT setval($1::regclass, greatest(max(${c})::bigint, coalesce(pg_sequence_last_value($1::regclass), 1))) AS value FROM ${target} HAVING max(${c}) IS NOT NULL`;
}

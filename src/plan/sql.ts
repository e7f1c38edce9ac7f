// The SQL of planning: the source's bounds and range boundaries, the probes of a table's statements
// and values, the relations a query reads, and the statements that grant what a role lacks (shown in
// refusals, never run). Built on src/db/sql.ts.
import { quoteIdent, rowsOf, underTable, type BoundTable } from '../db/sql';

/**
 * Evaluates one copied column's expression (a cast to the target's type, or a transform) over every
 * source row the spec selects, so a value the cast cannot take fails here, in a dry run, and not in
 * the first range. `count(*) FILTER` makes the server evaluate it for each row.
 */
export function columnProbeSql(t: BoundTable, i: number): string {
  const kept = t.lossless?.[i];
  const changed = kept ? `count(*) FILTER (WHERE NOT (${kept}))` : '0';
  return `SELECT count(*) FILTER (WHERE (${t.sourceExprs[i]}) IS NULL) AS nulls, ${changed}::int AS changed ${rowsOf(t, 'source')}`;
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

/** The plan of `query` as JSON, names qualified (VERBOSE): which relations it reads. Not run. */
export function explainJsonSql(query: string): string {
  return `EXPLAIN (VERBOSE, FORMAT JSON) ${query}`;
}

/** $1 a table (regclass text): it and its partitions, as schema.name (as EXPLAIN VERBOSE names them). */
export const PARTITION_TREE_SQL = `
SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE ${underTable('c.oid', '$1::regclass')}`;

/** A query that returns no rows: prepared and planned, never read. */
export function noRowsSql(query: string): string {
  return `${query} LIMIT 0`;
}

// ---- shown in refusals, never run: each statement gives a role a right it lacks; names come shown (showName) ----

/** Column names as a list, each quoted. */
export const columnList = (cols: string[]) => cols.map((c) => `"${c.replace(/"/g, '""')}"`).join(', ');

/** `on`: a table, or SCHEMA, SEQUENCE or DATABASE and its name; `columns`: only on these. */
export function grantSql(privilege: string, on: string, role: string, columns?: string[]): string {
  return `GRANT ${privilege}${columns ? ` (${columnList(columns)})` : ''} ON ${on} TO ${role}`;
}

/** Membership of a role (pg_read_all_stats, rds_replication). */
export function grantRoleSql(granted: string, role: string): string {
  return `GRANT ${granted} TO ${role}`;
}

export function bypassRlsSql(role: string): string {
  return `ALTER ROLE ${role} BYPASSRLS`;
}

export function replicationSql(role: string): string {
  return `ALTER ROLE ${role} WITH REPLICATION`;
}

/** `kind`: TABLE or PUBLICATION. */
export function ownerSql(kind: string, name: string, role: string): string {
  return `ALTER ${kind} ${name} OWNER TO ${role}`;
}

export function createSchemaSql(schema: string, role: string): string {
  return `CREATE SCHEMA ${schema} AUTHORIZATION ${role}`;
}

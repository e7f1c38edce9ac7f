// Resolving spec names through the catalog. Names are compared as values (parameters); only names
// that the catalog returned are ever quoted into SQL.
import type pg from 'pg';
import { qualifiedName } from './sql';
import type { NamePart, TableName } from '../spec/names';

export interface ColumnInfo {
  name: string;
  /** pg_attribute.atttypid: what a replication stream's Relation message names the type by */
  typeOid: number;
  /** format_type(): the type as SQL spells it, produced by the catalog */
  type: string;
  typeName: string;
  /** a type of pg_catalog (not a domain or a user type of the same name) */
  builtin: boolean;
  notNull: boolean;
  hasDefault: boolean;
  generated: boolean;
  /** text-like: ordered in the "C" collation when it bounds a range */
  collatable: boolean;
}

export interface TableInfo {
  oid: string;
  schema: string;
  name: string;
  quoted: string;
  columns: ColumnInfo[];
}

const FIND_TABLE = `
SELECT c.oid::text AS oid, n.nspname AS schema, c.relname AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relname = $2
   AND (($1::text IS NULL AND n.nspname = ANY (current_schemas(false))) OR n.nspname = $1::text)
 ORDER BY array_position(current_schemas(false), n.nspname::text) NULLS LAST
 LIMIT 1`;

const TABLE_COLUMNS = `
SELECT a.attname AS name, a.atttypid::int AS "typeOid", format_type(a.atttypid, a.atttypmod) AS type, t.typname AS "typeName",
       a.attnotnull AS "notNull", (a.atthasdef OR a.attidentity <> '') AS "hasDefault",
       (a.attgenerated <> '') AS generated, (t.typcollation <> 0) AS collatable,
       (t.typnamespace = 'pg_catalog'::regnamespace) AS builtin
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`;

const UNIQUE_INDEXES = `
SELECT array_agg(a.attname::text ORDER BY a.attname::text COLLATE "C") AS cols
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey) AS k(attnum)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
 GROUP BY i.indexrelid`;

/** text[] arrives as its literal '{a,b}' because every type parses as text; decode simply. */
export function textArray(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  const s = String(v ?? '');
  if (s === '{}' || s === '') return [];
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|([^,{}]+)/g;
  for (let m = re.exec(s.slice(1, -1)); m; m = re.exec(s.slice(1, -1))) {
    out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]);
  }
  return out;
}

export const toBool = (v: unknown): boolean => v === true || v === 't' || v === 'true';

/** The names to look a part up by: as written, then (unquoted only) as PostgreSQL folds it. */
function spellings(p: NamePart): string[] {
  const folded = p.name.toLowerCase();
  return p.exact || folded === p.name ? [p.name] : [p.name, folded];
}

export async function resolveTable(c: pg.ClientBase, ref: TableName): Promise<TableInfo | undefined> {
  const schemas = ref.schema ? spellings(ref.schema) : [null];
  for (const s of schemas) {
    for (const t of spellings(ref.table)) {
      const r = await c.query(FIND_TABLE, [s, t]);
      if (r.rows.length === 0) continue;
      const row = r.rows[0] as { oid: string; schema: string; name: string };
      const cols = await c.query(TABLE_COLUMNS, [row.oid]);
      return {
        ...row,
        quoted: qualifiedName(row.schema, row.name),
        columns: cols.rows.map((x) => ({
          name: String(x.name),
          typeOid: Number(x.typeOid),
          type: String(x.type),
          typeName: String(x.typeName),
          notNull: toBool(x.notNull),
          hasDefault: toBool(x.hasDefault),
          generated: toBool(x.generated),
          collatable: toBool(x.collatable),
          builtin: toBool(x.builtin),
        })),
      };
    }
  }
  return undefined;
}

/** A foreign key as the catalog has it: owner and referenced table quoted and qualified. */
export interface ForeignKey {
  owner: string;
  name: string;
  referenced: string;
  ddl: string;
  valid: boolean;
}

/** The table's name quoted part by part, as qualifiedName() writes it, so the two compare equal. */
const QUALIFIED = (rel: string) =>
  `(SELECT '"' || replace(n.nspname, '"', '""') || '"."' || replace(c.relname, '"', '""') || '"' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ${rel})`;

/** The leaf partitions of a partitioned table (none for a plain table), quoted and qualified. */
const LEAF_PARTITIONS = `
SELECT ${QUALIFIED('t.relid')} AS name
  FROM pg_partition_tree($1::oid) t
 WHERE t.isleaf AND t.relid <> $1::oid`;

/** Where a table's rows live: its leaf partitions (none for a plain table). */
export async function leafPartitions(c: pg.ClientBase, oid: string): Promise<string[]> {
  return (await c.query<{ name: string }>(LEAF_PARTITIONS, [oid])).rows.map((r) => r.name).sort();
}

/** Foreign keys owned by or referencing any of $1 (quoted table names). */
const FOREIGN_KEYS = `
SELECT ${QUALIFIED('con.conrelid')} AS owner, con.conname AS name, ${QUALIFIED('con.confrelid')} AS referenced,
       pg_get_constraintdef(con.oid) AS ddl, con.convalidated AS valid
  FROM pg_constraint con
 WHERE con.contype = 'f' AND (con.conrelid = ANY ($1::regclass[]) OR con.confrelid = ANY ($1::regclass[]))
 ORDER BY 1, 2`;

export async function foreignKeys(c: pg.ClientBase | pg.Pool, tables: string[]): Promise<ForeignKey[]> {
  const r = await c.query(FOREIGN_KEYS, [tables]);
  return r.rows.map((x) => ({ owner: String(x.owner), name: String(x.name), referenced: String(x.referenced), ddl: String(x.ddl), valid: toBool(x.valid) }));
}

/** Is constraint $2 on table $1 (quoted) there, and validated? */
export const CONSTRAINT_PRESENT = `SELECT convalidated AS valid FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2`;

/** What planning sizes ranges from: the planner's row estimate (-1: never analyzed) and the table's bytes. */
export interface TableSizing {
  rows: number;
  bytes: number;
}

const TABLE_SIZING = `SELECT c.reltuples::float8 AS rows, pg_table_size(c.oid)::float8 AS bytes FROM pg_class c WHERE c.oid = $1::regclass`;

/** `table`: an OID, or a quoted qualified name. */
export async function tableSizing(c: pg.ClientBase | pg.Pool, table: string): Promise<TableSizing> {
  const r = (await c.query(TABLE_SIZING, [table])).rows[0];
  return { rows: Number(r.rows), bytes: Number(r.bytes) };
}

/** Columns with what `backfill init` suggests checks from: type, and the planner's distinct-value estimate. */
const COLUMN_PROFILE = `
SELECT a.attname AS name, t.typname AS "typeName", t.typtype AS kind, s.n_distinct::float8 AS distinct
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname
 WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 ORDER BY a.attnum`;

export interface ColumnProfile {
  name: string;
  typeName: string;
  /** pg_type.typtype: e for an enum */
  kind: string;
  /** null: no statistics; negative: a fraction of the rows (as pg_stats has it) */
  distinct: number | null;
}

export async function columnProfile(c: pg.ClientBase | pg.Pool, table: string): Promise<ColumnProfile[]> {
  return (await c.query(COLUMN_PROFILE, [table])).rows.map((r) => ({
    name: String(r.name),
    typeName: String(r.typeName),
    kind: String(r.kind),
    distinct: r.distinct === null ? null : Number(r.distinct),
  }));
}

/** The tables of schema $1 (plain and partitioned; not the partitions, which their parent holds). */
const SCHEMA_TABLES = `
SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname COLLATE "C"`;

const FIND_SCHEMA = `SELECT nspname AS name FROM pg_namespace WHERE nspname = $1`;

/** The schema a spec names, as the catalog spells it (exact, then folded when unquoted). */
export async function resolveSchema(c: pg.ClientBase | pg.Pool, p: NamePart): Promise<string | undefined> {
  for (const name of spellings(p)) {
    const r = await c.query(FIND_SCHEMA, [name]);
    if (r.rows.length) return String(r.rows[0].name);
  }
  return undefined;
}

export async function schemaTables(c: pg.ClientBase | pg.Pool, schema: string): Promise<string[]> {
  return (await c.query(SCHEMA_TABLES, [schema])).rows.map((r) => String(r.name));
}

/**
 * The key a table has: its primary key, else the unique index (no predicate, no expression) with
 * the fewest columns, all NOT NULL. Columns in index order.
 */
const NATURAL_KEY = `
SELECT array_agg(a.attname::text ORDER BY k.ord) AS cols
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
 GROUP BY i.indexrelid, i.indisprimary
HAVING bool_and(a.attnotnull)
 ORDER BY i.indisprimary DESC, count(*), i.indexrelid
 LIMIT 1`;

export async function naturalKey(c: pg.ClientBase, oid: string): Promise<string[] | undefined> {
  const r = await c.query(NATURAL_KEY, [oid]);
  return r.rows.length ? textArray(r.rows[0].cols) : undefined;
}

export async function hasUniqueIndexOn(c: pg.ClientBase, oid: string, cols: string[]): Promise<boolean> {
  const want = [...cols].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).join('\0');
  const r = await c.query(UNIQUE_INDEXES, [oid]);
  return r.rows.some((row) => textArray(row.cols).join('\0') === want);
}

export async function missingPrivileges(c: pg.ClientBase, oid: string, privs: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of privs) {
    const r = await c.query('SELECT has_table_privilege($1::oid, $2::text) AS ok', [oid, p]);
    if (!toBool(r.rows[0].ok)) out.push(p);
  }
  return out;
}

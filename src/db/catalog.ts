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
function textArray(v: unknown): string[] {
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

/**
 * Foreign keys owned by or referencing any of $1 (quoted table names). Only the ones declared: a
 * partitioned table's key has a copy on each partition (conparentid), set aside and re-created with it.
 */
const FOREIGN_KEYS = `
SELECT ${QUALIFIED('con.conrelid')} AS owner, con.conname AS name, ${QUALIFIED('con.confrelid')} AS referenced,
       pg_get_constraintdef(con.oid) AS ddl, con.convalidated AS valid
  FROM pg_constraint con
 WHERE con.contype = 'f' AND con.conparentid = 0 AND (con.conrelid = ANY ($1::regclass[]) OR con.confrelid = ANY ($1::regclass[]))
 ORDER BY 1, 2`;

export async function foreignKeys(c: pg.ClientBase | pg.Pool, tables: string[]): Promise<ForeignKey[]> {
  const r = await c.query(FOREIGN_KEYS, [tables]);
  return r.rows.map((x) => ({ owner: String(x.owner), name: String(x.name), referenced: String(x.referenced), ddl: String(x.ddl), valid: toBool(x.valid) }));
}

/** Is constraint $2 on table $1 (quoted) there, and validated? */
/** A relation's kind: 'p' for a partitioned table. */
export const RELATION_KIND = `SELECT relkind AS kind FROM pg_class WHERE oid = $1::regclass`;

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

// ---- privileges: what the session's role may do, asked of the server (has_*_privilege), never guessed ----

/** The session's role, its database, the role's attributes and its rights on the database. */
const ROLE_RIGHTS = `
SELECT current_user AS role, current_database() AS db, r.rolsuper AS superuser, r.rolreplication AS replication,
       r.rolbypassrls AS bypassrls, current_setting('search_path') AS search_path,
       EXISTS (SELECT 1 FROM pg_roles m WHERE m.rolname = 'rds_replication' AND pg_has_role(current_user, m.oid, 'MEMBER')) AS rds_replication,
       pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS read_all_stats,
       has_database_privilege(current_database(), 'CREATE') AS db_create,
       has_database_privilege(current_database(), 'TEMPORARY') AS db_temporary
  FROM pg_roles r WHERE r.rolname = current_user`;

export interface RoleRights {
  role: string;
  db: string;
  superuser: boolean;
  /** REPLICATION, or Amazon RDS's rds_replication */
  replication: boolean;
  bypassrls: boolean;
  searchPath: string;
  readAllStats: boolean;
  dbCreate: boolean;
  dbTemporary: boolean;
}

export async function roleRights(c: pg.ClientBase | pg.Pool): Promise<RoleRights> {
  const r = (await c.query(ROLE_RIGHTS)).rows[0];
  return {
    role: String(r.role),
    db: String(r.db),
    superuser: toBool(r.superuser),
    replication: toBool(r.replication) || toBool(r.rds_replication),
    bypassrls: toBool(r.bypassrls),
    searchPath: String(r.search_path),
    readAllStats: toBool(r.read_all_stats),
    dbCreate: toBool(r.db_create),
    dbTemporary: toBool(r.db_temporary),
  };
}

const SCHEMA_RIGHTS = `
SELECT has_schema_privilege(n.oid, 'USAGE') AS usage, has_schema_privilege(n.oid, 'CREATE') AS "create", pg_get_userbyid(n.nspowner) AS owner
  FROM pg_namespace n WHERE n.nspname = $1`;

/** The role's USAGE and CREATE on schema `name`, or undefined when there is no such schema. */
export async function schemaRights(c: pg.ClientBase | pg.Pool, name: string): Promise<{ usage: boolean; create: boolean; owner: string } | undefined> {
  const r = (await c.query(SCHEMA_RIGHTS, [name])).rows[0];
  return r ? { usage: toBool(r.usage), create: toBool(r.create), owner: String(r.owner) } : undefined;
}

/** $1 a relation's oid, $2 privileges: those the role lacks on it, as a whole. */
const MISSING_TABLE_RIGHTS = `SELECT p AS privilege FROM unnest($2::text[]) WITH ORDINALITY AS x(p, i) WHERE NOT has_table_privilege($1::oid, p) ORDER BY i`;

export async function missingTableRights(c: pg.ClientBase | pg.Pool, oid: string, privileges: string[]): Promise<string[]> {
  if (privileges.length === 0) return [];
  return (await c.query(MISSING_TABLE_RIGHTS, [oid, privileges])).rows.map((r) => String(r.privilege));
}

/** $1 a table's oid, $2 columns, $3 privileges: each (privilege, column) the role lacks (its table's grant counts). */
const MISSING_COLUMN_RIGHTS = `
SELECT p AS privilege, c AS column FROM unnest($3::text[]) WITH ORDINALITY AS x(p, i) CROSS JOIN unnest($2::text[]) WITH ORDINALITY AS y(c, j)
 WHERE NOT has_column_privilege($1::oid, c, p) ORDER BY i, j`;

/** Per privilege, the columns the role may not use so (a privilege it has on all of them is left out). */
export async function missingColumnRights(c: pg.ClientBase | pg.Pool, oid: string, columns: string[], privileges: string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (columns.length === 0 || privileges.length === 0) return out;
  for (const r of (await c.query(MISSING_COLUMN_RIGHTS, [oid, columns, privileges])).rows) {
    const p = String(r.privilege);
    out.set(p, [...(out.get(p) ?? []), String(r.column)]);
  }
  return out;
}

const RELATION_OWNER = `
SELECT pg_get_userbyid(c.relowner) AS owner, pg_has_role(c.relowner, 'USAGE') AS owns, row_security_active(c.oid) AS rls
  FROM pg_class c WHERE c.oid = $1::oid`;

/**
 * A relation's owner, whether the role may act as it (ALTER needs that), and whether row-level
 * security filters what the role sees of it (rows hidden from it would be neither copied nor compared).
 */
export async function relationOwner(c: pg.ClientBase | pg.Pool, oid: string): Promise<{ owner: string; owns: boolean; rls: boolean }> {
  const r = (await c.query(RELATION_OWNER, [oid])).rows[0];
  return { owner: String(r.owner), owns: toBool(r.owns), rls: toBool(r.rls) };
}

/** $1 a schema, $2 table names: those that exist there, by name. */
const SCHEMA_RELATIONS = `
SELECT c.relname AS name, c.oid::text AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = ANY ($2::text[])`;

export async function relationsIn(c: pg.ClientBase | pg.Pool, schema: string, names: string[]): Promise<Map<string, string>> {
  return new Map((await c.query(SCHEMA_RELATIONS, [schema, names])).rows.map((r) => [String(r.name), String(r.oid)]));
}

/**
 * $1 a table's oid, $2 column names: the serial or identity sequence of each (as pg_get_serial_sequence
 * finds it, by its dependency), else one its default draws from (a sequence no column owns), by oid
 * so no schema lookup can fail, with the role's rights on it.
 */
const SEQUENCE_RIGHTS = `
SELECT * FROM (
SELECT DISTINCT ON (a.attname) a.attname AS column, n.nspname AS schema, s.relname AS name,
       has_sequence_privilege(s.oid, 'UPDATE') AS "update",
       has_sequence_privilege(s.oid, 'SELECT') OR has_sequence_privilege(s.oid, 'USAGE') AS read,
       has_sequence_privilege(s.oid, 'USAGE') AS usage,
       has_schema_privilege(s.relnamespace, 'USAGE') AS schema_usage
  FROM (SELECT d.objid AS seq, d.refobjsubid AS attnum, 0 AS how
          FROM pg_depend d
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND d.refobjid = $1::oid
        UNION ALL
        SELECT d.refobjid, ad.adnum, 1
          FROM pg_attrdef ad
          JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
         WHERE ad.adrelid = $1::oid) q
  JOIN pg_class s ON s.oid = q.seq AND s.relkind = 'S'
  JOIN pg_namespace n ON n.oid = s.relnamespace
  JOIN pg_attribute a ON a.attrelid = $1::oid AND a.attnum = q.attnum
 WHERE a.attname = ANY ($2::text[])
 ORDER BY a.attname, q.how) r
 ORDER BY array_position($2::text[], r.column::text)`;

export interface SequenceRights {
  column: string;
  schema: string;
  name: string;
  /** setval */
  update: boolean;
  /** pg_sequence_last_value: SELECT or USAGE */
  read: boolean;
  /** nextval: USAGE (or UPDATE) */
  usage: boolean;
  schemaUsage: boolean;
}

export async function sequenceRights(c: pg.ClientBase | pg.Pool, oid: string, columns: string[]): Promise<SequenceRights[]> {
  return (await c.query(SEQUENCE_RIGHTS, [oid, columns])).rows.map((r) => ({
    column: String(r.column),
    schema: String(r.schema),
    name: String(r.name),
    update: toBool(r.update),
    read: toBool(r.read),
    usage: toBool(r.usage),
    schemaUsage: toBool(r.schema_usage),
  }));
}

/** $1 tables (quoted names): every foreign key owned by or referencing one (declared ones, as FOREIGN_KEYS), and what the role may do to set it aside and re-create it. */
const FOREIGN_KEY_RIGHTS = `
SELECT con.conname AS name, os.nspname AS owner_schema, oc.relname AS owner_table, pg_get_userbyid(oc.relowner) AS owner_role,
       pg_has_role(oc.relowner, 'USAGE') AS owns, rs.nspname AS ref_schema, rc.relname AS ref_table,
       coalesce((SELECT json_agg(a.attname ORDER BY k.i) FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, i)
                   JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
                  WHERE NOT has_column_privilege(con.confrelid, k.attnum, 'REFERENCES')), '[]')::text AS no_references
  FROM pg_constraint con
  JOIN pg_class oc ON oc.oid = con.conrelid JOIN pg_namespace os ON os.oid = oc.relnamespace
  JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rs ON rs.oid = rc.relnamespace
 WHERE con.contype = 'f' AND con.conparentid = 0 AND (con.conrelid = ANY ($1::regclass[]) OR con.confrelid = ANY ($1::regclass[]))
 ORDER BY 2, 3, 1`;

export interface ForeignKeyRights {
  name: string;
  owner: { schema: string; table: string; role: string };
  owns: boolean;
  referenced: { schema: string; table: string };
  /** referenced columns without the REFERENCES privilege */
  noReferences: string[];
}

export async function foreignKeyRights(c: pg.ClientBase | pg.Pool, tables: string[]): Promise<ForeignKeyRights[]> {
  return (await c.query(FOREIGN_KEY_RIGHTS, [tables])).rows.map((r) => ({
    name: String(r.name),
    owner: { schema: String(r.owner_schema), table: String(r.owner_table), role: String(r.owner_role) },
    owns: toBool(r.owns),
    referenced: { schema: String(r.ref_schema), table: String(r.ref_table) },
    noReferences: JSON.parse(String(r.no_references)) as string[],
  }));
}

const PUBLICATION_OWNER = `SELECT pg_get_userbyid(p.pubowner) AS owner, pg_has_role(p.pubowner, 'USAGE') AS owns FROM pg_publication p WHERE p.pubname = $1`;

/** A publication's owner and whether the role may act as it (ALTER and DROP PUBLICATION), or undefined when there is none. */
export async function publicationOwner(c: pg.ClientBase | pg.Pool, name: string): Promise<{ owner: string; owns: boolean } | undefined> {
  const r = (await c.query(PUBLICATION_OWNER, [name])).rows[0];
  return r ? { owner: String(r.owner), owns: toBool(r.owns) } : undefined;
}

/** $1 a table name, $2 a schema to leave out: the schemas of the search path that have a table of that name, in its order. */
const OTHER_SCHEMAS_WITH = `
SELECT n.nspname AS schema FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relname = $1 AND n.nspname <> $2
 ORDER BY array_position(current_schemas(false), n.nspname::text) NULLS LAST, n.nspname
 LIMIT 1`;

/** Another schema with a table of this name (on the search path first), if any. */
export async function otherSchemaWith(c: pg.ClientBase | pg.Pool, table: string, except: string): Promise<string | undefined> {
  const r = (await c.query(OTHER_SCHEMAS_WITH, [table, except])).rows[0];
  return r ? String(r.schema) : undefined;
}

// Resolving spec names through the catalog. Names are compared as values (parameters); only names
// that the catalog returned are ever quoted into SQL.
import type pg from 'pg';
import { qualifiedName, splitTableName } from './sql';

export interface ColumnInfo {
  name: string;
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
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, t.typname AS "typeName",
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

const toBool = (v: unknown) => v === true || v === 't' || v === 'true';

export async function resolveTable(c: pg.ClientBase, specName: string): Promise<TableInfo | undefined> {
  const [schema, table] = splitTableName(specName);
  // Exact name first, then the name folded as PostgreSQL folds an unquoted identifier.
  const tries: [string | null, string][] = [[schema, table]];
  const folded: [string | null, string] = [schema?.toLowerCase() ?? null, table.toLowerCase()];
  if (folded[0] !== schema || folded[1] !== table) tries.push(folded);
  for (const [s, t] of tries) {
    const r = await c.query(FIND_TABLE, [s, t]);
    if (r.rows.length === 0) continue;
    const row = r.rows[0] as { oid: string; schema: string; name: string };
    const cols = await c.query(TABLE_COLUMNS, [row.oid]);
    return {
      ...row,
      quoted: qualifiedName(row.schema, row.name),
      columns: cols.rows.map((x) => ({
        name: String(x.name),
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
  return undefined;
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

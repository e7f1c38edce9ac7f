// Names in a spec: tables and columns exactly as the catalog has them. Pure (the workflow imports
// the spec schema, which uses this). Names are never SQL: they are looked up in the catalog as
// values and quoted part by part afterwards.
//
// A table is written as
//   - `schema.table` or `table`: plain identifiers; found as written, else as PostgreSQL folds an
//     unquoted name (lower case);
//   - SQL-quoted parts, for any other name: `"Odd .Schema"."Order Items"`, `public."User"`
//     (a `"` inside a quoted part is written twice, as in SQL); quoted parts are exact;
//   - an object `{ schema, table }` (schema optional): exact names, nothing to quote.

/** PostgreSQL's NAMEDATALEN - 1: longer names are truncated by the server. */
const MAX_NAME_BYTES = 63;

const PLAIN = /^[\p{L}_][\p{L}\p{N}_$]*$/u;

function nameBytes(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** Why a column or table name part cannot be a catalog name, or undefined. */
export function namePartProblem(s: string): string | undefined {
  if (s.length === 0) return 'must not be empty';
  if (s.includes('\0')) return 'must not contain a NUL character';
  if (nameBytes(s) > MAX_NAME_BYTES) return `must be at most ${MAX_NAME_BYTES} bytes (PostgreSQL truncates longer names)`;
  return undefined;
}

export interface NamePart {
  name: string;
  /** quoted or given as an object: only this exact name; otherwise also the folded name */
  exact: boolean;
}

export interface TableName {
  /** null: found through the search_path */
  schema: NamePart | null;
  table: NamePart;
}

export type TableRef = string | { schema?: string; table: string };

/** Splits `a.b`, `"a"."b"`, `a."B c"` into parts; undefined when it is none of these forms. */
function splitQualified(text: string): NamePart[] | undefined {
  const parts: NamePart[] = [];
  let i = 0;
  for (;;) {
    if (text[i] === '"') {
      let name = '';
      i++;
      for (;;) {
        if (i >= text.length) return undefined; // unterminated quote
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            name += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        name += text[i++];
      }
      if (namePartProblem(name)) return undefined;
      parts.push({ name, exact: true });
    } else {
      const end = text.indexOf('.', i) < 0 ? text.length : text.indexOf('.', i);
      const name = text.slice(i, end);
      if (!PLAIN.test(name) || nameBytes(name) > MAX_NAME_BYTES) return undefined;
      parts.push({ name, exact: false });
      i = end;
    }
    if (i === text.length) break;
    if (text[i] !== '.') return undefined;
    i++;
  }
  return parts.length >= 1 && parts.length <= 2 ? parts : undefined;
}

/** The table a spec names, or undefined when the text is not one of the documented forms. */
export function parseTableRef(ref: TableRef): TableName | undefined {
  if (typeof ref === 'object') {
    return { schema: ref.schema === undefined ? null : { name: ref.schema, exact: true }, table: { name: ref.table, exact: true } };
  }
  const parts = splitQualified(ref);
  if (!parts) return undefined;
  return parts.length === 2 ? { schema: parts[0], table: parts[1] } : { schema: null, table: parts[0] };
}

export const TABLE_REF_FORMS =
  'must be "schema.table" or "table" with plain identifiers, SQL-quoted parts for other names ("Odd .Schema"."Order Items"), or { schema, table }';

/** A name part as a person reads it (and a spec may write it): bare when plain lower case, else quoted. */
export function showName(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

export function showTableName(schema: string, table: string): string {
  return `${showName(schema)}.${showName(table)}`;
}

/** The same table for duplicate checks: schema (public when not given) and table, folded where a name may fold. */
export function tableRefKey(ref: TableRef): string {
  const n = parseTableRef(ref);
  if (!n) return JSON.stringify(ref);
  const part = (p: NamePart) => (p.exact ? p.name : p.name.toLowerCase());
  return JSON.stringify([n.schema ? part(n.schema) : 'public', part(n.table)]);
}

/** A spec's table reference as text (for messages): as written, or the quoted form of an object. */
export function showTableRef(ref: TableRef): string {
  if (typeof ref === 'string') return ref;
  return ref.schema === undefined ? showName(ref.table) : showTableName(ref.schema, ref.table);
}

/** `schema.*` (the schema plain or quoted): every table of the schema. Undefined when not a pattern. */
export function parseSchemaPattern(ref: unknown): NamePart | undefined {
  if (typeof ref === 'object' && ref !== null && 'schema' in ref && !('table' in ref)) {
    const s = ref.schema;
    return typeof s === 'string' ? { name: s, exact: true } : undefined;
  }
  if (typeof ref !== 'string' || !ref.endsWith('.*')) return undefined;
  const parts = splitQualified(ref.slice(0, -2));
  return parts && parts.length === 1 ? parts[0] : undefined;
}

export const SCHEMA_PATTERN_FORMS = 'a pattern is "schema.*" or { schema, exclude }';

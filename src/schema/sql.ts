// The SQL of the target's constraints (set aside, re-created, validated) and of the drift check on
// what change capture still covers. Built on src/db/sql.ts.
import { quoteIdent, unloggedUnder } from '../db/sql';

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

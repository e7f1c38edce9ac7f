// Binding a spec table to the real tables: resolve names through the catalog, pick the columns,
// map types, and check everything a copy needs before any row is written.
import type pg from 'pg';
import { ApplicationFailure } from '@temporalio/common';
import { chunkOf, type MigrationSpec, type TableSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import { hasUniqueIndexOn, missingPrivileges, resolveTable, type TableInfo } from '../db/catalog';
import { quoteIdent, sourceSelect, targetChecksumSql, type BoundTable } from '../db/sql';
import { guarded } from '../db/errors';

export interface Binding extends BoundTable {
  /** unquoted display names, as the report shows them */
  sourceName: string;
  targetName: string;
}

const INTEGER_TYPES = new Set(['int2', 'int4', 'int8']);

export interface BindInput {
  sourceAlias: string;
  targetAlias: string;
  table: TableSpec;
  tableIndex: number;
}

/** Checks a table pair and returns its binding, or the list of problems (never both). */
export async function checkTable(input: BindInput): Promise<{ binding?: Binding; problems: string[] }> {
  const { table: t, tableIndex: i, sourceAlias, targetAlias } = input;
  const at = `tables[${i}]`;
  const problems: string[] = [];
  const src = await poolFor(sourceAlias, 'read').connect();
  const tgt = await poolFor(targetAlias, 'write').connect();
  try {
    const s = await resolveTable(src, t.source);
    const d = await resolveTable(tgt, t.target);
    if (!s) problems.push(`${at}.source: table "${t.source}" not found on connection "${sourceAlias}"`);
    if (!d) problems.push(`${at}.target: table "${t.target}" not found on connection "${targetAlias}"`);
    if (!s || !d) return { problems };

    const sCol = new Map(s.columns.map((c) => [c.name, c]));
    const dCol = new Map(d.columns.map((c) => [c.name, c]));
    const columns = t.columns ?? s.columns.filter((c) => dCol.has(c.name) && !dCol.get(c.name)!.generated).map((c) => c.name);
    for (const c of columns) {
      if (!sCol.has(c)) problems.push(`${at}.columns: column "${c}" not found in source table ${s.schema}.${s.name}`);
      if (!dCol.has(c)) problems.push(`${at}.columns: column "${c}" not found in target table ${d.schema}.${d.name}`);
      else if (dCol.get(c)!.generated) problems.push(`${at}.columns: column "${c}" is generated in the target and cannot be written`);
    }
    for (const c of d.columns) {
      if (!columns.includes(c.name) && c.notNull && !c.hasDefault && !c.generated)
        problems.push(`${at}.columns: target column "${c.name}" is NOT NULL without a default but is not copied`);
    }
    for (const k of t.key) {
      if (!sCol.has(k)) problems.push(`${at}.key: column "${k}" not found in source table ${s.schema}.${s.name}`);
      else if (!sCol.get(k)!.notNull) problems.push(`${at}.key: column "${k}" must be NOT NULL in the source`);
      if (!columns.includes(k)) problems.push(`${at}.key: key column "${k}" is not among the copied columns`);
    }
    if (t.key.every((k) => sCol.has(k)) && !(await hasUniqueIndexOn(src, s.oid, t.key)))
      problems.push(`${at}.key: (${t.key.join(', ')}) is not unique in the source (no unique index or primary key on exactly these columns)`);
    const chunk = chunkOf(t);
    const cc = sCol.get(chunk.column);
    if (cc && !INTEGER_TYPES.has(cc.typeName))
      problems.push(`${at}.chunk.column: "${chunk.column}" is ${cc.type}; chunking by size needs an integer column (smallint, integer, bigint)`);

    const miss = [
      ...(await missingPrivileges(src, s.oid, ['SELECT'])).map((p) => `${at}.source: no ${p} privilege on ${s.schema}.${s.name}`),
      ...(await missingPrivileges(tgt, d.oid, ['SELECT', 'INSERT', 'DELETE'])).map(
        (p) => `${at}.target: no ${p} privilege on ${d.schema}.${d.name}`,
      ),
    ];
    problems.push(...miss);
    if (problems.length) return { problems };

    const binding = bind(s, d, columns, t);
    problems.push(...(await checkStatements(src, tgt, binding, at)));
    return problems.length ? { problems } : { binding, problems };
  } finally {
    src.release();
    tgt.release();
  }
}

function bind(s: TableInfo, d: TableInfo, columns: string[], t: TableSpec): Binding {
  const sType = new Map(s.columns.map((c) => [c.name, c.type]));
  const dType = new Map(d.columns.map((c) => [c.name, c.type]));
  return {
    source: s.quoted,
    target: d.quoted,
    sourceName: `${s.schema}.${s.name}`,
    targetName: `${d.schema}.${d.name}`,
    columns,
    // Cast to the target's type where the types differ, so binary COPY and the hash agree.
    sourceExprs: columns.map((c) => (sType.get(c) === dType.get(c) ? quoteIdent(c) : `${quoteIdent(c)}::${dType.get(c)}`)),
    key: t.key,
    chunkColumn: chunkOf(t).column,
    where: t.where,
  };
}

/**
 * Prepares (without running) the statements a range will run, in the extended protocol, which
 * refuses more than one statement: a `where` that smuggles a second statement fails here.
 */
async function checkStatements(src: pg.ClientBase, tgt: pg.ClientBase, b: Binding, at: string): Promise<string[]> {
  const out: string[] = [];
  try {
    await src.query({ text: `${sourceSelect(b)} LIMIT 0`, values: [], queryMode: 'extended' } as pg.QueryConfig);
  } catch (e) {
    const what = b.where ? `${at}.where / column types` : `${at}.columns`;
    out.push(`${what}: the source query is not valid: ${(e as Error).message}`);
  }
  try {
    await tgt.query({ text: `${targetChecksumSql(b)} LIMIT 0`, values: [], queryMode: 'extended' } as pg.QueryConfig);
  } catch (e) {
    out.push(`${at}.target: the target cannot be read as planned: ${(e as Error).message}`);
  }
  return out;
}

const cache = new Map<string, Promise<Binding>>();

/** The binding of one table, resolved once per worker process. */
export function bindingFor(spec: Pick<MigrationSpec, 'source' | 'target'>, table: TableSpec, tableIndex: number): Promise<Binding> {
  const id = JSON.stringify([spec.source, spec.target, table]);
  let p = cache.get(id);
  if (!p) {
    // Guarded: a connection error here leaves redacted and classified like any other.
    p = guarded(`checking tables[${tableIndex}]`, () =>
      checkTable({ sourceAlias: spec.source, targetAlias: spec.target, table, tableIndex }),
    ).then(({ binding, problems }) => {
      if (!binding) throw ApplicationFailure.create({ type: 'PreflightError', nonRetryable: true, message: problems.join('\n') });
      return binding;
    });
    p.catch(() => cache.delete(id));
    cache.set(id, p);
  }
  return p;
}

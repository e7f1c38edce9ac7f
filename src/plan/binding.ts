// Binding a spec table to the real tables: resolve names through the catalog, pick the columns,
// map types and transforms, and check everything a copy needs before any row is written.
import type pg from 'pg';
import type { ApplicationFailure } from '@temporalio/common';
import { failure } from '../domain/failures';
import { DEFAULT_CHUNK_SIZE, chunkOf, type Chunking, type MigrationSpec, type TableSpec } from '../spec/schema';
import { TABLE_REF_FORMS, parseSchemaPattern, parseTableRef, showName, showTableName, showTableRef, type TableRef } from '../spec/names';
import { poolFor } from '../db/pools';
import {
  hasUniqueIndexOn,
  leafPartitions,
  naturalKey,
  otherSchemaWith,
  resolveTable,
  roleRights,
  tableSizing,
  type ColumnInfo,
  type TableInfo,
  type TableSizing,
} from '../db/catalog';
import { hashedColumns, SERVER_VERSION_SQL, duplicatesSql, hashAs, keptByCast, profileSql, quoteIdent, sourceSelect, type BoundTable } from '../db/sql';
import { columnProbeSql, noRowsSql } from './sql';
import { LEDGER_SCHEMA } from '../db/ledger';
import { guarded } from '../db/errors';
import { expressionProblems } from './trust';
import { columnChanges, columnPlanText, describeColumn, type ColumnPlanEntry } from '../domain/columns';

/** A table's connections, as preflight holds them while it checks the table. */
export interface TableSides {
  src: pg.ClientBase;
  tgt: pg.ClientBase;
  s: TableInfo;
  d: TableInfo;
}

export interface Binding extends BoundTable {
  /** display names, as the report shows them: quoted where a name is not plain lower case */
  sourceName: string;
  targetName: string;
  chunk: Exclude<Chunking, { kind: 'auto' }>;
  /** the spec gave no chunk: the range size is chosen from the table's size at planning */
  sizing?: TableSizing;
  /** every column of the target table, in its order (how the server prints a failing row) */
  targetColumns: string[];
  /** every column of the source table at planning, in its order: copied or named in `omit` */
  sourceColumns: ColumnInfo[];
  /** source columns the spec leaves out (`omit`): not copied, listed in the column plan */
  omitted: string[];
  /** what becomes of every source and target column (the report lists it, the digest covers it) */
  columnPlan: ColumnPlanEntry[];
  /** the leaf partitions that hold each side's rows (none for a plain table) */
  partitions: { source: string[]; target: string[] };
  /** the source table as the catalog (and the replication stream) names it */
  sourceRel: { schema: string; name: string; oid: string };
  /** per copied column (`columns`): its target type (format_type), for casts of values as text */
  targetTypes: string[];
  /** a unique index guarantees no duplicate keys on that side; otherwise they are checked */
  sourceKeyUnique: boolean;
  targetKeyUnique: boolean;
  /** copied columns of floating-point type: their sums may differ in the last digits */
  floatColumns: string[];
  /** copied columns of number types: their aggregates compare as numbers ('5050.00' = '5050.00000') */
  numericColumns: string[];
  tolerance: Record<string, number>;
}

/** SQLSTATE 42501: the role lacks a privilege. */
const INSUFFICIENT_PRIVILEGE = '42501';

const INTEGER_TYPES = new Set(['int2', 'int4', 'int8']);
const TIME_TYPES = new Set(['timestamptz', 'timestamp']);
const FLOAT_TYPES = new Set(['float4', 'float8']);
const NUMBER_TYPES = new Set([...INTEGER_TYPES, ...FLOAT_TYPES, 'numeric']);

export interface BindInput {
  sourceAlias: string;
  targetAlias: string;
  table: TableSpec;
  tableIndex: number;
  /** a dry run (`backfill validate`): evaluate every cast and transform over all the source's rows */
  probeValues?: boolean;
  /** the catalog alone (names, columns, types, partitions): nothing that reads the table's rows */
  catalogOnly?: boolean;
  /**
   * Preflight: the privileges the table needs of each role, asked once it is bound; what it returns
   * refuses the table before anything reads its rows (which would fail on the missing privilege).
   */
  privileges?: (b: Binding, sides: TableSides) => Promise<string[]>;
}

/**
 * No chunk given: key spans for a single integer key (arithmetic, no scan), row counts on the whole
 * key for any other (text, uuid, composite, timestamp). The sizes are placeholders until planning
 * sizes them from the table (see TableSizing).
 */
function resolveChunking(t: TableSpec, key: string[], sCol: Map<string, ColumnInfo>): Exclude<Chunking, { kind: 'auto' }> {
  const asked = chunkOf(t, key);
  if (asked.kind !== 'auto') return asked;
  const k = sCol.get(key[0]);
  if (key.length === 1 && k && INTEGER_TYPES.has(k.typeName)) return { kind: 'size', column: key[0], size: DEFAULT_CHUNK_SIZE };
  return { kind: 'rows', column: key[0], rows: DEFAULT_CHUNK_SIZE };
}

/** A table entry's reference, or undefined for a schema pattern. */
function asTableRef(r: TableSpec['source']): TableRef | undefined {
  return parseSchemaPattern(r) === undefined ? (r as TableRef) : undefined;
}

/** Checks a table pair and returns its binding, or the list of problems (never both). */
export async function checkTable(input: BindInput): Promise<{ binding?: Binding; problems: string[] }> {
  const { table: t, tableIndex: i, sourceAlias, targetAlias } = input;
  const at = `tables[${i}]`;
  const problems: string[] = [];
  const src = await poolFor(sourceAlias, 'read').connect();
  const tgt = await poolFor(targetAlias, 'write').connect();
  try {
    const sourceRef = asTableRef(t.source);
    const targetRef = t.target === undefined ? undefined : asTableRef(t.target);
    if (!sourceRef || !targetRef) return { problems: [`${at}: a schema pattern is expanded into its tables before they are checked`] };
    // The spec schema checked the forms; a table handed in otherwise is refused here, never guessed.
    const sourceName = parseTableRef(sourceRef);
    const targetName = parseTableRef(targetRef);
    if (!sourceName) problems.push(`${at}.source: ${TABLE_REF_FORMS}`);
    if (!targetName) problems.push(`${at}.target: ${TABLE_REF_FORMS}`);
    if (!sourceName || !targetName) return { problems };
    const s = await resolveTable(src, sourceName);
    const d = await resolveTable(tgt, targetName);
    if (!s) problems.push(`${at}.source: table "${showTableRef(sourceRef)}" not found on connection "${sourceAlias}"`);
    if (!d) problems.push(`${at}.target: table "${showTableRef(targetRef)}" not found on connection "${targetAlias}"`);
    if (!s || !d) return { problems };
    // A name without a schema found in our own ledger schema (a role named backfill has "$user" = backfill).
    for (const [side, name, info, c, alias] of [
      ['source', sourceName, s, src, sourceAlias],
      ['target', targetName, d, tgt, targetAlias],
    ] as const)
      if (!name.schema && info.schema === LEDGER_SCHEMA) problems.push(await inLedgerSchema(`${at}.${side}`, info, c, alias));
    if (problems.length) return { problems };
    const sName = showTableName(s.schema, s.name);
    const dName = showTableName(d.schema, d.name);
    // No key in the spec: the source's primary key, else a unique index on NOT NULL columns.
    const key = t.key ?? (await naturalKey(src, s.oid));
    if (!key) {
      return {
        problems: [
          `${at}.key: ${sName} has no primary key and no unique index on NOT NULL columns; name its key in the spec (key: [...]), ` +
            `or give the table one (ALTER TABLE ${sName} ADD PRIMARY KEY (...)); a table without any key cannot be copied range by range`,
        ],
      };
    }

    const sCol = new Map(s.columns.map((c) => [c.name, c]));
    const dCol = new Map(d.columns.map((c) => [c.name, c]));
    const transform = t.transform ?? {};
    const omit = new Set(t.omit ?? []);
    const base = t.columns ?? s.columns.filter((c) => dCol.has(c.name) && !dCol.get(c.name)!.generated && !omit.has(c.name)).map((c) => c.name);
    const columns = [...base, ...Object.keys(transform).filter((c) => !base.includes(c))];
    for (const c of columns) {
      if (!transform[c] && !sCol.has(c)) problems.push(`${at}.columns: column "${c}" not found in source table ${sName}`);
      if (!dCol.has(c)) problems.push(`${at}.${transform[c] ? `transform.${c}` : 'columns'}: column "${c}" not found in target table ${dName}`);
      else if (dCol.get(c)!.generated) problems.push(`${at}.columns: column "${c}" is generated in the target and cannot be written`);
    }
    // (Comparing with a plan: a column left out that is gone since is no loss.)
    const present = input.catalogOnly ? new Set([...omit].filter((c) => sCol.has(c) || dCol.has(c))) : omit;
    problems.push(...coverageProblems({ at, sName, dName, s, d, columns, omit: present, listed: t.columns !== undefined, transform }));
    for (const k of key) {
      if (!sCol.has(k)) problems.push(`${at}.key: column "${k}" not found in source table ${sName}`);
      else if (!sCol.get(k)!.notNull) problems.push(`${at}.key: column "${k}" must be NOT NULL in the source`);
      if (!columns.includes(k)) problems.push(`${at}.key: key column "${k}" is not among the copied columns`);
    }

    const chunk = resolveChunking(t, key, sCol);
    const rangeNames = chunk.kind === 'rows' ? key : [chunk.column];
    for (const n of rangeNames) {
      const c = sCol.get(n);
      if (!c) {
        if (chunk.kind !== 'rows') problems.push(`${at}.chunk.column: column "${n}" not found in source table ${sName}`);
        continue;
      }
      if (!dCol.has(n)) problems.push(`${at}.chunk.column: column "${n}" not found in target table ${dName}`);
      if (!c.notNull) problems.push(`${at}.chunk.column: "${n}" must be NOT NULL in the source (a row with NULL would belong to no range)`);
      if (chunk.kind === 'size' && !INTEGER_TYPES.has(c.typeName))
        problems.push(`${at}.chunk.column: "${n}" is ${c.type}; chunk.size needs an integer column (smallint, integer, bigint); use chunk.rows for other keys`);
      if (chunk.kind === 'interval' && !TIME_TYPES.has(c.typeName))
        problems.push(`${at}.chunk.column: "${n}" is ${c.type}; chunk.interval needs a timestamptz or timestamp column`);
    }
    if (t.delta) {
      const c = sCol.get(t.delta.column);
      if (!c) problems.push(`${at}.delta.column: column "${t.delta.column}" not found in source table ${sName}`);
      else if (!TIME_TYPES.has(c.typeName))
        problems.push(
          `${at}.delta.column: "${t.delta.column}" is ${c.type}; the change column must be a timestamptz or timestamp that every write sets (updated_at)`,
        );
      if (!columns.includes(t.delta.column)) problems.push(`${at}.delta.column: "${t.delta.column}" is not a copied column`);
    }
    const checks = t.checks ?? {};
    for (const c of [...(checks.distribution ?? []), ...(checks.aggregates ?? []).map((a) => a.column)]) {
      if (!columns.includes(c)) problems.push(`${at}.checks: "${c}" is not a copied column`);
    }

    // No unique index on the key: it must at least be unique in fact, now (ranges check it again).
    const sourceKeyUnique = key.some((k) => !sCol.has(k)) || (await hasUniqueIndexOn(src, s.oid, key));
    if (!sourceKeyUnique && !input.catalogOnly) {
      const probe: BoundTable = {
        source: s.quoted,
        target: d.quoted,
        columns: [],
        sourceExprs: [],
        key,
        keyTypes: [],
        where: t.where,
        range: { names: [], sourceTypes: [], targetTypes: [], collate: [] },
        checks: { distribution: [], aggregates: [] },
      };
      // A probe that cannot finish (a timeout, a lock) proves nothing: say so, never assume unique.
      const dup = await src.query(duplicatesSql(probe, 'source', undefined, 5)).catch((e: Error) => e);
      // A role that may not read the key: the privilege check names it (and a range would fail on it).
      const denied = dup instanceof Error && (dup as { code?: string }).code === INSUFFICIENT_PRIVILEGE;
      if (dup instanceof Error && !denied)
        problems.push(
          `${at}.key: (${key.join(', ')}) has no unique index in the source, and checking it for duplicates failed: ${dup.message}; ` +
            'add a unique index on the key, or let the check finish (BACKFILL_STATEMENT_TIMEOUT, BACKFILL_LOCK_TIMEOUT)',
        );
      else if (!(dup instanceof Error) && dup.rows.length)
        problems.push(
          `${at}.key: (${key.join(', ')}) is not unique in the source: ${dup.rows[0].keys} key(s) repeat, e.g. ${dup.rows.map((r) => r.key).join(', ')}`,
        );
    }
    if (problems.length) return { problems };

    const binding = bind(s, d, columns, t, key, chunk, rangeNames, transform);
    // Generated on the target: not written (the target computes them), but compared with the
    // source's column of the same name, when there is one and no column list says otherwise.
    if (!t.columns) {
      const compared = d.columns.filter((c) => c.generated && sCol.has(c.name) && !transform[c.name] && !omit.has(c.name)).map((c) => c.name);
      if (compared.length) binding.compared = compared;
    }
    binding.columnPlan = columnPlanOf(s, d, binding, transform, omit);
    binding.partitions = { source: await leafPartitions(src, s.oid), target: await leafPartitions(tgt, d.oid) };
    binding.sourceKeyUnique = sourceKeyUnique;
    binding.targetKeyUnique = await hasUniqueIndexOn(tgt, d.oid, key);
    if (input.privileges) {
      const missing = await input.privileges(binding, { src, tgt, s, d });
      if (missing.length) return { problems: missing };
    }
    if (input.catalogOnly) return { binding, problems };
    if (chunkOf(t, key).kind === 'auto') binding.sizing = await tableSizing(src, s.oid);
    // hash_record_extended arrived in PostgreSQL 14; both sides must hash the same way.
    if ((await serverVersion(src)) >= 140000 && (await serverVersion(tgt)) >= 140000) binding.hashAs = hashedColumns(binding).map((c) => hashAs(dCol.get(c)!));
    problems.push(...(await checkStatements(src, tgt, binding, at)));
    if (problems.length === 0 && (t.where || t.transform)) problems.push(...(await expressionProblems(src, at, s.oid, noRowsSql(sourceSelect(binding)))));
    if (problems.length === 0 && input.probeValues) problems.push(...(await valueProblems(src, binding, at)));
    return problems.length ? { problems } : { binding, problems };
  } finally {
    src.release();
    tgt.release();
  }
}

/**
 * A name without a schema that the search path found in the ledger schema: refused, with the
 * schema-qualified name to use. (A role named like the schema has "$user" resolve to it first.)
 */
async function inLedgerSchema(at: string, t: TableInfo, c: pg.ClientBase, alias: string): Promise<string> {
  const r = await roleRights(c);
  const elsewhere = await otherSchemaWith(c, t.name, LEDGER_SCHEMA);
  const user = r.role === LEDGER_SCHEMA && r.searchPath.includes('$user') ? `; the role is named ${LEDGER_SCHEMA}, so "$user" there is that schema` : '';
  const fix = elsewhere
    ? `name the table with its schema: ${showTableName(elsewhere, t.name)}`
    : `move the table out of it (ALTER TABLE ${showTableName(t.schema, t.name)} SET SCHEMA <schema>) and name it with that schema`;
  return (
    `${at}: "${t.name}" names no schema, and the search path of role ${showName(r.role)} on connection "${alias}" (${r.searchPath}${user}) ` +
    `finds it in schema ${LEDGER_SCHEMA}, where this tool keeps its own ledger; ${fix}`
  );
}

/**
 * Nothing is dropped without the spec saying so: every source column is copied (or compared with a
 * generated target column) or named in `omit`; every target column is written, generated, filled by
 * its default, or named in `omit` (left NULL).
 */
function coverageProblems(o: {
  at: string;
  sName: string;
  dName: string;
  s: TableInfo;
  d: TableInfo;
  columns: string[];
  omit: Set<string>;
  listed: boolean;
  transform: Record<string, string>;
}): string[] {
  const { at, sName, dName, s, d, columns, omit } = o;
  const out: string[] = [];
  const sCol = new Map(s.columns.map((c) => [c.name, c]));
  const dCol = new Map(d.columns.map((c) => [c.name, c]));
  const fix = `name it in ${at}.omit to leave it out`;
  for (const c of omit) {
    if (!sCol.has(c) && !dCol.has(c)) out.push(`${at}.omit: column "${c}" is in neither ${sName} nor ${dName}`);
    else if (columns.includes(c))
      out.push(`${at}.omit: column "${c}" is ${o.transform[c] ? 'computed by a transform' : 'listed in columns'}: it cannot also be left out`);
  }
  for (const c of s.columns) {
    if (columns.includes(c.name) || omit.has(c.name)) continue;
    const there = dCol.get(c.name);
    if (there?.generated && !o.listed) continue; // compared with the target's generated column
    if (!there)
      out.push(`${at}: source column "${c.name}" of ${sName} has no column in ${dName}: its values would be lost; add the column to the target, or ${fix}`);
    else out.push(`${at}.columns: source column "${c.name}" of ${sName} is not copied; add it to columns, or ${fix}`);
  }
  for (const c of d.columns) {
    if (columns.includes(c.name) || c.generated) continue;
    if (c.notNull && !c.hasDefault) out.push(`${at}.columns: target column "${c.name}" is NOT NULL without a default but is not copied`);
    else if (!c.hasDefault && !omit.has(c.name))
      out.push(
        `${at}: target column "${c.name}" of ${dName} is not written (${sCol.has(c.name) ? 'not copied' : `${sName} has no such column`}) and has no default: ` +
          `every row would hold NULL there; copy it, give it a default, or name it in ${at}.omit to leave it NULL`,
      );
  }
  return out;
}

/** The column plan of a bound table, source columns in their order, then the target's own. */
function columnPlanOf(s: TableInfo, d: TableInfo, b: Binding, transform: Record<string, string>, omit: Set<string>): ColumnPlanEntry[] {
  const dCol = new Map(d.columns.map((c) => [c.name, c]));
  const sCol = new Map(s.columns.map((c) => [c.name, c]));
  const out: ColumnPlanEntry[] = [];
  const seen = new Set<string>();
  const add = (e: ColumnPlanEntry) => {
    seen.add(e.column);
    out.push(e);
  };
  for (const c of s.columns) {
    const to = dCol.get(c.name);
    if (b.columns.includes(c.name) && !transform[c.name])
      add(c.type === to!.type ? { column: c.name, fate: 'copied', to: to!.type } : { column: c.name, fate: 'cast', from: c.type, to: to!.type });
    else if (b.compared?.includes(c.name)) add({ column: c.name, fate: 'generated', to: to!.type, compared: true });
    else if (!transform[c.name]) add({ column: c.name, fate: 'omitted', side: 'source' });
  }
  for (const c of d.columns) {
    if (seen.has(c.name) && !transform[c.name]) continue;
    if (transform[c.name]) add({ column: c.name, fate: 'transform', expression: transform[c.name], to: c.type });
    else if (c.generated) add({ column: c.name, fate: 'generated', to: c.type, compared: sCol.has(c.name) && !!b.compared?.includes(c.name) });
    else if (b.columns.includes(c.name)) continue;
    else if (omit.has(c.name)) add({ column: c.name, fate: 'omitted', side: 'target' });
    else add({ column: c.name, fate: 'default', to: c.type });
  }
  return out;
}

function bind(
  s: TableInfo,
  d: TableInfo,
  columns: string[],
  t: TableSpec,
  key: string[],
  chunk: Binding['chunk'],
  rangeNames: string[],
  transform: Record<string, string>,
): Binding {
  const sc = new Map<string, ColumnInfo>(s.columns.map((c) => [c.name, c]));
  const dc = new Map<string, ColumnInfo>(d.columns.map((c) => [c.name, c]));
  // Cast to the target's type where the types differ, so binary COPY and the hashes agree.
  const raw = (c: string) => (transform[c] ? `(${transform[c]})` : quoteIdent(c));
  const cast = (c: string) => Boolean(transform[c]) || sc.get(c)!.type !== dc.get(c)!.type;
  const sourceExprs = columns.map((c) => (cast(c) ? `${raw(c)}::${dc.get(c)!.type}` : quoteIdent(c)));
  // Where that cast can cut or round a value, the hash sees it did (db/sql.ts, keptByCast).
  const lossless = columns.map((c) => (cast(c) ? (keptByCast(raw(c), dc.get(c)!.type) ?? null) : null));
  return {
    source: s.quoted,
    target: d.quoted,
    sourceName: showTableName(s.schema, s.name),
    targetName: showTableName(d.schema, d.name),
    targetColumns: d.columns.map((c) => c.name),
    sourceColumns: s.columns,
    omitted: (t.omit ?? []).filter((c) => sc.has(c)),
    columnPlan: [],
    partitions: { source: [], target: [] },
    sourceRel: { schema: s.schema, name: s.name, oid: s.oid },
    targetTypes: columns.map((c) => dc.get(c)!.type),
    columns,
    sourceExprs,
    ...(lossless.some(Boolean) ? { lossless } : {}),
    key,
    keyTypes: key.map((k) => dc.get(k)!.type),
    chunk,
    range: {
      names: rangeNames,
      sourceTypes: rangeNames.map((n) => sc.get(n)!.type),
      targetTypes: rangeNames.map((n) => dc.get(n)!.type),
      collate: rangeNames.map((n) => sc.get(n)!.collatable),
    },
    checks: { distribution: t.checks?.distribution ?? [], aggregates: t.checks?.aggregates ?? [] },
    tolerance: t.checks?.tolerance ?? {},
    floatColumns: columns.filter((c) => FLOAT_TYPES.has(dc.get(c)!.typeName)),
    numericColumns: columns.filter((c) => NUMBER_TYPES.has(dc.get(c)!.typeName)),
    where: t.where,
    sourceKeyUnique: true,
    targetKeyUnique: true,
  };
}

/**
 * Prepares (without running) the statements a range will run, in the extended protocol, which
 * refuses more than one statement: a `where` or a transform that smuggles a second statement
 * fails here.
 */
async function checkStatements(src: pg.ClientBase, tgt: pg.ClientBase, b: Binding, at: string): Promise<string[]> {
  const out: string[] = [];
  const probe = (c: pg.ClientBase, text: string) => c.query({ text: noRowsSql(text), values: [], queryMode: 'extended' } as pg.QueryConfig);
  try {
    await probe(src, sourceSelect(b));
    await probe(src, profileSql(b, 'source'));
  } catch (e) {
    // The columns the copy reads were checked already: what is denied here is what a where or transform reads.
    if ((e as { code?: string }).code === INSUFFICIENT_PRIVILEGE)
      out.push(
        `${at}.where or .transform: the source role may not run the source query: ${(e as Error).message} (a column, table or function the expression reads; grant it, or leave it out of the expression)`,
      );
    else out.push(`${at}.where, .transform or column types: the source query is not valid: ${(e as Error).message}`);
  }
  try {
    await probe(tgt, profileSql(b, 'target'));
  } catch (e) {
    out.push(`${at}.target: the target cannot be read as planned: ${(e as Error).message}`);
  }
  return out;
}

/** Columns whose source value is cast or computed: every source row's value evaluated (a dry run). */
async function valueProblems(src: pg.ClientBase, b: Binding, at: string): Promise<string[]> {
  const out: string[] = [];
  for (const [i, column] of b.columns.entries()) {
    if (b.sourceExprs[i] === quoteIdent(column)) continue;
    const r = await src.query<{ changed: number }>(columnProbeSql(b, i)).catch((e: Error) => e);
    const what = b.columnPlan.find((p) => p.column === column);
    const how = what?.fate === 'transform' ? `transform.${column}` : 'columns';
    const named = `${at}.${how}: "${column}" (${what ? describeColumn(what) : column})`;
    if (r instanceof Error) out.push(`${named} fails on the source's rows: ${r.message}`);
    else if (r.rows[0].changed > 0)
      out.push(
        `${named} would cut or round the value of ${r.rows[0].changed} source row(s) (longer, or more precise, than the target's type holds): widen the target column, or say how in transform.${column}`,
      );
  }
  return out;
}

async function serverVersion(c: pg.ClientBase): Promise<number> {
  return Number((await c.query<{ v: string }>(SERVER_VERSION_SQL)).rows[0].v);
}

const cache = new Map<string, Promise<Binding>>();
const cacheId = (spec: Pick<MigrationSpec, 'source' | 'target'>, table: TableSpec) => JSON.stringify([spec.source, spec.target, table]);

export function unbound(problems: string[]): ApplicationFailure {
  return failure('PreflightError', `the spec does not match the databases:\n${problems.map((p) => `  ${p}`).join('\n')}`);
}

/** Keeps the bindings preflight resolved for the activities that follow in this worker. */
export function rememberBindings(spec: MigrationSpec, bindings: Binding[]): void {
  spec.tables.forEach((table, i) => cache.set(cacheId(spec, table), Promise.resolve(bindings[i])));
}

/**
 * The binding of one table, as planned: a worker that binds the table only now (a new worker, a
 * restart) and finds other columns than the plan names refuses to write or measure by them.
 */
export async function plannedBinding(
  spec: Pick<MigrationSpec, 'source' | 'target'>,
  table: TableSpec,
  tableIndex: number,
  plan: { source: string; target: string; columns?: ColumnPlanEntry[] },
): Promise<Binding> {
  const b = await bindingFor(spec, table, tableIndex);
  if (plan.columns && JSON.stringify(columnPlanText(plan.columns)) !== JSON.stringify(columnPlanText(b.columnPlan)))
    throw failure(
      'SchemaChanged',
      `${plan.source} → ${plan.target}: the columns changed after planning: ${columnChanges(plan.columns, b.columnPlan).join('; ')}; ` +
        'the ranges were copied and proven with the columns as planned: abort, then start the migration again under a new name with a spec that matches the tables',
    );
  return b;
}

/** The binding of one table, resolved once per worker process (preflight resolves it first). */
export function bindingFor(spec: Pick<MigrationSpec, 'source' | 'target'>, table: TableSpec, tableIndex: number): Promise<Binding> {
  const id = cacheId(spec, table);
  let p = cache.get(id);
  if (!p) {
    // Guarded: a connection error here leaves redacted and classified like any other.
    p = guarded(`checking tables[${tableIndex}]`, () => checkTable({ sourceAlias: spec.source, targetAlias: spec.target, table, tableIndex })).then(
      ({ binding, problems }) => {
        if (!binding) throw unbound(problems);
        return binding;
      },
    );
    p.catch(() => cache.delete(id));
    cache.set(id, p);
  }
  return p;
}

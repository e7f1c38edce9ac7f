// From a source change to the statement that applies it on the target. A Relation message says
// where each column sits in the stream's tuples; binding it to the spec's table checks once that
// every copied column and key column is there. Statements are built per table, operation and
// column shape (an UPDATE leaves out unchanged TOASTed columns), cached, and run as named
// prepared statements; values always travel as text parameters cast to the target's types.
import { createHash } from 'node:crypto';
import { quoteIdent } from '../db/sql';
import { CaptureError } from './errors';
import { deleteRowSql, insertRowSql, updateRowSql } from './sql';
import type { ColumnValue, DeleteMessage, InsertMessage, RelationMessage, Tuple, UpdateMessage } from './pgoutput';

export interface CaptureTable {
  /** the table's index in the spec */
  index: number;
  /** as pgoutput's Relation message names it */
  sourceSchema: string;
  sourceName: string;
  /** the target table, already quoted (qualifiedName) */
  target: string;
  /** the copied columns; `type` is the target column's catalog type (format_type), used in casts */
  columns: { source: string; target: string; type: string }[];
  /** the key columns (source names), a subset of `columns` */
  key: string[];
  /**
   * Every column of the source table at planning that a Relation message describes (generated
   * columns are not published), copied or not, with its type OID (pg_attribute.atttypid): the
   * stream's description is compared with it, so a column added, dropped or retyped since is seen.
   */
  sourceColumns: { name: string; typeOid: number }[];
}

export interface BoundRelation {
  table: CaptureTable;
  /** for table.columns[i]: its position in the stream's tuples */
  positions: number[];
  /** for table.key[j]: its position in table.columns */
  keyColumns: number[];
  /** for people: the source table and the target table */
  source: string;
  target: string;
}

/** `"public"."orders"` → public.orders; a name that needs its quotes keeps them, as PostgreSQL prints it. */
export function readableName(quoted: string): string {
  // Whole quoted identifiers only ("" inside one is an escaped quote, not its end).
  return quoted.replace(/"((?:[^"]|"")*)"/g, (whole, inner: string) => (/^[a-z_][a-z0-9_$]*$/.test(inner) ? inner : whole));
}

export function sourceLabel(t: CaptureTable): string {
  return readableName(`${quoteIdent(t.sourceSchema)}.${quoteIdent(t.sourceName)}`);
}

/** Checks a spec table before any stream is opened: a key that is not copied cannot be matched. */
export function keyColumnsOf(t: CaptureTable): number[] {
  return t.key.map((k) => {
    const i = t.columns.findIndex((c) => c.source === k);
    if (i < 0) throw new CaptureError(`the key column ${k} of ${sourceLabel(t)} is not among its copied columns`, '42703');
    return i;
  });
}

const AGAIN = 'abort, then start the migration again with a new name';

/**
 * The stream's description of a table against the plan: a column added since planning (its values
 * would reach no target column), a copied column dropped or renamed, or one whose type changed,
 * stops the migration with a sentence. Columns not copied may be dropped or retyped: nothing of
 * theirs reaches the target.
 */
function schemaDrift(rel: RelationMessage, table: CaptureTable): CaptureError | undefined {
  const source = sourceLabel(table);
  const planned = new Map(table.sourceColumns.map((c) => [c.name, c]));
  const now = new Map(rel.columns.map((c) => [c.name, c]));
  for (const c of table.columns) {
    // The key's own sentence (below) says more for a key column.
    if (now.has(c.source) || table.key.includes(c.source)) continue;
    return new CaptureError(
      `the column ${JSON.stringify(c.source)} of ${source} was dropped or renamed on the source after planning (or left out of the publication's column list); its changes cannot be applied to the target: ${AGAIN}`,
      '42703',
    );
  }
  for (const c of rel.columns) {
    if (planned.has(c.name)) continue;
    return new CaptureError(
      `a column ${JSON.stringify(c.name)} was added to ${source} on the source after planning; its values would not reach the target: ${AGAIN} (add the column to the target, or name it in omit)`,
      '42703',
    );
  }
  const copied = new Set(table.columns.map((c) => c.source));
  for (const c of rel.columns) {
    const was = planned.get(c.name)!;
    if (!copied.has(c.name) || was.typeOid === c.typeOid) continue;
    return new CaptureError(
      `the column ${JSON.stringify(c.name)} of ${source} changed type on the source after planning (type OID ${was.typeOid} then, ${c.typeOid} now); its values may no longer fit the target as planned: ${AGAIN}`,
      '42804',
    );
  }
  return undefined;
}

export function bindRelation(rel: RelationMessage, table: CaptureTable): BoundRelation {
  const source = sourceLabel(table);
  const keyColumns = keyColumnsOf(table);
  const drift = schemaDrift(rel, table);
  if (drift) throw drift;
  const at = new Map(rel.columns.map((c, i) => [c.name, i]));
  const positions = table.columns.map((c) => {
    const i = at.get(c.source);
    if (i !== undefined) return i;
    throw new CaptureError(`the source's stream describes ${source} without its key column ${c.source}: its changes cannot be matched to target rows`, '42703');
  });
  for (const j of keyColumns) {
    const c = rel.columns[positions[j]];
    if (!c.key)
      throw new CaptureError(
        `the key column ${c.name} of ${source} is not part of its replica identity on the source: an update that changes it could not be matched on the target`,
        '55000',
      );
  }
  return { table, positions, keyColumns, source, target: readableName(table.target) };
}

export interface Statement {
  /** a prepared statement's name: derived from the text, so one name never means two texts */
  name: string;
  text: string;
  values: (string | null)[];
}

export type Change = InsertMessage | UpdateMessage | DeleteMessage;

/** A change made ready: its statement and the keys it touches (an update that moves a row: both). */
export interface PreparedChange {
  statement: Statement;
  keys: (string | null)[][];
  kind: 'insert' | 'update' | 'delete';
}

function valueOf(v: ColumnValue | undefined): string | null {
  return v?.kind === 'text' ? v.value : null;
}

export class StatementCache {
  private readonly texts = new Map<string, { name: string; text: string }>();

  prepare(b: BoundRelation, change: Change): PreparedChange {
    if (change.tag === 'insert') return this.insert(b, change.tuple);
    if (change.tag === 'update') return this.update(b, change);
    return this.delete(b, change);
  }

  private cached(key: string, build: () => string): { name: string; text: string } {
    let s = this.texts.get(key);
    if (!s) {
      const text = build();
      s = { name: `backfill_capture_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`, text };
      this.texts.set(key, s);
    }
    return s;
  }

  private insert(b: BoundRelation, tuple: Tuple): PreparedChange {
    const t = b.table;
    const values = b.positions.map((p, i) => {
      const v = tuple[p];
      if (v?.kind === 'unchanged') throw new CaptureError(`an insert into ${b.source} came without the value of ${t.columns[i].source}`, 'XX001');
      return valueOf(v);
    });
    const s = this.cached(`${t.index}\0I`, () => insertRowSql(t.target, t.columns));
    return { statement: { ...s, values }, keys: [b.keyColumns.map((j) => values[j])], kind: 'insert' };
  }

  /** The key that finds the row: the old tuple's when the message has one, else the new tuple's. */
  private keyOf(b: BoundRelation, tuple: Tuple, what: string): (string | null)[] {
    return b.keyColumns.map((j) => {
      const v = tuple[b.positions[j]];
      if (v?.kind === 'unchanged')
        throw new CaptureError(`${what} on ${b.source} came without the value of its key column ${b.table.columns[j].source}`, 'XX001');
      return valueOf(v);
    });
  }

  private update(b: BoundRelation, change: UpdateMessage): PreparedChange {
    const t = b.table;
    const newKey = this.keyOf(b, change.tuple, 'an update');
    const oldKey = change.old ? this.keyOf(b, change.old.tuple, 'an update') : newKey;
    const moved = oldKey.some((v, j) => v !== newKey[j]);
    // A key that did not move is matched, not set: an identity key GENERATED ALWAYS may only be
    // set to DEFAULT (one that moved is set, and such a table refuses it, loudly).
    const kept = new Set(moved ? [] : b.keyColumns);
    const set = b.positions.map((p, i) => change.tuple[p]?.kind !== 'unchanged' && !kept.has(i));
    const setValues = b.positions.flatMap((p, i) => (set[i] ? [valueOf(change.tuple[p])] : []));
    const shape = set.map((s) => (s ? '1' : '0')).join('');
    const s = this.cached(`${t.index}\0U\0${shape}`, () =>
      updateRowSql(
        t.target,
        t.columns.filter((_, i) => set[i]),
        keyTargets(b),
      ),
    );
    return { statement: { ...s, values: [...setValues, ...oldKey] }, keys: moved ? [oldKey, newKey] : [newKey], kind: 'update' };
  }

  private delete(b: BoundRelation, change: DeleteMessage): PreparedChange {
    const t = b.table;
    const key = this.keyOf(b, change.old.tuple, 'a delete');
    const s = this.cached(`${t.index}\0D`, () => deleteRowSql(t.target, keyTargets(b)));
    return { statement: { ...s, values: key }, keys: [key], kind: 'delete' };
  }
}

/** The key's columns, in key order. */
function keyTargets(b: BoundRelation): CaptureTable['columns'] {
  return b.keyColumns.map((j) => b.table.columns[j]);
}

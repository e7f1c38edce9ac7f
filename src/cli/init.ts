// `backfill init`: a complete spec written from the source catalog, for a person to edit. Every
// table of a schema with its key (the primary key, or a unique index on NOT NULL columns), no
// chunk (the default fits each key and table size), a distribution check on a status-like column
// and a sum on money-like ones.
import type pg from 'pg';
import { stringify } from 'yaml';
import { poolFor } from '../db/pools';
import { columnProfile, naturalKey, resolveSchema, resolveTable, schemaTables, type ColumnProfile } from '../db/catalog';
import { parseTableRef, showName, showTableName } from '../spec/names';
import { BadInput } from '../spec/load';

const STATUS_LIKE = /(^|_)(status|state|type|kind|category|stage|phase|tier|level)$/i;
const MONEY_LIKE = /(amount|price|total|cost|balance|fee|tax|revenue|subtotal)/i;
const TEXT_LIKE = new Set(['text', 'varchar', 'bpchar', 'citext']);
/** More distinct values than this is not a status. */
const MAX_STATUS_VALUES = 50;

/** A distribution column: named like a status, of a text, enum or boolean type, with few values where statistics say. */
function statusLike(c: ColumnProfile): boolean {
  if (!STATUS_LIKE.test(c.name)) return false;
  if (!TEXT_LIKE.has(c.typeName) && c.kind !== 'e' && c.typeName !== 'bool') return false;
  return c.distinct === null || (c.distinct > 0 && c.distinct <= MAX_STATUS_VALUES);
}

/** A sum: a numeric or money column named like an amount. */
function moneyLike(c: ColumnProfile): boolean {
  return MONEY_LIKE.test(c.name) && (c.typeName === 'numeric' || c.typeName === 'money');
}

export interface InitOptions {
  schema: string;
  source: string;
  target: string;
  name?: string;
  targetSchema?: string;
}

export async function initSpec(o: InitOptions): Promise<string> {
  const pool = poolFor(o.source, 'read');
  const schema = await resolveSchema(pool, { name: o.schema, exact: false });
  if (!schema) throw new BadInput(`schema ${showName(o.schema)} not found on connection "${o.source}"`);
  const names = await schemaTables(pool, schema);
  if (names.length === 0) throw new BadInput(`schema ${showName(schema)} has no tables on connection "${o.source}"`);
  const c: pg.PoolClient = await pool.connect();
  const tables: Record<string, unknown>[] = [];
  const keyless: string[] = [];
  try {
    for (const name of names) {
      const info = (await resolveTable(c, parseTableRef({ schema, table: name })!))!;
      const shown = showTableName(schema, name);
      const key = await naturalKey(c, info.oid);
      if (!key) {
        keyless.push(shown);
        continue;
      }
      const cols = await columnProfile(c, info.quoted);
      const distribution = cols.filter((x) => statusLike(x) && !key.includes(x.name)).map((x) => x.name);
      const sums = cols.filter((x) => moneyLike(x) && !key.includes(x.name)).map((x) => ({ fn: 'sum', column: x.name }));
      tables.push({
        source: shown,
        target: showTableName(o.targetSchema ?? schema, name),
        key,
        ...(distribution.length || sums.length
          ? { checks: { ...(distribution.length ? { distribution } : {}), ...(sums.length ? { aggregates: sums } : {}) } }
          : {}),
      });
    }
  } finally {
    c.release();
  }
  const spec = {
    name: o.name ?? `${schema.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 80) || 'schema'}-migration`,
    source: o.source,
    target: o.target,
    tables,
    cutover: { approval: 'required' },
  };
  const header = [
    `# Written by \`backfill init\` from schema ${showName(schema)} on connection "${o.source}": ${tables.length} table(s).`,
    '# Ranges: without `chunk`, an integer key is split by key span and any other key by row count, sized from the table.',
    '# Check it against the databases with `backfill validate`, then `backfill start`.',
    ...(keyless.length
      ? [
          `# Left out (no primary key, no unique index on NOT NULL columns): ${keyless.join(', ')}.`,
          '# Add a key to each, or list it here with `key: [...]` naming columns that are unique.',
        ]
      : []),
  ];
  return `${header.join('\n')}\n${stringify(spec, { lineWidth: 0 })}`;
}

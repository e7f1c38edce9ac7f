// The SQL of a range: its copy with each row's hash, the delete before it, the narrowing scans that
// locate differing rows, and the import of an epoch's snapshot. Built on src/db/sql.ts.
import {
  hashedExprs,
  keyExprs,
  quoteIdent,
  quoteLiteral,
  rangePredicate,
  rowHashExpr,
  rowsOf,
  sideFilter,
  tableOf,
  whereClause,
  type BoundTable,
  type KeyRange,
  type Selection,
  type Side,
} from '../db/sql';

/** First in a REPEATABLE READ transaction: it sees what the exported snapshot `name` saw. */
export function setSnapshotSql(name: string): string {
  return `SET TRANSACTION SNAPSHOT ${quoteLiteral(name)}`;
}

/** The source's COPY with each row's hash as one more column, last (see HashSplitter). */
export function copyOutHashedSql(t: BoundTable, r: KeyRange | Selection): string {
  const proj = t.sourceExprs.map((e, i) => `${e} AS ${quoteIdent(t.columns[i])}`).join(', ');
  return `COPY (SELECT ${proj}, ${rowHashExpr(t, 'source')} AS "backfill row hash" ${rowsOf(t, 'source', r)}) TO STDOUT (FORMAT binary)`;
}

export function deleteRangeSql(t: BoundTable, r: KeyRange | Selection): string {
  return `DELETE ${rowsOf(t, 'target', r)}`;
}

export function aggregateName(a: { fn: string; column: string }): string {
  return `${a.fn}(${a.column})`;
}

/** A 64-bit hash of the key alone (seeded): the same key hashes alike on both sides. */
export function keyHashExpr(t: BoundTable, side: Side, seed: number): string {
  const keys = keyExprs(t, side);
  // One integer key: its own hash, without the text of a row (a third of a narrowing scan's cost).
  if (keys.length === 1 && INTEGER_TYPES.has(t.keyTypes[0])) return `hashint8extended((${keys[0]})::int8, ${seed})`;
  return `hashtextextended(ROW(${keys.join(', ')})::text, ${seed})`;
}

/** The key's bucket at a narrowing level: the low `bits` bits of a 64-bit hash of the key. */
function keyBucketExpr(t: BoundTable, side: Side, bits: number): string {
  const mask = (1n << BigInt(bits)) - 1n;
  return `(${keyHashExpr(t, side, 7)} & ${mask.toString()})`;
}
const INTEGER_TYPES = new Set(['smallint', 'integer', 'bigint']);

/** Count and checksum per key bucket, inside the buckets still suspect (all, at the first level). */
export function bucketSql(t: BoundTable, side: Side, r: KeyRange, bits: number, parentBits: number): string {
  const parent = parentBits > 0 ? `${keyBucketExpr(t, side, parentBits)} = ANY ($1::bigint[])` : undefined;
  // Grouped on the bucket number over (bucket, hash) pairs computed first (OFFSET 0 keeps the planner
  // from folding them back): a sort then moves 16 bytes a row, not the whole row to disk.
  return `SELECT b::text AS b, count(*)::text AS n, sum(h)::text AS s
            FROM (SELECT ${keyBucketExpr(t, side, bits)} AS b, ${rowHashExpr(t, side)} AS h
                    FROM ${tableOf(t, side)}${whereClause([rangePredicate(t, side, r), sideFilter(t, side), parent])} OFFSET 0) x
           GROUP BY b`;
}

/** Each row's key (JSON text), row hash and per-column hashes: what locating compares. */
function rowEvidence(t: BoundTable, side: Side): string {
  const colHashes = hashedExprs(t, side).map((e) => `hashtextextended(ROW(${e})::text, 0)::text`);
  return `SELECT json_build_array(${keyExprs(t, side)
    .map((e) => `${e}::text`)
    .join(', ')})::text AS key,
                 ${rowHashExpr(t, side)}::text AS h, json_build_array(${colHashes.join(', ')})::text AS ch
            FROM ${tableOf(t, side)}`;
}

/** Every row of a range as its key (JSON text) and row hash: a range small enough to compare whole in the worker. */
export function keyHashesSql(t: BoundTable, side: Side, r: KeyRange): string {
  return `SELECT json_build_array(${keyExprs(t, side)
    .map((e) => `${e}::text`)
    .join(', ')})::text AS key, ${rowHashExpr(t, side)}::text AS h
            FROM ${tableOf(t, side)}${whereClause([rangePredicate(t, side, r), sideFilter(t, side)])}`;
}

export function bucketRowsSql(t: BoundTable, side: Side, r: KeyRange, bits: number): string {
  return `${rowEvidence(t, side)}${whereClause([rangePredicate(t, side, r), sideFilter(t, side), bits > 0 && `${keyBucketExpr(t, side, bits)} = ANY ($1::bigint[])`])}`;
}

/**
 * The rows of the given keys within a range, shaped as bucketRowsSql's: $1.. one text[] per key
 * column (the keys' values as text, cast to the key types), so a lookup uses the key's index.
 */
export function keyedRowsSql(t: BoundTable, side: Side, r: KeyRange): string {
  const keys = keyExprs(t, side);
  const arrays = keys.map((_, i) => `$${i + 1}::text[]::${t.keyTypes[i]}[]`);
  const match = keys.length === 1 ? `${keys[0]} = ANY (${arrays[0]})` : `(${keys.join(', ')}) IN (SELECT * FROM unnest(${arrays.join(', ')}))`;
  return `${rowEvidence(t, side)}${whereClause([rangePredicate(t, side, r), sideFilter(t, side), match])}`;
}

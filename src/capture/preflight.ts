// What logical change capture needs of the source server and tables, checked before anything is
// created there: each missing piece named, with how to fix it. (What it needs of the role, REPLICATION
// and the rights a publication takes, is checked with every other privilege: privileges.ts.)
import { captureOf, type MigrationSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import type pg from 'pg';
import { quoteIdent } from '../db/sql';
import {
  CAPTURE_SERVER_SQL,
  CAPTURE_TABLES_SQL,
  PUBLICATION_SQL,
  PUBLICATION_TABLES_SQL,
  SLOT_SQL,
  addTablesSql,
  createPublicationHint,
  setTablesHint,
  viaRootSql,
} from './sql';
import { readableName } from './tables';
import type { Binding } from '../plan/binding';

type Spec = Pick<MigrationSpec, 'name' | 'source' | 'capture'>;

/**
 * Everything logical capture needs that is missing, each with how to fix it; empty when all is
 * there. Reads only: it runs before anything is created on the source.
 */
export async function captureProblems(spec: Spec, bindings: Binding[]): Promise<string[]> {
  const cap = captureOf(spec);
  if (!cap) return [];
  const src = poolFor(spec.source, 'read');
  const out: string[] = [];
  const s = (await src.query(CAPTURE_SERVER_SQL)).rows[0] as {
    wal_level: string;
    version: string;
    max_slots: number;
    slots_used: number;
    max_senders: number;
    senders_used: number;
    keep_size: string;
  };
  const at = 'capture';
  // The stream's `messages` option (our fences) arrived in PostgreSQL 14.
  if (Number(s.version) < 140000)
    out.push(
      `${at}: the source runs PostgreSQL ${Math.floor(Number(s.version) / 10000)}; logical capture needs PostgreSQL 14 or later (use delta, a change column, there)`,
    );
  if (s.wal_level !== 'logical')
    out.push(
      `${at}: the source has wal_level=${s.wal_level}; logical capture needs wal_level=logical (ALTER SYSTEM SET wal_level = logical, then restart the server; on Amazon RDS set rds.logical_replication = 1 in the parameter group; on Cloud SQL the flag cloudsql.logical_decoding = on)`,
    );
  const slot = (await src.query(SLOT_SQL, [cap.slot])).rows[0] as { slot_name: string } | undefined;
  // The migration's slot, plus a temporary one at a time for a new snapshot (an epoch or a checkpoint).
  const slotsNeeded = slot ? 1 : 2;
  if (s.max_slots - s.slots_used < slotsNeeded)
    out.push(
      `${at}: the source has ${s.max_slots - s.slots_used} free replication slot(s) of max_replication_slots=${s.max_slots}; capture needs ${slotsNeeded} (raise max_replication_slots and restart, or drop unused slots: SELECT slot_name, active FROM pg_replication_slots)`,
    );
  if (s.max_senders - s.senders_used < 2)
    out.push(
      `${at}: the source has ${s.max_senders - s.senders_used} free WAL sender(s) of max_wal_senders=${s.max_senders}; capture needs 2 (the stream, and a snapshot while it runs): raise max_wal_senders and restart`,
    );
  const tables = (await src.query(CAPTURE_TABLES_SQL, [bindings.map((b) => b.sourceRel.oid)])).rows as {
    oid: string;
    identity: string;
    kind: string;
    has_pk: string;
    unlogged: string;
  }[];
  if (cap.managed.publication) out.push(...(await publicationProblems(src, cap.publication, bindings, tables)));
  for (const [i, b] of bindings.entries()) {
    const t = tables.find((x) => x.oid === b.sourceRel.oid);
    if (!t) continue;
    // Published without one, the application's own UPDATE and DELETE on it would start failing.
    if (t.identity === 'n' || (t.identity === 'd' && t.has_pk !== 't'))
      out.push(
        `tables[${i}].source: ${b.sourceName} has no primary key and no replica identity; in a publication, the application's UPDATE and DELETE on it would fail: add a primary key, or ALTER TABLE ... REPLICA IDENTITY USING INDEX <unique index> (or FULL)`,
      );
    const unlogged = JSON.parse(t.unlogged) as string[];
    if (unlogged.length)
      out.push(
        `tables[${i}].source: ${unlogged.join(', ')} is UNLOGGED: its writes never reach the write-ahead log, so change capture cannot see them: ALTER TABLE ... SET LOGGED, or migrate it without capture`,
      );
  }
  return out;
}

/**
 * A publication the user manages must send every change of every spec table under that table's
 * name: each table published (by itself, a schema, or ALL TABLES), with no row filter, and a
 * partitioned one with publish_via_partition_root (else its partitions' changes arrive under their
 * own names). Column lists are looked at when the stream describes the table.
 */
async function publicationProblems(src: pg.Pool, publication: string, bindings: Binding[], tables: { oid: string; kind: string }[]): Promise<string[]> {
  const at = 'capture.publication';
  const name = readableName(quoteIdent(publication));
  const pub = (await src.query(PUBLICATION_SQL, [publication])).rows[0] as { via_root: string } | undefined;
  if (!pub) return [`${at}: "${publication}" does not exist on the source (${createPublicationHint(name)})`];
  const out: string[] = [];
  const partitioned = bindings.filter((b) => tables.find((t) => t.oid === b.sourceRel.oid)?.kind === 'p');
  if (pub.via_root !== 't' && partitioned.length)
    out.push(
      `${at}: "${publication}" has publish_via_partition_root off, so the changes of ${partitioned.map((b) => b.sourceName).join(', ')} (partitioned) would arrive under their partitions' names: ` +
        viaRootSql(name),
    );
  const published = new Map(
    ((await src.query(PUBLICATION_TABLES_SQL, [publication])).rows as { oid: string; rowfilter: string | null }[]).map((r) => [r.oid, r]),
  );
  // A partitioned table without publish_via_partition_root is listed by its partitions: said above.
  const missing = bindings.filter((b) => !published.has(b.sourceRel.oid) && !(pub.via_root !== 't' && partitioned.includes(b)));
  const unpublished = missing.map((b) => b.sourceName);
  if (unpublished.length) out.push(`${at}: "${publication}" does not publish ${unpublished.join(', ')} (${addTablesSql(name, unpublished)})`);
  const filtered = bindings.filter((b) => published.get(b.sourceRel.oid)?.rowfilter);
  if (filtered.length)
    out.push(
      `${at}: "${publication}" publishes ${filtered.map((b) => b.sourceName).join(', ')} with a row filter (WHERE), so changes of the rows it leaves out would not reach the target: publish the whole table (${setTablesHint(name)} without WHERE)`,
    );
  return out;
}

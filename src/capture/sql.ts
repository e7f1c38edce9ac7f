// The SQL of change capture (logical replication): what it needs of the source, the publication and
// slots, the replication commands, the apply's statements and its bookkeeping on the target.
// Built on src/db/sql.ts.
import {
  keyExprs,
  quoteIdent,
  quoteLiteral,
  relationName,
  sideFilter,
  tableOf,
  underTable,
  unloggedUnder,
  whereClause,
  type BoundTable,
  type Side,
} from '../db/sql';
import { keyHashExpr } from '../range/sql';
import type { LedgerTable } from '../db/ledger';

// ---- the source: what capture needs of it, the publication, the slots ----

/** What logical change capture needs of the source server, in one row. */
export const CAPTURE_SERVER_SQL = `
SELECT current_setting('wal_level') AS wal_level,
       current_setting('server_version_num')::int AS version,
       current_setting('max_replication_slots')::int AS max_slots,
       (SELECT count(*) FROM pg_replication_slots)::int AS slots_used,
       current_setting('max_wal_senders')::int AS max_senders,
       (SELECT count(*) FROM pg_stat_replication)::int AS senders_used,
       current_setting('max_slot_wal_keep_size') AS keep_size`;

/** Per table (by oid, $1 text[]): its replica identity, whether it has a primary key. */
export const CAPTURE_TABLES_SQL = `
SELECT c.oid::text AS oid, c.relreplident AS identity, c.relkind AS kind,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
       ${unloggedUnder('c.oid')} AS unlogged
  FROM pg_class c WHERE c.oid = ANY ($1::text[]::oid[])`;

export const PUBLICATION_SQL = `
SELECT p.pubname, p.puballtables AS all_tables, p.pubviaroot AS via_root,
       coalesce((SELECT json_agg(pt.prrelid::text) FROM pg_publication_rel pt WHERE pt.prpubid = p.oid), '[]')::text AS relids
  FROM pg_publication p WHERE p.pubname = $1`;

/**
 * What a publication sends, by table (PostgreSQL 14 to 17 alike): each relation its changes are
 * published under (a partition's under its topmost published ancestor when publish_via_partition_root
 * is on, under its own name when off), with the publication's row filter and column list where the
 * server has them (15+; `to_jsonb` of the view's row, so older servers simply lack the keys).
 */
export const PUBLICATION_TABLES_SQL = `
SELECT c.oid::text AS oid, pt.schemaname AS schema, pt.tablename AS name,
       to_jsonb(pt) ->> 'rowfilter' AS rowfilter, (to_jsonb(pt) -> 'attnames')::text AS attnames
  FROM pg_publication_tables pt
  JOIN pg_namespace n ON n.nspname = pt.schemaname
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
 WHERE pt.pubname = $1`;

/** $1 a table's oid: the rows written to it and every partition under it so far, and each relation's storage. */
export const WRITES_AND_STORAGE_SQL = `
SELECT coalesce(sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del), 0)::text AS writes,
       coalesce(json_agg(json_build_array(${relationName('c')}, pg_relation_filenode(c.oid)::text) ORDER BY c.oid), '[]')::text AS storage
  FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE ${underTable('c.oid', '$1::oid')}`;

/**
 * Sessions on the source whose write counts may not be reported yet. A session reports its counts
 * when it goes idle, but at most once a second: one that commits within a second of its last report
 * and goes idle reports 10 s later (PGSTAT_IDLE_INTERVAL), and one that stays busy reports only when
 * it next goes idle. So only a session idle for longer than that (or one we cannot see: its state is
 * hidden without pg_read_all_stats, and then it counts as unsettled) has nothing left to report. Every
 * process of the database counts (a subscription's apply worker or an extension's background worker
 * writes rows too; their state is not 'idle', so they leave the proof to the totals) but the stream's
 * WAL senders, autovacuum and a query's parallel workers, which write no rows, and ours
 * (application_name backfill), which write nothing there.
 */
export const UNREPORTED_SESSIONS_SQL = `
SELECT count(*) FILTER (WHERE state IS DISTINCT FROM 'idle')::int AS busy,
       coalesce(max($1::float8 - extract(epoch FROM clock_timestamp() - state_change)::float8) FILTER (WHERE state = 'idle'), 0)::float8 AS wait_s
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
   AND backend_type NOT IN ('walsender', 'autovacuum worker', 'parallel worker')
   AND application_name IS DISTINCT FROM 'backfill'`;

// ---- the final window's row versions (the tripwire's proof that reads the rows, not the counters) ----

/**
 * The oldest transaction still running, as a 32-bit xid (text): every transaction with a smaller id
 * has ended, so whatever it wrote is in any snapshot taken after this.
 */
export const XMIN_NOW_SQL = `SELECT (txid_snapshot_xmin(txid_current_snapshot()) % 4294967296)::text AS xmin`;

/**
 * $1 a relation (regclass text): it and every relation under it keep rows in the heap, whose row
 * versions carry the id of the transaction that wrote them (xmin). A foreign table, a view or
 * another table access method does not.
 */
export const HEAP_ONLY_SQL = `
SELECT coalesce(bool_and(c.relkind = 'p' OR (c.relkind = 'r' AND am.amname = 'heap')), false) AS heap
  FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam
 WHERE ${underTable('c.oid', 'to_regclass($1)')}`;

/**
 * One scan of a side: its rows, the sum of their key hashes, and the keys (JSON text) of the row
 * versions written by a transaction at or after $1 (an xid, text). age() counts back from now, so a
 * version written since $1 is never older than $1; a version from more than 2^31 transactions ago
 * may look younger (it is then compared too, which costs a lookup and proves the same).
 */
export function rowVersionsSql(t: BoundTable, side: Side): string {
  const key = `json_build_array(${keyExprs(t, side)
    .map((e) => `${e}::text`)
    .join(', ')})`;
  return `SELECT count(*)::text AS n, coalesce(sum(kh), 0)::text AS keysum, count(k)::int AS fresh, coalesce(json_agg(k) FILTER (WHERE k IS NOT NULL), '[]')::text AS keys
            FROM (SELECT ${keyHashExpr(t, side, 11)} AS kh, CASE WHEN age(xmin) <= age($1::text::xid) THEN ${key} END AS k
                    FROM ${tableOf(t, side)}${whereClause([sideFilter(t, side)])} OFFSET 0) x`;
}

/** The write counters can prove a window: PostgreSQL 15 or later (statistics in shared memory), track_counts on. */
export const COUNTERS_USABLE_SQL = `SELECT current_setting('server_version_num')::int >= 150000 AND current_setting('track_counts')::bool AS usable`;

// The insert position, not pg_current_wal_lsn() (the write position): with asynchronous commit a
// transaction is committed, and its statistics may be flushed, while its commit record still waits in
// the WAL buffers, behind the write position.
export const WAL_INSERT_SQL = 'SELECT pg_current_wal_insert_lsn()::text AS lsn';

/** Every partition (at any depth) of each table: $1 the tables' oids; `of` is the table's oid. */
export const PARTITIONS_SQL = `
SELECT r.oid::text AS of, n.nspname AS schema, c.relname AS name
  FROM unnest($1::text[]::oid[]) AS r(oid)
  CROSS JOIN LATERAL pg_partition_tree(r.oid) t
  JOIN pg_class c ON c.oid = t.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.relid <> r.oid`;

// Changes of every partition (existing, created or attached later) are published under the root's
// name and columns, which is the table the spec names.
export function createPublicationSql(name: string, tables: string[]): string {
  return `CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${tables.join(', ')} WITH (publish_via_partition_root = true)`;
}

/** Two statements: run each on its own. */
export function setPublicationTablesSql(name: string, tables: string[]): string[] {
  return [
    `ALTER PUBLICATION ${quoteIdent(name)} SET TABLE ${tables.join(', ')}`,
    `ALTER PUBLICATION ${quoteIdent(name)} SET (publish_via_partition_root = true)`,
  ];
}

export function dropPublicationSql(name: string): string {
  return `DROP PUBLICATION IF EXISTS ${quoteIdent(name)}`;
}

/** A slot, how much WAL it holds back, and whether something streams it now. */
export const SLOT_SQL = `
SELECT slot_name, temporary, active_pid, wal_status,
       confirmed_flush_lsn::text AS confirmed,
       greatest(pg_current_wal_lsn() - restart_lsn, 0)::bigint::text AS retained_bytes
  FROM pg_replication_slots WHERE slot_name = $1`;

export const TERMINATE_SLOT_USER_SQL = `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`;
export const DROP_SLOT_SQL = `SELECT pg_drop_replication_slot($1)`;

/**
 * The sessions holding a migration's temporary slots (the snapshots of epochs and checkpoints, $1 a
 * LIKE pattern): ended, so their snapshots and slots go at once rather than when the holder hears.
 */
export const END_EPOCH_HOLDERS_SQL = `
SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE temporary AND active_pid IS NOT NULL AND slot_name LIKE $1`;
export const EPOCH_SLOTS_SQL = `SELECT count(*)::int AS n FROM pg_replication_slots WHERE temporary AND slot_name LIKE $1`;

/** The keys applied by change capture since a point ($3), per table ($2), for the final window. */
export const CHANGED_KEYS_SQL = `
SELECT DISTINCT array_to_json(key)::text AS key FROM backfill.capture_keys WHERE migration = $1 AND table_index = $2 AND commit_lsn > $3::pg_lsn`;
export const FORGET_KEYS_SQL = `DELETE FROM backfill.capture_keys WHERE migration = $1`;

// ---- the apply's bookkeeping on the target, in schema "backfill": where each migration's apply
// stands, a log of every applied source transaction, and the keys each one touched. All three are
// written in the same target transaction as the rows they describe, so they never disagree. ----

/** Run by ensureSchema (db/ledger.ts), which creates the schema when it is missing. */
export const CAPTURE_DDL = `
CREATE TABLE IF NOT EXISTS backfill.capture_applied (
  migration text PRIMARY KEY,
  commit_lsn pg_lsn NOT NULL,
  end_lsn pg_lsn NOT NULL,
  transactions bigint NOT NULL DEFAULT 0,
  applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS backfill.capture_log (
  migration text NOT NULL,
  commit_lsn pg_lsn NOT NULL,
  end_lsn pg_lsn NOT NULL,
  xid bigint NOT NULL,
  rows bigint NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
-- Per spec table (its index as the key): the changes of the transaction, as the stream sent them.
-- The final check's tripwire counts them against the source's own write counters.
ALTER TABLE backfill.capture_log ADD COLUMN IF NOT EXISTS changes jsonb;
-- Deliberately not unique: a transaction applied twice must show, not be hidden by a conflict.
CREATE INDEX IF NOT EXISTS capture_log_position ON backfill.capture_log (migration, commit_lsn);
CREATE TABLE IF NOT EXISTS backfill.capture_keys (
  migration text NOT NULL,
  table_index int NOT NULL,
  key text[] NOT NULL,
  commit_lsn pg_lsn NOT NULL
);
CREATE INDEX IF NOT EXISTS capture_keys_position ON backfill.capture_keys (migration, commit_lsn);`;

/** The tables CAPTURE_DDL makes on the target, and what the apply does to each (see LedgerTable). */
export const CAPTURE_TABLES: LedgerTable[] = [
  { table: 'capture_applied', rights: ['SELECT', 'INSERT', 'UPDATE'] },
  { table: 'capture_log', own: true },
  { table: 'capture_keys', own: true },
];

/** The row every later statement locks; 0/0: nothing applied yet. */
export const ENSURE_APPLIED_ROW = `
INSERT INTO backfill.capture_applied (migration, commit_lsn, end_lsn) VALUES ($1, '0/0', '0/0') ON CONFLICT (migration) DO NOTHING`;

export const READ_APPLIED = `
SELECT commit_lsn::text AS commit_lsn, end_lsn::text AS end_lsn, transactions::text AS transactions
  FROM backfill.capture_applied WHERE migration = $1`;

/**
 * Taken first in every apply transaction: two callers for one migration serialise here, and each
 * sees what the other committed before deciding a transaction is new.
 */
export const LOCK_APPLIED = `SELECT commit_lsn::text AS commit_lsn FROM backfill.capture_applied WHERE migration = $1 FOR UPDATE`;

/** $1 migration, $2 commit LSN, $3 end LSN. */
export const RECORD_APPLIED = `
UPDATE backfill.capture_applied
   SET commit_lsn = $2::pg_lsn, end_lsn = $3::pg_lsn, transactions = transactions + 1, applied_at = now()
 WHERE migration = $1`;

/** $1 migration, $2 commit LSN, $3 end LSN, $4 xid, $5 rows, $6 changes per table index (JSON object). */
export const LOG_TRANSACTION = `
INSERT INTO backfill.capture_log (migration, commit_lsn, end_lsn, xid, rows, changes) VALUES ($1, $2::pg_lsn, $3::pg_lsn, $4, $5, $6::jsonb)`;

/**
 * Changes the stream delivered per table since $2 (an LSN): $1 migration, $3 table indexes (int[]).
 * `unknown`: transactions logged before the per-table count existed (they cannot be counted).
 */
export const DELIVERED_SINCE = `
SELECT t.i AS table_index,
       coalesce(sum((l.changes->>(t.i::text))::bigint), 0)::text AS delivered,
       count(*) FILTER (WHERE l.migration IS NOT NULL AND l.changes IS NULL)::int AS unknown
  FROM unnest($3::int[]) AS t(i)
  LEFT JOIN backfill.capture_log l ON l.migration = $1 AND l.commit_lsn > $2::pg_lsn
 GROUP BY t.i`;

/** $1 migration, $2 commit LSN, $3 a JSON array of [table_index, [key values as text]]. */
export const LOG_KEYS = `
INSERT INTO backfill.capture_keys (migration, table_index, key, commit_lsn)
SELECT $1, (e->>0)::int, ARRAY(SELECT v FROM jsonb_array_elements_text(e->1) WITH ORDINALITY AS k(v, i) ORDER BY i), $2::pg_lsn
  FROM jsonb_array_elements($3::jsonb) AS e`;

// ---- the apply: a source change as a statement on the target (values as text parameters, cast) ----

/** A copied column: its target name and its type (format_type), for the cast of its parameter. */
export interface ChangeColumn {
  target: string;
  type: string;
}

/** `key`'s columns equal to the parameters after the first `offset`. */
function keyMatch(key: ChangeColumn[], offset: number): string {
  return key.map((c, n) => `${quoteIdent(c.target)} = $${offset + n + 1}::${c.type}`).join(' AND ');
}

/**
 * `target` is quoted already; $1.. the columns' values. The source's values are kept, as COPY keeps
 * them: an identity column GENERATED ALWAYS takes them too (OVERRIDING SYSTEM VALUE; a no-op on
 * other tables).
 */
export function insertRowSql(target: string, columns: ChangeColumn[]): string {
  const cols = columns.map((c) => quoteIdent(c.target)).join(', ');
  const params = columns.map((c, i) => `$${i + 1}::${c.type}`).join(', ');
  return `INSERT INTO ${target} (${cols}) OVERRIDING SYSTEM VALUE VALUES (${params})`;
}

/**
 * $1.. the values of the columns `set`, then the key's. Nothing to set (an update of key columns
 * only, to the values they had): the row is looked for, so that a missing one still counts.
 */
export function updateRowSql(target: string, set: ChangeColumn[], key: ChangeColumn[]): string {
  if (!set.length) return `SELECT 1 FROM ${target} WHERE ${keyMatch(key, 0)}`;
  const assignments = set.map((c, i) => `${quoteIdent(c.target)} = $${i + 1}::${c.type}`).join(', ');
  return `UPDATE ${target} SET ${assignments} WHERE ${keyMatch(key, set.length)}`;
}

/** $1.. the key's values. */
export function deleteRowSql(target: string, key: ChangeColumn[]): string {
  return `DELETE FROM ${target} WHERE ${keyMatch(key, 0)}`;
}

// ---- the apply's source session: the fence and the WAL position ----

/** Logs a snapshot of the running transactions in the WAL (PostgreSQL 16 and later). */
export const STANDBY_SNAPSHOT_SQL = 'SELECT pg_log_standby_snapshot()';

/**
 * Before PostgreSQL 17 a non-transactional message is not flushed by itself, and the WAL writer
 * flushes only past an asynchronous commit: on a quiet (frozen) source the fence waited for the
 * next running-transactions record, up to 15 s. A transaction with an id, committed synchronously,
 * flushes the WAL through its commit, so through the fence before it. (One statement string: one
 * round trip.)
 */
export const FLUSH_WAL_SQL = 'BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT';

/** $1 the prefix, $2 the content: a non-transactional logical message, flushed at once with `flush` (PostgreSQL 17). */
export function emitMessageSql(flush: boolean): string {
  return `SELECT pg_logical_emit_message(false, $1, $2${flush ? ', true' : ''})::text AS lsn`;
}

/** The source's WAL write position. */
export const CURRENT_WAL_SQL = 'SELECT pg_current_wal_lsn()::text AS lsn';

// ---- the replication session: the slot and the stream ----

/** Asked on a replication session before its slot is made (after it, any command ends the exported snapshot). */
export const REPLICATION_VERSION_SQL = 'SHOW server_version_num';

/** A logical slot of pgoutput that exports a snapshot; `version` the server's (15 took options in parentheses; 14 has the older keyword). */
export function createSlotSql(slot: string, temporary: boolean, version: number): string {
  const exported = version >= 150000 ? "(SNAPSHOT 'export')" : 'EXPORT_SNAPSHOT';
  return `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} ${temporary ? 'TEMPORARY ' : ''}LOGICAL pgoutput ${exported}`;
}

/** $1 a slot of this database (or of none): who streams it, how far it is confirmed, its kind. */
export const SLOT_STATE_SQL = `
SELECT active_pid, confirmed_flush_lsn::text AS confirmed, wal_status, slot_type, plugin
  FROM pg_replication_slots WHERE slot_name = $1 AND (database = current_database() OR database IS NULL)`;

/** $1 a backend's pid: its statement in flight cancelled (the apply's target session, when asked to stop). */
export const CANCEL_BACKEND_SQL = 'SELECT pg_cancel_backend($1)';

/** $1 a backend's pid: ended. */
export const TERMINATE_BACKEND_SQL = 'SELECT pg_terminate_backend($1)';

/** `lsn` in PostgreSQL's form (showLsn). */
export function startReplicationSql(o: { slot: string; publication: string; lsn: string }): string {
  // publication_names is a list of identifiers inside one string literal.
  return `START_REPLICATION SLOT ${quoteIdent(o.slot)} LOGICAL ${o.lsn} (proto_version '1', publication_names ${quoteLiteral(quoteIdent(o.publication))}, messages 'true')`;
}

// ---- shown in refusals, never run: `pub` is the publication's name as shown (readableName) ----

export function viaRootSql(pub: string): string {
  return `ALTER PUBLICATION ${pub} SET (publish_via_partition_root = true)`;
}

export function createPublicationHint(pub: string): string {
  return `CREATE PUBLICATION ${pub} FOR TABLE ... WITH (publish_via_partition_root = true)`;
}

export function addTablesSql(pub: string, tables: string[]): string {
  return `ALTER PUBLICATION ${pub} ADD TABLE ${tables.join(', ')}`;
}

export function setTablesHint(pub: string): string {
  return `ALTER PUBLICATION ${pub} SET TABLE ...`;
}

/** What a publication publishes; `publication` its name, as it is. */
export function publishedTablesSql(publication: string): string {
  return `SELECT * FROM pg_publication_tables WHERE pubname = '${publication.replace(/'/g, "''")}'`;
}

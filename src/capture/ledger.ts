// Change capture's bookkeeping on the target, in schema "backfill": where each migration's apply
// stands, a log of every applied source transaction, and the keys each one touched. All three are
// written in the same target transaction as the rows they describe, so they never disagree.
import type { LedgerTable } from '../db/ledger';

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

// The ledger (schema "backfill" on the control connection): per-range evidence and an append-only
// audit. It outlives Temporal's retention and makes reruns idempotent.
import type pg from 'pg';

/** The schema of the ledger (and of change capture's bookkeeping on the target, and of the switch's record). */
export const LEDGER_SCHEMA = 'backfill';

/** Run by ensureSchema after the schema exists (created when missing, by the role that runs it). */
export const LEDGER_DDL = `
CREATE TABLE IF NOT EXISTS backfill.ranges (
  migration text NOT NULL,
  table_index int NOT NULL,
  range_index int NOT NULL,
  source_table text NOT NULL,
  target_table text NOT NULL,
  lo text NOT NULL,
  hi text NOT NULL,
  status text NOT NULL,
  attempts int NOT NULL DEFAULT 0,
  source_count bigint,
  source_checksum numeric,
  target_count bigint,
  target_checksum numeric,
  checks jsonb,
  last_error text,
  copied_at timestamptz,
  verified_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now(),
  worker text,
  PRIMARY KEY (migration, table_index, range_index)
);
ALTER TABLE backfill.ranges ADD COLUMN IF NOT EXISTS worker text;
ALTER TABLE backfill.ranges ADD COLUMN IF NOT EXISTS converged bigint NOT NULL DEFAULT 0;
ALTER TABLE backfill.ranges ADD COLUMN IF NOT EXISTS copy_point pg_lsn;
CREATE TABLE IF NOT EXISTS backfill.capture_epochs (
  migration text NOT NULL,
  epoch int NOT NULL,
  slot text NOT NULL,
  temporary boolean NOT NULL,
  snapshot text NOT NULL,
  point pg_lsn NOT NULL,
  worker text,
  created_at timestamptz NOT NULL DEFAULT now(),
  released_at timestamptz,
  PRIMARY KEY (migration, epoch)
);
CREATE TABLE IF NOT EXISTS backfill.tables (
  migration text NOT NULL,
  table_index int NOT NULL,
  source_table text NOT NULL,
  target_table text NOT NULL,
  plan jsonb,
  totals jsonb,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, table_index)
);
ALTER TABLE backfill.tables ADD COLUMN IF NOT EXISTS plan_hash text;
CREATE TABLE IF NOT EXISTS backfill.reports (
  migration text NOT NULL,
  digest text NOT NULL,
  verdict text NOT NULL,
  report jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, digest)
);
CREATE TABLE IF NOT EXISTS backfill.boundaries (
  migration text NOT NULL,
  table_index int NOT NULL,
  range_index int NOT NULL,
  lo jsonb NOT NULL,
  PRIMARY KEY (migration, table_index, range_index)
);
CREATE TABLE IF NOT EXISTS backfill.differences (
  migration text NOT NULL,
  table_index int NOT NULL,
  range_index int NOT NULL,
  kind text NOT NULL,
  key jsonb NOT NULL,
  columns text[],
  side text,
  found_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS differences_range ON backfill.differences (migration, table_index, range_index);
CREATE TABLE IF NOT EXISTS backfill.constraints (
  migration text NOT NULL,
  owner text NOT NULL,
  name text NOT NULL,
  referenced text NOT NULL,
  ddl text NOT NULL,
  was_valid boolean NOT NULL,
  state text NOT NULL,
  detail text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, owner, name)
);
CREATE TABLE IF NOT EXISTS backfill.audit (
  id bigserial PRIMARY KEY,
  migration text NOT NULL,
  execution text NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  action text NOT NULL,
  actor text,
  digest text,
  detail jsonb
);`;

/** Lives on the switch connection's own database, so the switch and its record commit together. */
export const SWITCH_DDL = `
CREATE TABLE IF NOT EXISTS backfill.switches (
  migration text NOT NULL,
  execution text NOT NULL,
  digest text NOT NULL,
  approver text,
  switched_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, execution)
);`;

/**
 * What each statement against a ledger table needs once the table exists (before, the role that
 * creates it owns it): `own` where the DDL alters it (ADD COLUMN IF NOT EXISTS, CREATE INDEX IF
 * NOT EXISTS: only its owner may, even when there is nothing to do), else the rights its
 * statements use; `serial`: a column whose sequence an INSERT advances. `capture`: used only
 * under change capture. `backfill validate` and planning check exactly these.
 */
export interface LedgerTable {
  table: string;
  own?: boolean;
  rights?: ('SELECT' | 'INSERT' | 'UPDATE' | 'DELETE')[];
  serial?: string;
  capture?: boolean;
}

/** The tables LEDGER_DDL makes, and what the product does to each. */
export const LEDGER_TABLES: LedgerTable[] = [
  { table: 'ranges', own: true },
  { table: 'capture_epochs', rights: ['SELECT', 'INSERT', 'UPDATE'], capture: true },
  { table: 'tables', rights: ['SELECT', 'INSERT', 'UPDATE'] },
  { table: 'reports', rights: ['SELECT', 'INSERT', 'UPDATE'] },
  { table: 'boundaries', rights: ['SELECT', 'INSERT', 'DELETE'] },
  { table: 'differences', own: true },
  { table: 'constraints', rights: ['SELECT', 'INSERT', 'UPDATE'] },
  { table: 'audit', rights: ['SELECT', 'INSERT'], serial: 'id' },
];

/** The table SWITCH_DDL makes. */
export const SWITCH_TABLES: LedgerTable[] = [{ table: 'switches', rights: ['SELECT', 'INSERT'] }];

/** $1 a schema, when it exists. */
const SCHEMA_EXISTS = `SELECT 1 FROM pg_namespace WHERE nspname = $1`;
const CREATE_LEDGER_SCHEMA = 'CREATE SCHEMA backfill';

/**
 * Concurrent workers may create the ledger at once: serialise on an advisory lock. The schema is
 * created only when it is missing: `CREATE SCHEMA IF NOT EXISTS` needs CREATE on the database even
 * when the schema is there, and a schema made for the role beforehand (`CREATE SCHEMA backfill
 * AUTHORIZATION <role>`) must be enough.
 */
export async function ensureSchema(c: pg.ClientBase, ddl: string): Promise<void> {
  await c.query('BEGIN');
  try {
    await c.query(LEDGER_LOCK);
    if ((await c.query(SCHEMA_EXISTS, [LEDGER_SCHEMA])).rows.length === 0) await c.query(CREATE_LEDGER_SCHEMA);
    await c.query(ddl);
    await c.query('COMMIT');
  } catch (e) {
    // The DDL's error is the one that counts; a failed ROLLBACK ends the session, which voids it too.
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/**
 * A range's evidence, whatever its status (verified, mismatch or failed). $16: the range was
 * copied in this attempt (copied_at). A recorded attempt clears the last error.
 */
export const RECORD_RANGE = `
INSERT INTO backfill.ranges (migration, table_index, range_index, source_table, target_table, lo, hi,
                             status, attempts, source_count, source_checksum, target_count, target_checksum,
                             checks, verified_at, updated_at, worker, copied_at, last_error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now(), now(), $15, CASE WHEN $16::boolean THEN now() END, NULL)
ON CONFLICT (migration, table_index, range_index) DO UPDATE
   SET lo = EXCLUDED.lo, hi = EXCLUDED.hi, status = EXCLUDED.status,
       attempts = greatest(backfill.ranges.attempts, EXCLUDED.attempts),
       source_count = EXCLUDED.source_count, source_checksum = EXCLUDED.source_checksum,
       target_count = EXCLUDED.target_count, target_checksum = EXCLUDED.target_checksum,
       checks = EXCLUDED.checks, verified_at = now(), updated_at = now(), worker = EXCLUDED.worker,
       copied_at = coalesce(EXCLUDED.copied_at, backfill.ranges.copied_at), last_error = NULL`;

/** A range whose rows the target refused ($9: { refused }); the evidence of earlier attempts is cleared. */
export const RECORD_RANGE_REFUSED = `
INSERT INTO backfill.ranges (migration, table_index, range_index, source_table, target_table, lo, hi,
                             status, attempts, checks, last_error, updated_at, worker)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'refused', $8, $9, $10, now(), $11)
ON CONFLICT (migration, table_index, range_index) DO UPDATE
   SET lo = EXCLUDED.lo, hi = EXCLUDED.hi, status = 'refused',
       attempts = greatest(backfill.ranges.attempts, EXCLUDED.attempts),
       source_count = NULL, source_checksum = NULL, target_count = NULL, target_checksum = NULL,
       checks = EXCLUDED.checks, last_error = EXCLUDED.last_error, updated_at = now(), worker = EXCLUDED.worker`;

/**
 * A failure no retry cures, kept on the range's row ($8). A range that never got evidence gets a
 * row of status 'error' ($6, $7: its bounds, '' when they were not resolved); a range with evidence
 * keeps it, and its status.
 */
export const RECORD_RANGE_ERROR = `
INSERT INTO backfill.ranges (migration, table_index, range_index, source_table, target_table, lo, hi, status, last_error, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'error', $8, now())
ON CONFLICT (migration, table_index, range_index) DO UPDATE SET last_error = EXCLUDED.last_error, updated_at = now()`;

export const UPSERT_TABLE = `
INSERT INTO backfill.tables (migration, table_index, source_table, target_table, plan, totals, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (migration, table_index) DO UPDATE
   SET source_table = EXCLUDED.source_table, target_table = EXCLUDED.target_table,
       plan = coalesce(EXCLUDED.plan, backfill.tables.plan),
       totals = coalesce(EXCLUDED.totals, backfill.tables.totals), updated_at = now()`;

// ---- starting a migration again (src/policy/resume.ts) ----

/** Range rows recorded since the migration's last switch ($1): a completed migration's are not reused. */
const SINCE_LAST_SWITCH = `r.updated_at > coalesce((SELECT max(at) FROM backfill.audit WHERE migration = $1 AND action = 'switch'), '-infinity')`;

/** What an earlier run of this migration ($1) left of table $2: its plan hash, its ranges since the last switch, and whether it switched. */
export const PRIOR_TABLE = `
SELECT t.plan_hash,
       (count(r.range_index))::int AS ranges,
       (count(r.range_index) FILTER (WHERE r.status = 'verified'))::int AS verified,
       EXISTS (SELECT 1 FROM backfill.audit WHERE migration = $1 AND action = 'switch') AS switched
  FROM backfill.tables t
  LEFT JOIN backfill.ranges r ON r.migration = t.migration AND r.table_index = t.table_index AND ${SINCE_LAST_SWITCH}
 WHERE t.migration = $1 AND t.table_index = $2
 GROUP BY t.plan_hash`;

/** A row-count plan's boundaries, as one digest (they are part of its plan hash). */
export const BOUNDARIES_DIGEST = `
SELECT md5(coalesce(string_agg(lo::text, ',' ORDER BY range_index), '')) AS digest FROM backfill.boundaries WHERE migration = $1 AND table_index = $2`;

/** A table's ranges and located keys, when its plan changed: they belong to the earlier plan. */
export const CLEAR_TABLE_RANGES = `
WITH d AS (DELETE FROM backfill.differences WHERE migration = $1 AND table_index = $2)
DELETE FROM backfill.ranges WHERE migration = $1 AND table_index = $2`;

export const SET_PLAN_HASH = `UPDATE backfill.tables SET plan_hash = $3 WHERE migration = $1 AND table_index = $2`;

/** Range $3 of table $2 is verified in the ledger with these bounds ($4, $5), since the last switch. */
export const REUSABLE_RANGE = `
SELECT 1 FROM backfill.ranges r
 WHERE r.migration = $1 AND r.table_index = $2 AND r.range_index = $3 AND r.status = 'verified' AND r.lo = $4 AND r.hi = $5
   AND ${SINCE_LAST_SWITCH}`;

export const CLEAR_STALE_RANGES = `
DELETE FROM backfill.ranges WHERE migration = $1 AND table_index = $2 AND range_index >= $3`;

export const APPEND_AUDIT = `
INSERT INTO backfill.audit (migration, execution, action, actor, digest, detail)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at`;

export const SAVE_REPORT = `
INSERT INTO backfill.reports (migration, digest, verdict, report) VALUES ($1, $2, $3, $4)
ON CONFLICT (migration, digest) DO UPDATE SET verdict = EXCLUDED.verdict, report = EXCLUDED.report`;

/** A migration's latest audit entries ($2 of them), oldest first, each with how many there are in all. */
export const AUDIT_TRAIL = `
SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at, action, actor, digest, detail::text AS detail, total::int AS total
  FROM (SELECT *, count(*) OVER () AS total FROM backfill.audit WHERE migration = $1 ORDER BY id DESC LIMIT $2) a
 ORDER BY id`;

/** The report built last for a migration (each digest's row is rewritten when it is built again). */
export const LAST_REPORT = `
SELECT report::text AS report FROM backfill.reports WHERE migration = $1 ORDER BY report->>'generatedAt' DESC, created_at DESC LIMIT 1`;

export const CLEAR_BOUNDARIES = `DELETE FROM backfill.boundaries WHERE migration = $1 AND table_index = $2`;

/** $3 is a JSON array of boundary keys (each a JSON array of text). */
export const SAVE_BOUNDARIES = `
INSERT INTO backfill.boundaries (migration, table_index, range_index, lo)
SELECT $1, $2, (o - 1)::int, b FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS x(b, o)`;

export const RANGE_BOUNDARIES = `
SELECT range_index, lo::text AS lo FROM backfill.boundaries
 WHERE migration = $1 AND table_index = $2 AND range_index IN ($3, $3 + 1)`;

export const CLEAR_DIFFERENCES = `
DELETE FROM backfill.differences WHERE migration = $1 AND table_index = $2 AND range_index = $3`;

/** $4 is a JSON array of { kind, key, columns }. */
export const SAVE_DIFFERENCES = `
INSERT INTO backfill.differences (migration, table_index, range_index, kind, key, columns, side)
SELECT $1, $2, $3, d->>'kind', d->'key', ARRAY(SELECT jsonb_array_elements_text(coalesce(d->'columns', '[]'::jsonb))), d->>'side'
  FROM jsonb_array_elements($4::jsonb) AS x(d)`;

/** A look at a range's located keys (verify.lagGrace): the keys that matched this time ($4) are added up. */
export const RECORD_RECHECK = `
UPDATE backfill.ranges SET converged = converged + $4, attempts = greatest(attempts, $5), updated_at = now()
 WHERE migration = $1 AND table_index = $2 AND range_index = $3`;

/** A range's row counts as its last measure found them (locating picks its way by them). */
export const RANGE_COUNTS = `
SELECT source_count::text, target_count::text FROM backfill.ranges WHERE migration = $1 AND table_index = $2 AND range_index = $3`;

/** The keys a range's differences name (each once), to read them again. */
export const DIFFERENCE_KEYS = `
SELECT DISTINCT key::text AS key FROM backfill.differences WHERE migration = $1 AND table_index = $2 AND range_index = $3`;

/** Adds what locating found to a range's evidence. */
export const MARK_LOCATED = `
UPDATE backfill.ranges SET checks = coalesce(checks, '{}'::jsonb) || jsonb_build_object('located', $4::jsonb), updated_at = now()
 WHERE migration = $1 AND table_index = $2 AND range_index = $3`;

export const DIFFERENCE_SAMPLE = `
SELECT table_index, range_index, kind, key::text AS key, to_json(columns)::text AS columns, side
  FROM (SELECT *, row_number() OVER (PARTITION BY table_index, range_index, kind ORDER BY key) AS rn
          FROM backfill.differences WHERE migration = $1) d
 WHERE rn <= $2 ORDER BY table_index, range_index, kind, key`;

/** What the ranges of a table add up to, per side. */
// ---- foreign keys set aside while ranges are written (state: set-aside -> restored -> validated) ----

/** $1..$7: migration, owner (quoted), name, referenced (quoted), its definition, was it validated, state. */
export const RECORD_CONSTRAINT = `
INSERT INTO backfill.constraints (migration, owner, name, referenced, ddl, was_valid, state)
VALUES ($1, $2, $3, $4, $5, $6, 'set-aside')
ON CONFLICT (migration, owner, name) DO UPDATE
   SET referenced = EXCLUDED.referenced, ddl = EXCLUDED.ddl, was_valid = EXCLUDED.was_valid, state = 'set-aside', detail = NULL, updated_at = now()`;

/** The constraints of a migration; with $2, only those owned by or referencing that table (quoted). */
export const MIGRATION_CONSTRAINTS = `
SELECT owner, name, referenced, ddl, was_valid, state, detail FROM backfill.constraints
 WHERE migration = $1 AND ($2::text IS NULL OR owner = $2 OR referenced = $2) ORDER BY owner, name`;

export const CONSTRAINT_STATE = `
UPDATE backfill.constraints SET state = $4, detail = $5, updated_at = now() WHERE migration = $1 AND owner = $2 AND name = $3`;

/** One worker at a time sets aside or restores a migration's constraints. */
export const CONSTRAINTS_LOCK = `SELECT pg_advisory_xact_lock(hashtext('backfill.constraints:' || $1))`;

/** Every range's evidence, for the report. */
export const LEDGER_RANGES = `
SELECT table_index, range_index, lo, hi, status, attempts, source_count::text, source_checksum::text,
       target_count::text, target_checksum::text, checks::text AS checks, converged::text
  FROM backfill.ranges WHERE migration = $1 ORDER BY table_index, range_index`;

/** Each table's global totals, for the report. */
export const LEDGER_TOTALS = `SELECT table_index, totals FROM backfill.tables WHERE migration = $1`;

/** Two attempts at one switch (a retry racing a slow first try) serialise on this; $1 migration:execution. */
export const SWITCH_LOCK = `SELECT pg_advisory_xact_lock(hashtext('backfill.switch:' || $1))`;

export const SWITCH_DONE = `SELECT switched_at::text AS at FROM backfill.switches WHERE migration = $1 AND execution = $2`;

export const RECORD_SWITCH = `
INSERT INTO backfill.switches (migration, execution, digest, approver) VALUES ($1, $2, $3, $4) RETURNING switched_at::text AS at`;

/** Concurrent workers may create the ledger at once: they serialise on this. */
const LEDGER_LOCK = `SELECT pg_advisory_xact_lock(hashtext('backfill.ledger'))`;

export const RANGE_SUMS = `
SELECT count(*)::int AS n,
       coalesce(sum(source_count), 0)::text AS source_count, coalesce(sum(source_checksum), 0)::text AS source_checksum,
       coalesce(sum(target_count), 0)::text AS target_count, coalesce(sum(target_checksum), 0)::text AS target_checksum
  FROM backfill.ranges WHERE migration = $1 AND table_index = $2 AND range_index < $3`;

/** Change capture: a snapshot epoch, recorded by the activity that holds it (names stay out of history). */
export const RECORD_EPOCH = `
INSERT INTO backfill.capture_epochs (migration, epoch, slot, temporary, snapshot, point, worker)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (migration, epoch) DO UPDATE
   SET slot = EXCLUDED.slot, temporary = EXCLUDED.temporary, snapshot = EXCLUDED.snapshot, point = EXCLUDED.point,
       worker = EXCLUDED.worker, created_at = now(), released_at = NULL`;
export const EPOCH = `SELECT slot, temporary, snapshot, point::text AS point, released_at IS NOT NULL AS released FROM backfill.capture_epochs WHERE migration = $1 AND epoch = $2`;
export const RELEASE_EPOCH = `UPDATE backfill.capture_epochs SET released_at = now() WHERE migration = $1 AND epoch = $2`;
export const RELEASE_EPOCHS = `UPDATE backfill.capture_epochs SET released_at = coalesce(released_at, now()) WHERE migration = $1`;
/** The LSN a range's rows are consistent with (change capture). */
export const RECORD_COPY_POINT = `UPDATE backfill.ranges SET copy_point = $4::pg_lsn WHERE migration = $1 AND table_index = $2 AND range_index = $3`;

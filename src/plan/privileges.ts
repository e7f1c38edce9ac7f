// What each role needs, derived from the statements the product runs with it, and asked of the
// server (has_table_privilege, has_column_privilege, has_schema_privilege, has_database_privilege,
// has_sequence_privilege, the role's attributes), per connection alias: the source, the target, the
// control connection (the ledger), change capture (on the source) and the switch connection.
// Planning refuses a spec whose roles lack a right before any row is written; `backfill validate`
// prints what it checked, and names what it could not check. README: "Roles and privileges".
import type pg from 'pg';
import { captureOf, controlAlias, isLive, type MigrationSpec, type TableSpec } from '../spec/schema';
import { envNameForAlias, aliasIsConfigured } from '../spec/aliases';
import { showName, showTableName } from '../spec/names';
import { poolFor } from '../db/pools';
import { LEDGER_SCHEMA, LEDGER_TABLES, SWITCH_TABLES, type LedgerTable } from '../db/ledger';
import { CAPTURE_TABLES } from '../capture/sql';
import { hashedColumns } from '../db/sql';
import {
  foreignKeyRights,
  missingColumnRights,
  missingTableRights,
  publicationOwner,
  relationOwner,
  relationsIn,
  roleRights,
  schemaRights,
  sequenceRights,
  type RoleRights,
  type TableInfo,
} from '../db/catalog';
import type { Binding, TableSides } from './binding';
import { bypassRlsSql, columnList, createSchemaSql, grantRoleSql, grantSql, ownerSql, replicationSql } from './sql';

/** What a connection is used for: its role needs the rights of each use. */
export type Purpose = 'source' | 'target' | 'control' | 'capture' | 'switch';

/** One right a role needs, on one object, and whether it has it. */
export interface Right {
  purpose: Purpose;
  alias: string;
  role: string;
  /** where in the spec the need comes from: tables[0].source, control, capture, cutover.switch */
  at: string;
  /** SELECT, INSERT, CREATE, USAGE, ownership, REPLICATION, …: what `validate` lists as checked */
  privilege: string;
  /** as SQL names it (public.orders, database tgt, schema backfill, sequence public.orders_id_seq); empty for a role attribute */
  object: string;
  /** what the product does that needs it */
  why: string;
  ok: boolean;
  /** when missing: what the role lacks, as a phrase ("has no SELECT on column "secret" of public.orders") */
  lacks: string;
  /** when missing: the statement that gives it */
  fix: string;
}

/** Everything the privilege check found: each right asked about, and what it could not ask. */
export interface PrivilegeReport {
  rights: Right[];
  /** checks that could not be made, each in a sentence */
  unchecked: string[];
}

/** The sentence a missing right is refused with: the alias, the role, the object, the privilege, and the fix. */
function refusal(r: Right): string {
  return `${r.at}: role ${showName(r.role)} on connection "${r.alias}" ${r.lacks} (${r.why}); fix: ${r.fix}`;
}

/** The refusals of the rights missing among `rights`, each once. */
export function refusals(rights: Right[]): string[] {
  return [...new Set(rights.filter((r) => !r.ok).map(refusal))];
}

/** A connection as the check sees it: its alias, what it is used for, its role. */
interface Session {
  purpose: Purpose;
  alias: string;
  c: pg.ClientBase | pg.Pool;
  role: RoleRights;
}

type Made = Pick<Right, 'privilege' | 'object' | 'why' | 'ok' | 'lacks' | 'fix'>;

const right = (s: Session, at: string, m: Made): Right => ({ purpose: s.purpose, alias: s.alias, role: s.role.role, at, ...m });

const role = (s: Session) => showName(s.role.role);

/** USAGE on a schema: every statement that names an object in it. */
async function schemaUsage(s: Session, schema: string, why: string): Promise<Right> {
  const r = await schemaRights(s.c, schema);
  const ok = r?.usage ?? false;
  return right(s, s.purpose, {
    privilege: 'USAGE',
    object: `schema ${showName(schema)}`,
    why,
    ok,
    lacks: `has no USAGE on schema ${showName(schema)}`,
    fix: grantSql('USAGE', `SCHEMA ${showName(schema)}`, role(s)),
  });
}

/**
 * Privileges on a table's columns (its table-wide grant counts for every column): one right per
 * privilege, naming the columns the role lacks it on, or the table when it lacks it on all of them.
 */
async function columnRights(s: Session, at: string, oid: string, name: string, columns: string[], privileges: string[], why: string): Promise<Right[]> {
  const missing = await missingColumnRights(s.c, oid, columns, privileges);
  const tableWide = new Set(await missingTableRights(s.c, oid, [...missing.keys()]));
  return privileges.map((p) => {
    const cols = missing.get(p) ?? [];
    const whole = cols.length === columns.length && tableWide.has(p);
    return right(s, at, {
      privilege: p,
      object: name,
      why,
      ok: cols.length === 0,
      lacks: whole ? `has no ${p} on ${name}` : `has no ${p} on column${cols.length === 1 ? '' : 's'} ${columnList(cols)} of ${name}`,
      fix: grantSql(p, name, role(s), whole ? undefined : cols),
    });
  });
}

async function tableRight(s: Session, at: string, oid: string, name: string, privilege: string, why: string): Promise<Right> {
  const ok = (await missingTableRights(s.c, oid, [privilege])).length === 0;
  return right(s, at, { privilege, object: name, why, ok, lacks: `has no ${privilege} on ${name}`, fix: grantSql(privilege, name, role(s)) });
}

/** Row-level security that applies to the role hides rows: neither copied nor compared, and the evidence would agree. */
async function allRowsVisible(s: Session, at: string, t: TableInfo, name: string, why: string): Promise<Right> {
  const o = await relationOwner(s.c, t.oid);
  return right(s, at, {
    privilege: 'no row-level security',
    object: name,
    why,
    ok: !o.rls,
    lacks: `is subject to row-level security on ${name}, which hides rows from it`,
    fix: `${bypassRlsSql(role(s))} (or connect as the table's owner, ${showName(o.owner)})`,
  });
}

/** The serial and identity sequences of the copied columns, advanced past the copied keys at the switch. */
async function sequences(s: Session, at: string, t: TableInfo, b: Binding): Promise<Right[]> {
  const out: Right[] = [];
  for (const q of await sequenceRights(s.c, t.oid, b.columns)) {
    const name = `sequence ${showTableName(q.schema, q.name)}`;
    const why = `the switch advances it past the copied values of "${q.column}" (setval, pg_sequence_last_value)`;
    if (q.schema !== t.schema)
      out.push(
        right(s, s.purpose, {
          privilege: 'USAGE',
          object: `schema ${showName(q.schema)}`,
          why,
          ok: q.schemaUsage,
          lacks: `has no USAGE on schema ${showName(q.schema)}`,
          fix: grantSql('USAGE', `SCHEMA ${showName(q.schema)}`, role(s)),
        }),
      );
    out.push(
      right(s, at, {
        privilege: 'SELECT, UPDATE',
        object: name,
        why,
        ok: q.update && q.read,
        lacks: `has no ${[!q.read && 'SELECT', !q.update && 'UPDATE'].filter(Boolean).join(' or ')} on ${name}`,
        fix: grantSql('SELECT, UPDATE', `SEQUENCE ${showTableName(q.schema, q.name)}`, role(s)),
      }),
    );
  }
  return out;
}

/** The source columns the product reads: the copied ones (not transforms), the compared ones, the key, the range columns. */
function sourceColumnsRead(b: Binding, t: TableSpec): string[] {
  const transform = t.transform ?? {};
  const names = [...b.columns.filter((c) => !transform[c]), ...(b.compared ?? []), ...b.key, ...b.range.names];
  return [...new Set(names)];
}

/** The target columns the product reads: every one the row hash covers, the key, the range columns. */
function targetColumnsRead(b: Binding): string[] {
  return [...new Set([...hashedColumns(b), ...b.key, ...b.range.names])];
}

/** Whether the migration writes the target: copy mode, or a live source (catch-up writes in verify mode too). */
function writesTarget(spec: MigrationSpec): boolean {
  return spec.mode === 'copy' || isLive(spec);
}

/** The rights one table needs of the source and target roles (the spec-wide ones are in migrationRights). */
export async function tableRights(spec: MigrationSpec, i: number, b: Binding, sides: TableSides): Promise<Right[]> {
  const t = spec.tables[i];
  const src: Session = { purpose: 'source', alias: spec.source, c: sides.src, role: await roleRights(sides.src) };
  const tgt: Session = { purpose: 'target', alias: spec.target, c: sides.tgt, role: await roleRights(sides.tgt) };
  const at = `tables[${i}]`;
  const out: Right[] = [
    await schemaUsage(src, sides.s.schema, 'the source tables there are read'),
    ...(await columnRights(src, `${at}.source`, sides.s.oid, b.sourceName, sourceColumnsRead(b, t), ['SELECT'], 'every range reads these columns')),
    await allRowsVisible(
      src,
      `${at}.source`,
      sides.s,
      b.sourceName,
      'rows its policies hide would be neither copied nor compared, and both sides would still agree',
    ),
  ];
  out.push(
    await schemaUsage(tgt, sides.d.schema, 'the target tables there are written and read'),
    ...(await columnRights(tgt, `${at}.target`, sides.d.oid, b.targetName, targetColumnsRead(b), ['SELECT'], 'each range is measured there')),
  );
  if (writesTarget(spec)) {
    out.push(...(await columnRights(tgt, `${at}.target`, sides.d.oid, b.targetName, b.columns, ['INSERT'], 'each range is copied into these columns by COPY')));
    out.push(
      await tableRight(tgt, `${at}.target`, sides.d.oid, b.targetName, 'DELETE', 'each range is deleted before it is copied, so a retry leaves it as once'),
    );
  }
  if (spec.capture !== undefined)
    out.push(...(await columnRights(tgt, `${at}.target`, sides.d.oid, b.targetName, b.columns, ['UPDATE'], "change capture applies the source's updates")));
  out.push(
    await allRowsVisible(tgt, `${at}.target`, sides.d, b.targetName, 'rows its policies hide would be neither deleted, measured nor compared'),
    ...(await sequences(tgt, `${at}.target`, sides.d, b)),
  );
  return out;
}

/**
 * The ledger schema on a connection: created when missing (CREATE on the database), else used as it
 * is (USAGE and CREATE on it, CREATE TABLE IF NOT EXISTS needing the latter even for a table that is
 * there), and each of its tables that exists used as the product uses it (see LedgerTable).
 */
async function ledgerRights(s: Session, at: string, tables: LedgerTable[], what: string): Promise<Right[]> {
  const schema = await schemaRights(s.c, LEDGER_SCHEMA);
  const db = showName(s.role.db);
  if (!schema)
    return [
      right(s, at, {
        privilege: 'CREATE',
        object: `database ${db}`,
        why: `${what}: its schema ${LEDGER_SCHEMA} does not exist on database ${db} yet, and is created there`,
        ok: s.role.dbCreate,
        lacks: `has no CREATE on database ${db}`,
        fix: `${grantSql('CREATE', `DATABASE ${db}`, role(s))}, or create the schema for it: ${createSchemaSql(LEDGER_SCHEMA, role(s))}`,
      }),
    ];
  const on = `schema ${LEDGER_SCHEMA}`;
  const out: Right[] = ['USAGE', 'CREATE'].map((p) =>
    right(s, at, {
      privilege: p,
      object: on,
      why: `${what}: its tables are ${p === 'USAGE' ? 'used' : 'created when missing'} there`,
      ok: p === 'USAGE' ? schema.usage : schema.create,
      lacks: `has no ${p} on ${on}`,
      fix: grantSql(p, `SCHEMA ${LEDGER_SCHEMA}`, role(s)),
    }),
  );
  const present = await relationsIn(
    s.c,
    LEDGER_SCHEMA,
    tables.map((t) => t.table),
  );
  for (const t of tables) {
    const oid = present.get(t.table);
    if (!oid) continue;
    const name = `${LEDGER_SCHEMA}.${t.table}`;
    if (t.own) {
      const o = await relationOwner(s.c, oid);
      out.push(
        right(s, at, {
          privilege: 'ownership',
          object: name,
          why: `${what}: its definition is brought up to date with ALTER TABLE and CREATE INDEX IF NOT EXISTS, which only its owner may run`,
          ok: o.owns,
          lacks: `does not own ${name}`,
          fix: `${ownerSql('TABLE', name, role(s))} (its owner now: ${showName(o.owner)})`,
        }),
      );
      continue;
    }
    for (const p of t.rights ?? []) out.push(await tableRight(s, at, oid, name, p, `${what}: its statements on ${name} need it`));
    if (t.serial) {
      for (const q of await sequenceRights(s.c, oid, [t.serial])) {
        const seq = `sequence ${showTableName(q.schema, q.name)}`;
        out.push(
          right(s, at, {
            privilege: 'USAGE',
            object: seq,
            why: `${what}: each insert into ${name} takes its next value`,
            ok: (q.usage || q.update) && q.schemaUsage,
            lacks: `has no USAGE on ${seq}`,
            fix: grantSql('USAGE', `SEQUENCE ${showTableName(q.schema, q.name)}`, role(s)),
          }),
        );
      }
    }
  }
  return out;
}

/** The foreign keys on or to the target tables: set aside at planning (dropped, kept in the ledger), re-created and validated once the data is proven. */
async function foreignKeyNeeds(s: Session, bindings: Binding[]): Promise<Right[]> {
  const out: Right[] = [];
  for (const f of await foreignKeyRights(
    s.c,
    bindings.map((b) => b.target),
  )) {
    const owner = showTableName(f.owner.schema, f.owner.table);
    const referenced = showTableName(f.referenced.schema, f.referenced.table);
    const why = `planning sets aside the foreign key ${showName(f.name)} of ${owner} (drops it, kept in the ledger) and re-creates it once the data is proven`;
    out.push(
      right(s, 'target', {
        privilege: 'ownership',
        object: owner,
        why,
        ok: f.owns,
        lacks: `does not own ${owner}`,
        fix: `${ownerSql('TABLE', owner, role(s))} (its owner now: ${showName(f.owner.role)})`,
      }),
    );
    out.push(
      right(s, 'target', {
        privilege: 'REFERENCES',
        object: referenced,
        why,
        ok: f.noReferences.length === 0,
        lacks: `has no REFERENCES on ${f.noReferences.length === 1 ? 'column' : 'columns'} ${columnList(f.noReferences)} of ${referenced}`,
        fix: grantSql('REFERENCES', referenced, role(s), f.noReferences),
      }),
    );
  }
  return out;
}

/** What logical capture asks of the source role: REPLICATION, and the publication it creates (CREATE on the database, owning the tables) or alters and drops (owning it). */
async function captureNeeds(s: Session, spec: MigrationSpec, bindings: Binding[]): Promise<Right[]> {
  const cap = captureOf(spec);
  if (!cap) return [];
  const db = showName(s.role.db);
  const out: Right[] = [
    right(s, 'capture', {
      privilege: 'REPLICATION',
      object: '',
      why: 'change capture creates a replication slot and reads the write-ahead log through it',
      ok: s.role.superuser || s.role.replication,
      lacks: 'lacks the REPLICATION attribute',
      fix: `${replicationSql(role(s))} (on Amazon RDS: ${grantRoleSql('rds_replication', role(s))})`,
    }),
  ];
  if (cap.managed.publication) return out;
  const pub = await publicationOwner(s.c, cap.publication);
  const yours = `, or create the publication yourself and name it in capture.publication`;
  if (!pub)
    out.push(
      right(s, 'capture', {
        privilege: 'CREATE',
        object: `database ${db}`,
        why: `change capture creates the publication ${cap.publication} there`,
        ok: s.role.dbCreate,
        lacks: `has no CREATE on database ${db}`,
        fix: `${grantSql('CREATE', `DATABASE ${db}`, role(s))}${yours}`,
      }),
    );
  else
    out.push(
      right(s, 'capture', {
        privilege: 'ownership',
        object: `publication ${showName(cap.publication)}`,
        why: 'change capture sets its tables, and drops it when the migration ends',
        ok: pub.owns,
        lacks: `does not own the publication ${showName(cap.publication)}`,
        fix: `${ownerSql('PUBLICATION', showName(cap.publication), role(s))} (its owner now: ${showName(pub.owner)})`,
      }),
    );
  for (const [i, b] of bindings.entries()) {
    const o = await relationOwner(s.c, b.sourceRel.oid);
    out.push(
      right(s, `tables[${i}].source`, {
        privilege: 'ownership',
        object: b.sourceName,
        why: `only a table's owner may publish it (the publication ${cap.publication})`,
        ok: o.owns,
        lacks: `does not own ${b.sourceName}`,
        fix: `${ownerSql('TABLE', b.sourceName, role(s))} (its owner now: ${showName(o.owner)})${yours}`,
      }),
    );
  }
  return out;
}

/** A connection for `purpose` on `alias`, its role read once per check. */
async function session(roles: Map<string, RoleRights>, purpose: Purpose, alias: string): Promise<Session> {
  const c = poolFor(alias, purpose === 'source' || purpose === 'capture' ? 'read' : 'write');
  let r = roles.get(alias);
  if (!r) roles.set(alias, (r = await roleRights(c)));
  return { purpose, alias, c, role: r };
}

/**
 * The rights the migration as a whole needs, beyond each table's: the ledger on the control
 * connection, change capture (the source role, and its bookkeeping on the target), the switch's
 * record on the switch connection, the target's foreign keys, a temporary table for catch-up.
 * Also what could not be checked. `bindings`: the tables that bound.
 */
export async function migrationRights(spec: MigrationSpec, bindings: Binding[]): Promise<PrivilegeReport> {
  const roles = new Map<string, RoleRights>();
  const rights: Right[] = [];
  const unchecked: string[] = [];
  // The ledger schema on each connection that holds part of it; one account per connection.
  const ledgers = new Map<string, { purpose: Purpose; at: string; what: string; tables: LedgerTable[] }>();
  const hold = (alias: string, purpose: Purpose, at: string, what: string, tables: LedgerTable[]) => {
    const l = ledgers.get(alias);
    if (l) l.tables.push(...tables);
    else ledgers.set(alias, { purpose, at, what, tables: [...tables] });
  };
  hold(
    controlAlias(spec),
    'control',
    'control',
    'the ledger',
    LEDGER_TABLES.filter((t) => !t.capture || spec.capture !== undefined),
  );
  if (spec.capture !== undefined) hold(spec.target, 'capture', 'capture', "change capture's record on the target", CAPTURE_TABLES);
  const sw = spec.cutover.switch;
  const swAlias = sw?.connection ?? controlAlias(spec);
  if (aliasIsConfigured(swAlias)) hold(swAlias, 'switch', 'cutover.switch', "the switch's record", SWITCH_TABLES);
  else
    unchecked.push(
      `cutover.switch: connection "${swAlias}" is not set here (${envNameForAlias(swAlias)}), so the rights its record needs there were not checked`,
    );
  for (const [alias, l] of ledgers) rights.push(...(await ledgerRights(await session(roles, l.purpose, alias), l.at, l.tables, l.what)));
  const tgt = await session(roles, 'target', spec.target);
  rights.push(...(await foreignKeyNeeds(tgt, bindings)));
  const delta = spec.tables.findIndex((t) => t.delta);
  if (delta >= 0) {
    const src = await session(roles, 'source', spec.source);
    rights.push(
      right(src, `tables[${delta}].delta`, {
        privilege: 'member of pg_read_all_stats',
        object: '',
        why: "the watermark must never pass the oldest open writing transaction, which only a role that sees other sessions' transactions can find",
        ok: src.role.superuser || src.role.readAllStats,
        lacks: 'cannot see the transactions of other sessions',
        fix: grantRoleSql('pg_read_all_stats', role(src)),
      }),
    );
    const db = showName(tgt.role.db);
    rights.push(
      right(tgt, 'target', {
        privilege: 'TEMPORARY',
        object: `database ${db}`,
        why: 'each catch-up window is staged in a temporary table',
        ok: tgt.role.dbTemporary,
        lacks: `has no TEMPORARY on database ${db}`,
        fix: grantSql('TEMPORARY', `DATABASE ${db}`, role(tgt)),
      }),
    );
  }
  if (spec.capture !== undefined) rights.push(...(await captureNeeds(await session(roles, 'capture', spec.source), spec, bindings)));
  const actions = [
    ...(['freeze', 'unfreeze', 'switch'] as const).map((k) => ({ at: `cutover.${k}`, a: spec.cutover[k] })),
    ...(['freeze', 'unfreeze', 'switch'] as const).map((k) => ({ at: `cutover.reverse.${k}`, a: spec.cutover.reverse?.[k] })),
  ];
  for (const { at, a } of actions) {
    if (!a) continue;
    const who = roles.get(a.connection) ?? (aliasIsConfigured(a.connection) ? await roleRights(poolFor(a.connection, 'write')) : undefined);
    if (who) roles.set(a.connection, who);
    unchecked.push(
      `${at}: the rights its own SQL needs on connection "${a.connection}"${who ? ` (role ${showName(who.role)})` : ''} are not known before it runs` +
        (who ? '' : `; ${envNameForAlias(a.connection)} is not set here`),
    );
  }
  return { rights, unchecked };
}

/**
 * The rights the way back (`cutover.reverse`) needs beyond each reversed table's (`back`: the reversed
 * spec, `bindings` its tables): what change capture needs of its source, the target; its record on its
 * target, the source; and the switch back's record where `cutover.reverse.switch` runs.
 */
export async function reverseRights(back: MigrationSpec, bindings: Binding[]): Promise<Right[]> {
  const roles = new Map<string, RoleRights>();
  const sw = back.cutover.switch?.connection;
  return [
    ...(await ledgerRights(await session(roles, 'capture', back.target), 'cutover.reverse', CAPTURE_TABLES, "the way back's record on the source")),
    ...(await captureNeeds(await session(roles, 'capture', back.source), back, bindings)),
    ...(sw && aliasIsConfigured(sw)
      ? await ledgerRights(await session(roles, 'switch', sw), 'cutover.reverse.switch', SWITCH_TABLES, "the switch back's record")
      : []),
  ];
}

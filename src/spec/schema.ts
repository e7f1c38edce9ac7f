// The migration spec, as a zod schema: the public contract (README, "The spec"); types come from it.
// This module is imported by the workflow too, so it must stay pure (no Node built-ins, no I/O).
import { DEFAULT_WAIT_BOUND } from '../domain/waits';
import { z } from 'zod';
import { type TableRef, SCHEMA_PATTERN_FORMS, TABLE_REF_FORMS, namePartProblem, parseSchemaPattern, parseTableRef, showTableRef, tableRefKey } from './names';

/** A column name exactly as the catalog has it: any text up to 63 bytes. Never SQL: it is looked up, then quoted. */
const identifier = z.string().superRefine((v, ctx) => {
  const why = namePartProblem(v);
  if (why) ctx.addIssue({ code: 'custom', message: why });
});

/** A table, or every table of a schema: "schema.*" or { schema, exclude }. */
const tableOrSchema = z.union(
  [
    z.string().refine((s) => parseTableRef(s) !== undefined || parseSchemaPattern(s) !== undefined, `${TABLE_REF_FORMS}; ${SCHEMA_PATTERN_FORMS}`),
    z.object({ schema: identifier.optional(), table: identifier }).strict(),
    z.object({ schema: identifier, exclude: z.array(identifier).optional() }).strict(),
  ],
  { error: `${TABLE_REF_FORMS}; ${SCHEMA_PATTERN_FORMS}` },
);

const alias = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,62}$/, 'must be a connection alias (a letter, then letters, digits, _ or -)');

const positiveInt = (max: number) =>
  z.number({ error: 'must be a positive integer' }).int('must be a positive integer').min(1, 'must be a positive integer').max(max, `must be at most ${max}`);

const uniqueList = <T extends z.ZodTypeAny>(item: T) =>
  z
    .array(item)
    .min(1, 'must list at least one column')
    .refine((xs) => new Set(xs as unknown[]).size === xs.length, 'must not repeat a column');

/** PostgreSQL interval text such as "1 day", "6 hours", "1 month": digits and unit words only. */
const intervalText = z
  .string()
  .regex(
    /^\s*(\d+\s*(microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?|months?|years?)\s*)+$/i,
    'must be an interval such as "1 day", "6 hours" or "1 month"',
  );

/** A duration for timers: no months or years (their length varies). */
const durationText = z
  .string()
  .regex(
    /^\s*(\d+\s*(milliseconds?|ms|seconds?|s|minutes?|min|hours?|h|days?|d|weeks?)\s*)+$/i,
    'must be a duration such as "30 seconds", "15 minutes" or "2 hours"',
  );

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  millisecond: 1,
  s: 1000,
  second: 1000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
  week: 604_800_000,
};

/** Milliseconds of a duration text the schema accepted ("1 hour 30 minutes"). Pure. */
export function durationMs(text: string): number {
  let ms = 0;
  for (const m of text.matchAll(/(\d+)\s*([a-z]+)/gi)) {
    const unit = m[2].toLowerCase();
    ms += Number(m[1]) * (DURATION_UNITS[unit] ?? DURATION_UNITS[unit.replace(/s$/, '')] ?? 0);
  }
  return ms;
}

/** Without `retries.heartbeat`: how long an activity may go silent before Temporal runs it again elsewhere. */
export const DEFAULT_HEARTBEAT = '15 seconds';
/** `retries.heartbeat` bounds: shorter, a busy worker would be taken for a dead one; longer, a dead one goes unnoticed. */
const MIN_HEARTBEAT_MS = 2000;
const MAX_HEARTBEAT_MS = 600_000;

/** Rows changed since the last watermark, found by a column every write sets (updated_at). */
const DeltaSpec = z
  .object({
    column: identifier,
    overlap: intervalText.default('5 minutes'),
  })
  .strict();

const ChunkSpec = z
  .object({
    column: identifier.optional(),
    size: positiveInt(Number.MAX_SAFE_INTEGER).optional(),
    interval: intervalText.optional(),
    rows: positiveInt(100_000_000).optional(),
  })
  .strict();

const AggregateSpec = z
  .object({
    fn: z.enum(['sum', 'min', 'max'], { error: 'must be "sum", "min" or "max"' }),
    column: identifier,
  })
  .strict();

const ChecksSpec = z
  .object({
    distribution: z.array(identifier).max(16, 'at most 16 columns').optional(),
    aggregates: z.array(AggregateSpec).max(32, 'at most 32 aggregates').optional(),
    tolerance: z.record(identifier, z.number({ error: 'must be a number' }).min(0, 'must not be negative')).optional(),
  })
  .strict();

export const TableSpec = z
  .object({
    /** a table, or a pattern for every table of a schema (then `target` names the target schema) */
    source: tableOrSchema,
    /** the target table; for a pattern, "schema.*" or { schema } (default: the source's schema) */
    target: tableOrSchema.optional(),
    /** default: the primary key (or a unique index on NOT NULL columns) of the source table */
    key: uniqueList(identifier).optional(),
    /** with a pattern: tables of the schema to leave out */
    exclude: z.array(identifier).optional(),
    columns: uniqueList(identifier).optional(),
    /** columns deliberately left out: source columns not copied, target columns not written */
    omit: z
      .array(identifier)
      .refine((xs) => new Set(xs).size === xs.length, 'must not repeat a column')
      .optional(),
    transform: z.record(identifier, z.string().trim().min(1, 'must be an SQL expression').max(10_000)).optional(),
    where: z.string().trim().min(1, 'must not be empty when given').max(10_000).optional(),
    chunk: ChunkSpec.optional(),
    checks: ChecksSpec.optional(),
    delta: DeltaSpec.optional(),
  })
  .strict();

const SqlAction = z
  .object({
    connection: alias,
    sql: z.string().trim().min(1, 'must not be empty').max(100_000),
  })
  .strict();

/**
 * The way back (`cutover.reverse`): after the switch a stream from the target keeps the source
 * equal, until `finish` (or `keep` elapsed). Its actions run on the way back: `freeze` and
 * `unfreeze` on the target, now the authority, and `switch` to hand authority back.
 */
const ReverseSpec = z
  .object({
    freeze: SqlAction,
    unfreeze: SqlAction.optional(),
    switch: SqlAction,
    /** how long the way back is kept open after the switch; then it finishes by itself */
    keep: durationText.optional(),
    /** how often the way back is proven whole at a checkpoint (default 1 hour; also after 100,000 row changes went back) */
    checkpoint: durationText.optional(),
  })
  .strict();

const CutoverSpec = z
  .object({
    approval: z.enum(['required', 'auto'], { error: 'must be "required" or "auto"' }).default('required'),
    approvers: z.array(z.string().trim().min(1, 'must not be empty').max(200)).optional(),
    switch: SqlAction.optional(),
    freeze: SqlAction.optional(),
    unfreeze: SqlAction.optional(),
    approvalTimeout: durationText.optional(),
    reverse: ReverseSpec.optional(),
  })
  .strict();

/** A replication slot or publication name: lower-case letters, digits and underscores (PostgreSQL's rule for slots). */
const replicationName = z.string().regex(/^[a-z0-9_]{1,63}$/, 'must be 1-63 lower-case letters, digits or underscores');

/**
 * Change capture through PostgreSQL logical replication: every change is read from the write-ahead
 * log (deletes too, no change column). `slot` and `publication` name ones the user manages; by
 * default the migration creates its own and drops them when it ends.
 */
const CaptureSpec = z.union(
  [
    z.literal('logical'),
    z
      .object({
        method: z.literal('logical', { error: 'must be "logical"' }),
        slot: replicationName.optional(),
        publication: replicationName.optional(),
      })
      .strict(),
  ],
  { error: 'must be "logical" or { method: logical, slot?, publication? }' },
);

/** Catching up with a source that keeps taking writes (used when a table has `delta`, or when given). */
export const CatchUpSpec = z
  .object({
    /** with a change column: how long to wait between rounds once caught up */
    interval: durationText.default('30 seconds'),
    /** the gate opens once the target is at most this far behind the source */
    maxLag: durationText.default('5 seconds'),
    remaining: z
      .number({ error: 'must be a non-negative integer' })
      .int('must be a non-negative integer')
      .min(0, 'must be a non-negative integer')
      .max(1e12)
      .default(1000),
    maxRounds: positiveInt(10_000).default(20),
  })
  .strict();

/**
 * Verify mode. `lagGrace`: how long a target that is a replica may lag. A range that differs is
 * located at once; with a grace, only its located keys are read again on both sides after it, and
 * the keys that converged are dropped. Default 0: a target that is not a replica pays nothing.
 */
const VerifySpec = z
  .object({
    lagGrace: durationText.default('0 seconds'),
  })
  .strict();

export const MigrationSpec = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, 'must be 1-100 characters of A-Z a-z 0-9 . _ -'),
    taskQueue: z.string().min(1).max(200).default('backfill'),
    source: alias,
    target: alias,
    control: alias.optional(),
    mode: z.enum(['copy', 'verify'], { error: 'must be "copy" or "verify"' }).default('copy'),
    concurrency: positiveInt(64).default(4),
    retries: z
      .object({
        rangeAttempts: positiveInt(100).default(3),
        // How long a database may be unreachable (or an activity keep failing) before the
        // migration stops trying by itself and waits in needs_attention for resume or abort.
        unreachable: durationText.optional(),
        // How long an activity may go silent (its worker died, its machine is gone) before Temporal
        // runs it again on another worker: the activities' heartbeat timeout.
        heartbeat: durationText.optional(),
      })
      .strict()
      .default({ rangeAttempts: 3 }),
    tables: z.array(TableSpec).min(1, 'must list at least one table'),
    cutover: CutoverSpec.default({ approval: 'required' }),
    catchUp: CatchUpSpec.optional(),
    verify: VerifySpec.optional(),
    capture: CaptureSpec.optional(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    const refuse = (path: (string | number)[], what = 'not supported yet') => ctx.addIssue({ code: 'custom', path, message: what });
    const targets = new Set<string>();
    spec.tables.forEach((t, i) => {
      const at = (...p: (string | number)[]) => ['tables', i, ...p];
      if (parseSchemaPattern(t.source) !== undefined) {
        // Each table of the schema is bound on its own, keyed by its primary key.
        for (const f of ['key', 'columns', 'omit', 'transform', 'where', 'chunk', 'checks', 'delta'] as const)
          if (t[f] !== undefined) refuse(at(f), 'not with a schema pattern: list that table on its own (an entry of its own wins over the pattern)');
        if (t.target !== undefined && parseSchemaPattern(t.target) === undefined)
          refuse(at('target'), 'with a schema pattern, the target is a schema: "schema.*" or { schema }');
        return;
      }
      if (t.exclude !== undefined) refuse(at('exclude'), 'only with a schema pattern ("schema.*")');
      if (t.target === undefined) return refuse(at('target'), 'is required (a table)');
      const target = t.target as TableRef;
      if (parseSchemaPattern(t.target) !== undefined) refuse(at('target'), 'must be a table when the source is one');
      if (t.delta) {
        if (t.key?.includes(t.delta.column)) refuse(at('delta', 'column'), 'must not be a key column (keys do not change)');
        if (t.transform?.[t.delta.column] !== undefined) refuse(at('delta', 'column'), 'must be copied as it is, not transformed');
        if (t.columns && !t.columns.includes(t.delta.column)) refuse(at('delta', 'column'), `"${t.delta.column}" is not a copied column`);
      }
      const kinds = t.chunk ? (['size', 'interval', 'rows'] as const).filter((k) => t.chunk![k] !== undefined) : ['size'];
      if (kinds.length !== 1) refuse(at('chunk'), 'must give exactly one of size, interval or rows');
      if (t.chunk?.rows !== undefined && t.chunk.column !== undefined && t.key && t.chunk.column !== t.key[0])
        refuse(at('chunk', 'column'), `with rows, ranges are taken on the whole key: the column must be the first key column "${t.key[0]}"`);
      const copied = new Set([...(t.columns ?? []), ...Object.keys(t.transform ?? {})]);
      if (t.columns) {
        for (const k of t.key ?? []) if (!t.columns.includes(k)) refuse(at('columns'), `must include the key column "${k}"`);
      }
      for (const c of Object.keys(t.transform ?? {})) {
        if (t.key?.includes(c)) refuse(at('transform', c), 'a key column cannot be transformed');
        if (c === t.chunk?.column) refuse(at('transform', c), 'the chunk column cannot be transformed');
      }
      const aggregated = new Set((t.checks?.aggregates ?? []).map((a) => a.column));
      for (const c of Object.keys(t.checks?.tolerance ?? {})) if (!aggregated.has(c)) refuse(at('checks', 'tolerance', c), 'names no aggregated column');
      if (t.columns) {
        for (const c of t.checks?.distribution ?? []) if (!copied.has(c)) refuse(at('checks', 'distribution'), `"${c}" is not a copied column`);
        for (const a of t.checks?.aggregates ?? []) if (!copied.has(a.column)) refuse(at('checks', 'aggregates'), `"${a.column}" is not a copied column`);
      }
      const tgt = tableRefKey(target);
      if (targets.has(tgt)) refuse(at('target'), `${showTableRef(target)} is the target of an earlier table too`);
      targets.add(tgt);
    });
    if (spec.mode === 'verify' && spec.tables.some((t) => t.delta))
      refuse(['mode'], 'verify mode copies nothing, so it cannot apply a delta: remove tables[].delta or use mode copy');
    if (spec.capture !== undefined) {
      if (spec.mode === 'verify') refuse(['capture'], 'verify mode copies nothing, so it captures nothing: remove capture or use mode copy');
      spec.tables.forEach((t, i) => {
        if (t.delta) refuse(['tables', i, 'delta'], 'capture: logical reads every change from the log: remove delta');
        if (t.transform) refuse(['tables', i, 'transform'], 'not with capture: logical yet (changes are applied column for column)');
        if (t.where) refuse(['tables', i, 'where'], 'not with capture: logical yet (a change could move a row into or out of the filter)');
      });
    }
    if (spec.cutover.unfreeze && !spec.cutover.freeze) refuse(['cutover', 'unfreeze'], 'needs cutover.freeze');
    const back = spec.cutover.reverse;
    if (back) {
      // The stream back starts where the forward one ended: under the freeze, at the switch.
      if (spec.capture === undefined) refuse(['cutover', 'reverse'], 'needs capture: logical (the way back is a stream from the target)');
      if (!spec.cutover.freeze) refuse(['cutover', 'reverse'], 'needs cutover.freeze (the source takes no writes from the switch on)');
      if (!spec.cutover.switch) refuse(['cutover', 'reverse'], 'needs cutover.switch (the switch the way back undoes)');
      if (back.keep !== undefined && durationText.safeParse(back.keep).success && durationMs(back.keep) < 1000)
        refuse(['cutover', 'reverse', 'keep'], 'must be at least 1 second');
    }
    if (spec.cutover.approvalTimeout !== undefined && durationMs(spec.cutover.approvalTimeout) < 1000)
      refuse(['cutover', 'approvalTimeout'], 'must be at least 1 second');
    if (spec.verify && spec.mode !== 'verify') refuse(['verify'], 'applies to mode verify only (a copy is checked as it is written)');
    if (spec.retries.heartbeat !== undefined && durationText.safeParse(spec.retries.heartbeat).success) {
      const ms = durationMs(spec.retries.heartbeat);
      if (ms < MIN_HEARTBEAT_MS) refuse(['retries', 'heartbeat'], 'must be at least 2 seconds (shorter, a busy worker would be taken for a dead one)');
      if (ms > MAX_HEARTBEAT_MS) refuse(['retries', 'heartbeat'], 'must be at most 10 minutes (a dead worker would go unnoticed that long)');
    }
    if (spec.catchUp && durationMs(spec.catchUp.interval) < 100) refuse(['catchUp', 'interval'], 'must be at least 100 milliseconds');
    if (spec.cutover.approvers && spec.cutover.approvers.length === 0) refuse(['cutover', 'approvers'], 'must name at least one approver when given');
  });

export type MigrationSpec = z.infer<typeof MigrationSpec>;
export type MigrationSpecInput = z.input<typeof MigrationSpec>;
export type TableSpec = z.infer<typeof TableSpec>;

/** Without table statistics, the default range: this many keys of an integer key, or rows of any other. */
export const DEFAULT_CHUNK_SIZE = 100_000;

export type Chunking =
  | { kind: 'size'; column: string; size: number }
  | { kind: 'interval'; column: string; interval: string }
  | { kind: 'rows'; column: string; rows: number }
  /** no `chunk` given: preflight picks key spans for an integer key, row counts for any other, sized from the table */
  | { kind: 'auto'; column: string };

/** The chunking a table asks for; `auto` when it gives none. `key`: the table's key, resolved. */
export function chunkOf(t: Pick<TableSpec, 'chunk'>, key: string[]): Chunking {
  const column = t.chunk?.column ?? key[0];
  if (t.chunk?.interval !== undefined) return { kind: 'interval', column, interval: t.chunk.interval.trim() };
  if (t.chunk?.rows !== undefined) return { kind: 'rows', column, rows: t.chunk.rows };
  if (t.chunk?.size !== undefined) return { kind: 'size', column, size: t.chunk.size };
  return { kind: 'auto', column };
}

/**
 * Whether the source is treated as live: a catch-up phase after the backfill and a final check
 * after the approval. A migration with no delta, no catchUp and no freeze treats its source as
 * static, and the evidence at the gate is the final evidence.
 */
export function isLive(spec: MigrationSpec): boolean {
  return spec.capture !== undefined || spec.catchUp !== undefined || spec.cutover.freeze !== undefined || spec.tables.some((t) => t.delta);
}

/** How long the migration tries again by itself before it waits for a person (`retries.unreachable`), as text and in milliseconds. */
export function waitBound(spec: MigrationSpec): { text: string; ms: number } {
  const text = spec.retries.unreachable ?? DEFAULT_WAIT_BOUND;
  return { text, ms: durationMs(text) };
}

/** The lag grace of verify mode, in milliseconds (0: none). */
export function lagGraceMs(spec: MigrationSpec): number {
  return spec.mode === 'verify' && spec.verify ? durationMs(spec.verify.lagGrace) : 0;
}

/** Catch-up settings with defaults applied. */
export function catchUpOf(spec: MigrationSpec): z.infer<typeof CatchUpSpec> {
  return spec.catchUp ?? CatchUpSpec.parse({});
}

/** The alias holding the ledger. */
export function controlAlias(spec: Pick<MigrationSpec, 'control' | 'target'>): string {
  return spec.control ?? spec.target;
}

/** `tables[0].chunk.size: must be a positive integer` */
function formatIssuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out || '(spec)';
}

export type SpecCheck = { ok: true; spec: MigrationSpec } | { ok: false; problems: string[] };

/** Validate a parsed document (from YAML, JSON or a workflow argument). Pure. */
export function checkSpec(doc: unknown): SpecCheck {
  const r = MigrationSpec.safeParse(doc);
  if (r.success) return { ok: true, spec: r.data };
  const problems = r.error.issues.map((iss) => {
    const keys = (iss as { keys?: string[] }).keys;
    if (iss.code === 'unrecognized_keys' && keys) return keys.map((k) => `${formatIssuePath([...iss.path, k])}: unknown field`).join('\n');
    if (iss.code === 'invalid_type' && /received undefined$/.test(iss.message)) return `${formatIssuePath(iss.path)}: is required`;
    return `${formatIssuePath(iss.path)}: ${iss.message}`;
  });
  return { ok: false, problems: [...new Set(problems.flatMap((p) => p.split('\n')))] };
}

export interface Capture {
  slot: string;
  publication: string;
  /** the user named them: the migration neither creates nor drops them */
  managed: { slot: boolean; publication: boolean };
}

/** A short, stable hash of a name (FNV-1a, 32 bits, hex): keeps derived names unique. Pure. */
function shortHash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/** The migration's slot and publication, or undefined without change capture. Pure (the workflow uses it). */
export function captureOf(spec: Pick<MigrationSpec, 'name' | 'capture'>): Capture | undefined {
  const c = spec.capture;
  if (c === undefined) return undefined;
  const given: { slot?: string; publication?: string } = typeof c === 'string' ? {} : c;
  // Slot names allow [a-z0-9_] only: the spec name, folded, and a hash of it so that "a.b" and "a_b" differ.
  const own = `backfill_${spec.name
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 40)}_${shortHash(spec.name)}`;
  return {
    slot: given.slot ?? own,
    publication: given.publication ?? own,
    managed: { slot: given.slot !== undefined, publication: given.publication !== undefined },
  };
}

/** A per-table activity's input: the spec without the other tables (a schema of thousands of tables would repeat them all in every call), and its table. */
export interface OneTable {
  spec: MigrationSpec;
  tableIndex: number;
  /** absent from inputs scheduled before it was given: then spec.tables[tableIndex] */
  table?: TableSpec;
}

/** The spec narrowed to table `t` for a per-table activity (the workflow side). */
export function oneTable(spec: MigrationSpec, t: number): Required<OneTable> {
  return { spec: { ...spec, tables: [spec.tables[t]] }, tableIndex: t, table: spec.tables[t] };
}

/** The table of a per-table activity's input. */
export function tableOf(input: OneTable): TableSpec {
  return input.table ?? input.spec.tables[input.tableIndex];
}

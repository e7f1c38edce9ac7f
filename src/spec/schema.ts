// The migration spec: the public contract of DESIGN.md section 2, as a zod schema.
// This module is imported by the workflow too, so it must stay pure (no Node built-ins, no I/O).
import { z } from 'zod';

/** One identifier part: a plain name, never SQL. Resolved through the catalog and quoted later. */
const IDENT = /^[\p{L}_][\p{L}\p{N}_$]*$/u;
const identifier = z
  .string()
  .min(1, 'must not be empty')
  .max(63, 'must be at most 63 characters')
  .regex(IDENT, 'must be a plain identifier (letters, digits, _ and $; no quotes, spaces or SQL)');

/** `schema.table` or `table`, each part a plain identifier. */
const tableName = z
  .string()
  .min(1, 'must not be empty')
  .refine((s) => {
    const parts = s.split('.');
    return parts.length <= 2 && parts.every((p) => p.length > 0 && p.length <= 63 && IDENT.test(p));
  }, 'must be "schema.table" or "table", each part a plain identifier (no quotes, spaces or SQL)');

const alias = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_-]{0,62}$/, 'must be a connection alias (a letter, then letters, digits, _ or -)');

const positiveInt = (max: number) =>
  z
    .number({ error: 'must be a positive integer' })
    .int('must be a positive integer')
    .min(1, 'must be a positive integer')
    .max(max, `must be at most ${max}`);

const uniqueList = <T extends z.ZodTypeAny>(item: T) =>
  z
    .array(item)
    .min(1, 'must list at least one column')
    .refine((xs) => new Set(xs as unknown[]).size === xs.length, 'must not repeat a column');

/** Fields of the contract that this version does not implement yet: refused, never ignored. */
const notYet = z.unknown().optional();

export const ChunkSpec = z
  .object({
    column: identifier,
    size: positiveInt(Number.MAX_SAFE_INTEGER).optional(),
    interval: notYet,
    rows: notYet,
  })
  .strict();

export const TableSpec = z
  .object({
    source: tableName,
    target: tableName,
    key: uniqueList(identifier),
    columns: uniqueList(identifier).optional(),
    where: z.string().trim().min(1, 'must not be empty when given').max(10_000).optional(),
    chunk: ChunkSpec.optional(),
    transform: notYet,
    checks: notYet,
    delta: notYet,
  })
  .strict();

const SqlAction = z
  .object({
    connection: alias,
    sql: z.string().trim().min(1, 'must not be empty').max(100_000),
  })
  .strict();

export const CutoverSpec = z
  .object({
    approval: z.enum(['required', 'auto'], { error: 'must be "required" or "auto"' }).default('required'),
    approvers: z.array(z.string().trim().min(1, 'must not be empty').max(200)).optional(),
    switch: SqlAction.optional(),
    freeze: notYet,
    unfreeze: notYet,
    approvalTimeout: notYet,
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
    retries: z.object({ rangeAttempts: positiveInt(100).default(3) }).strict().default({ rangeAttempts: 3 }),
    tables: z.array(TableSpec).min(1, 'must list at least one table'),
    cutover: CutoverSpec.default({ approval: 'required' }),
  })
  .strict()
  .superRefine((spec, ctx) => {
    const refuse = (path: (string | number)[], what = 'not supported yet') =>
      ctx.addIssue({ code: 'custom', path, message: what });
    if (spec.mode === 'verify') refuse(['mode'], 'not supported yet: mode "verify"');
    const targets = new Set<string>();
    spec.tables.forEach((t, i) => {
      for (const f of ['transform', 'checks', 'delta'] as const) if (t[f] !== undefined) refuse(['tables', i, f]);
      if (t.chunk?.interval !== undefined) refuse(['tables', i, 'chunk', 'interval']);
      if (t.chunk?.rows !== undefined) refuse(['tables', i, 'chunk', 'rows']);
      if (t.chunk && t.chunk.size === undefined && t.chunk.interval === undefined && t.chunk.rows === undefined)
        refuse(['tables', i, 'chunk', 'size'], 'must be a positive integer');
      // Ranges are taken on a key column, so no row can have a NULL range value.
      const chunkColumn = t.chunk?.column ?? t.key[0];
      if (!t.key.includes(chunkColumn)) refuse(['tables', i, 'chunk', 'column'], 'not supported yet: a chunk column outside the key');
      if (t.columns) {
        for (const k of t.key) if (!t.columns.includes(k)) refuse(['tables', i, 'columns'], `must include the key column "${k}"`);
      }
      const tgt = t.target.includes('.') ? t.target : `public.${t.target}`;
      if (targets.has(tgt)) refuse(['tables', i, 'target'], `"${t.target}" is the target of an earlier table too`);
      targets.add(tgt);
    });
    for (const f of ['freeze', 'unfreeze', 'approvalTimeout'] as const)
      if (spec.cutover[f] !== undefined) refuse(['cutover', f]);
    if (spec.cutover.approvers && spec.cutover.approvers.length === 0)
      refuse(['cutover', 'approvers'], 'must name at least one approver when given');
  });

export type MigrationSpec = z.infer<typeof MigrationSpec>;
export type MigrationSpecInput = z.input<typeof MigrationSpec>;
export type TableSpec = z.infer<typeof TableSpec>;

export const DEFAULT_CHUNK_SIZE = 100_000;

/** The chunking of a table with defaults applied. */
export function chunkOf(t: TableSpec): { column: string; size: number } {
  return { column: t.chunk?.column ?? t.key[0], size: t.chunk?.size ?? DEFAULT_CHUNK_SIZE };
}

/** The alias holding the ledger. */
export function controlAlias(spec: MigrationSpec): string {
  return spec.control ?? spec.target;
}

/** `tables[0].chunk.size: must be a positive integer` */
export function formatIssuePath(path: readonly PropertyKey[]): string {
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
    if (iss.code === 'unrecognized_keys' && keys)
      return keys.map((k) => `${formatIssuePath([...iss.path, k])}: unknown field`).join('\n');
    if (iss.code === 'invalid_type' && /received undefined$/.test(iss.message)) return `${formatIssuePath(iss.path)}: is required`;
    return `${formatIssuePath(iss.path)}: ${iss.message}`;
  });
  return { ok: false, problems: [...new Set(problems.flatMap((p) => p.split('\n')))] };
}

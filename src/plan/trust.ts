// The worker's own trust boundary. Whoever can start a workflow on the task queue hands the worker a
// spec; the policy decides, on the worker and never from the spec, what such a spec may make it do:
// run inline action SQL (cutover.freeze, unfreeze, switch), write through which aliases, and whether
// `where` and `transform` may read other relations than the source table.
//
//   BACKFILL_POLICY=strict              no inline actions, expressions over the source table only
//   BACKFILL_POLICY_ACTIONS=allow|deny|sha256:<hex>[,sha256:<hex>…]   inline action SQL, or only these
//   BACKFILL_POLICY_WRITABLE=<alias>[,<alias>…]                       aliases that may be written
//   BACKFILL_POLICY_EXPRESSIONS=any|source-table
// Nothing set: today's behaviour (everything allowed), which the README's examples rely on.
import { setting } from '../settings';
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { failure } from '../domain/failures';
import { controlAlias, type MigrationSpec } from '../spec/schema';
import { PARTITION_TREE_SQL, explainJsonSql } from './sql';

export interface WorkerPolicy {
  /** inline SQL of the cutover actions: allowed, refused, or only the SQL of these SHA-256 hashes */
  actions: 'allow' | 'deny' | string[];
  /** aliases the worker may write (target, control, action connections); undefined: any */
  writable?: string[];
  /** `where` and `transform` may read relations other than the source table */
  expressions: 'any' | 'source-table';
}

function workerPolicy(env: NodeJS.ProcessEnv = process.env): WorkerPolicy {
  const strict = setting('policy', env) === 'strict';
  const actions = setting('policyActions', env) ?? (strict ? 'deny' : 'allow');
  const writable = setting('policyWritable', env);
  const expressions = setting('policyExpressions', env) ?? (strict ? 'source-table' : 'any');
  return { actions, writable, expressions };
}

export function sqlHash(sql: string): string {
  return createHash('sha256').update(sql.trim()).digest('hex');
}

const ACTIONS = ['freeze', 'unfreeze', 'switch'] as const;

/** What the spec asks of the worker that its policy refuses, each naming the rule. */
function policyProblems(spec: MigrationSpec, p: WorkerPolicy = workerPolicy()): string[] {
  const out: string[] = [];
  for (const name of ACTIONS) {
    const action = spec.cutover[name];
    if (!action) continue;
    if (p.actions === 'deny') out.push(`cutover.${name}: inline SQL is not allowed on this worker (policy: BACKFILL_POLICY_ACTIONS=deny)`);
    else if (Array.isArray(p.actions) && !p.actions.includes(sqlHash(action.sql)))
      out.push(`cutover.${name}: this SQL (sha256:${sqlHash(action.sql)}) is not on this worker's allow-list (policy: BACKFILL_POLICY_ACTIONS)`);
  }
  if (p.writable) {
    const writes: [string, string][] = [
      ['target', spec.target],
      ['control', controlAlias(spec)],
      ...ACTIONS.flatMap((n) => (spec.cutover[n] ? [[`cutover.${n}.connection`, spec.cutover[n].connection] as [string, string]] : [])),
    ];
    for (const [at, alias] of writes)
      if (!p.writable.includes(alias))
        out.push(`${at}: alias "${alias}" may not be written by this worker (policy: BACKFILL_POLICY_WRITABLE=${p.writable.join(',')})`);
  }
  return [...new Set(out)];
}

/** Refuses, non-retryably, a spec the policy does not allow. */
export function enforcePolicy(spec: MigrationSpec): void {
  const problems = policyProblems(spec);
  if (problems.length) throw failure('PolicyRefused', `this worker's policy refuses the spec:\n${problems.map((x) => `  ${x}`).join('\n')}`);
}

/** The relations a query reads, from the planner (qualified): what `where` and `transform` may reach. */
async function relationsRead(c: pg.ClientBase, query: string): Promise<string[]> {
  const r = await c.query(explainJsonSql(query));
  const plan = (typeof r.rows[0]['QUERY PLAN'] === 'string' ? JSON.parse(r.rows[0]['QUERY PLAN']) : r.rows[0]['QUERY PLAN']) as { Plan: unknown }[];
  const out = new Set<string>();
  const walk = (n: unknown) => {
    if (!n || typeof n !== 'object') return;
    const o = n as Record<string, unknown>;
    if (typeof o['Relation Name'] === 'string') out.add(`${String(o.Schema)}.${o['Relation Name']}`);
    for (const v of Object.values(o)) if (Array.isArray(v)) v.forEach(walk);
    if (o.Plan) walk(o.Plan);
  };
  plan.forEach((x) => walk(x.Plan));
  return [...out];
}

/**
 * With `expressions: source-table`: the relations the source query reads beyond the source table (and
 * its partitions), each a problem naming the rule. A function can still read a table the planner does
 * not show; the policy is about what a spec can write in plain SQL.
 */
export async function expressionProblems(
  c: pg.ClientBase,
  at: string,
  sourceTable: string,
  query: string,
  p: WorkerPolicy = workerPolicy(),
): Promise<string[]> {
  if (p.expressions !== 'source-table') return [];
  const own = new Set((await c.query(PARTITION_TREE_SQL, [sourceTable])).rows.map((r) => String(r.name)));
  return (await relationsRead(c, query))
    .filter((r) => !own.has(r))
    .map(
      (r) =>
        `${at}.where or .transform: reads ${r}; this worker allows expressions over the source table only (policy: BACKFILL_POLICY_EXPRESSIONS=source-table)`,
    );
}

// Every environment variable the product reads, in one typed table: its name, default, what it
// accepts and what it means. Each is parsed here, with a sentence naming the variable when a value
// will not do (never a NaN handed on to pg or the SDK, never a silent fallback); the worker checks
// them all before it polls. The README's Environment table is this table (test/settings.test.ts).
// Only this module and src/spec/aliases.ts (the BACKFILL_DB_<ALIAS> connection strings) read the
// environment.
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

type Env = NodeJS.ProcessEnv;

/** A value that will not do: the sentence says which variable, what it holds and what it takes. */
export class SettingError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
    this.name = 'SettingError';
  }
}

interface Def<T> {
  env: string;
  /** what it takes, for the README */
  takes: string;
  /** the default as the README shows it ('' when unset means off) */
  shown: string;
  doc: string;
  /** the value of the raw text (never called with undefined or blank) */
  parse: (raw: string, env: string) => T;
  fallback: () => T;
}

const refuse = (env: string, raw: string, takes: string): never => {
  throw new SettingError(env, `${env} must be ${takes}, not "${raw}"`);
};

function int(min: number, max: number) {
  return (raw: string, env: string): number => {
    const n = Number(raw);
    return Number.isInteger(n) && n >= min && n <= max ? n : refuse(env, raw, `an integer from ${min} to ${max}`);
  };
}

/** PostgreSQL's duration syntax for a session setting: `30min`, `10s`, `250ms`, `5000` (ms), `0` (none). */
function pgDuration(raw: string, env: string): string {
  return /^\d+(\.\d+)?\s*(ms|s|min|h|d)?$/.test(raw.trim()) ? raw.trim() : refuse(env, raw, 'a PostgreSQL duration such as 30min, 10s or 250ms');
}

function oneOf<T extends string>(values: readonly T[]) {
  return (raw: string, env: string): T => (values.includes(raw.trim() as T) ? (raw.trim() as T) : refuse(env, raw, values.map((v) => `"${v}"`).join(' or ')));
}

const text = (raw: string) => raw.trim();
const flag = () => true;

function hostPort(raw: string, env: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(raw.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) refuse(env, raw, 'host:port (for example 0.0.0.0:9464)');
  return `${m![1] || '0.0.0.0'}:${port}`;
}

function actionsPolicy(raw: string, env: string): 'allow' | 'deny' | string[] {
  const v = raw.trim();
  if (v === 'allow' || v === 'deny') return v;
  const hashes = v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  const bad = hashes.find((h) => !/^(sha256:)?[0-9a-fA-F]{64}$/.test(h));
  if (bad !== undefined || hashes.length === 0) refuse(env, raw, '"allow", "deny" or a list of sha256:<64 hex digits> separated by commas');
  return hashes.map((h) => h.replace(/^sha256:/i, '').toLowerCase());
}

const list = (raw: string) =>
  raw
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

const def = <T>(d: Def<T>) => d;

/** The table. Keys are how the code asks for a setting; `env` is the variable. */
export const SETTINGS = {
  temporalAddress: def({
    env: 'TEMPORAL_ADDRESS',
    takes: 'host:port',
    shown: 'localhost:7233',
    doc: "the Temporal frontend (the CLI and the worker); `TEMPORAL_API_KEY`, `TEMPORAL_TLS*` and profiles as the SDK's envconfig reads them",
    parse: text,
    fallback: () => undefined as string | undefined,
  }),
  temporalNamespace: def({
    env: 'TEMPORAL_NAMESPACE',
    takes: 'a namespace',
    shown: 'default',
    doc: 'the Temporal namespace',
    parse: text,
    fallback: () => undefined as string | undefined,
  }),
  taskQueue: def({
    env: 'BACKFILL_TASK_QUEUE',
    takes: 'a task queue name',
    shown: 'backfill',
    doc: 'the task queue the worker polls',
    parse: text,
    fallback: () => 'backfill',
  }),
  temporalCliPath: def({
    env: 'TEMPORAL_CLI_PATH',
    takes: 'a file path',
    shown: '',
    doc: 'an existing `temporal` binary for the dev server (demo, tests, bench)',
    parse: text,
    fallback: () => undefined as string | undefined,
  }),
  cacheDir: def({
    env: 'BACKFILL_CACHE_DIR',
    takes: 'a folder',
    shown: '~/.cache/backfill',
    doc: 'where the Temporal CLI is built and kept',
    parse: text,
    fallback: () => join(homedir(), '.cache', 'backfill'),
  }),
  statementTimeout: def({
    env: 'BACKFILL_STATEMENT_TIMEOUT',
    takes: 'a PostgreSQL duration',
    shown: '30min',
    doc: "every session's `statement_timeout`; a connection silent both ways for longer than this (plus 5 s) while a statement is outstanding is presumed dead",
    parse: pgDuration,
    fallback: () => '30min',
  }),
  lockTimeout: def({
    env: 'BACKFILL_LOCK_TIMEOUT',
    takes: 'a PostgreSQL duration',
    shown: '10s',
    doc: "every session's `lock_timeout`",
    parse: pgDuration,
    fallback: () => '10s',
  }),
  stallTimeout: def({
    env: 'BACKFILL_STALL_TIMEOUT',
    takes: 'seconds, 1 to 86400',
    shown: '120',
    doc: "seconds a range's COPY may go without a byte before the attempt is abandoned and retried",
    parse: int(1, 86_400),
    fallback: () => 120,
  }),
  poolMax: def({
    env: 'BACKFILL_POOL_MAX',
    takes: 'an integer, 1 to 1000',
    shown: '12',
    doc: 'connections per pool (one pool per connection alias and access)',
    parse: int(1, 1000),
    fallback: () => 12,
  }),
  sessions: def({
    env: 'BACKFILL_SESSIONS',
    takes: 'an integer, 1 to 10000',
    shown: '',
    doc: 'at most this many sessions of ours at once on any one database, across every worker (give every worker the same value); `BACKFILL_SESSIONS_<ALIAS>` sets it for one alias. A session waits, holding nothing, until one of ours ends; unset: no cap. See [Scaling out](#scaling-out)',
    parse: int(1, 10_000),
    fallback: () => undefined as number | undefined,
  }),
  maxActivities: def({
    env: 'BACKFILL_MAX_ACTIVITIES',
    takes: 'an integer, 1 to 10000',
    shown: '32',
    doc: 'activities one worker runs at once',
    parse: int(1, 10_000),
    fallback: () => 32,
  }),
  stickyTimeout: def({
    env: 'BACKFILL_STICKY_TIMEOUT',
    takes: 'seconds, 1 to 600',
    shown: '10',
    doc: "seconds a migration's next workflow step waits for the worker that ran its last one (it keeps the migration in memory) before any worker takes it: a worker that died without stopping holds its migrations up for `retries.heartbeat` and then up to this long",
    parse: int(1, 600),
    fallback: () => 10,
  }),
  locateWholeRows: def({
    env: 'BACKFILL_LOCATE_WHOLE_ROWS',
    takes: 'rows, 0 or more',
    shown: '20000',
    doc: 'rows (on either side) up to which a range that differs is compared whole in the worker when locating: one scan per side of its keys and row hashes (past that, parsing the rows in the worker costs more than a second scan in the databases); larger ranges are narrowed by key buckets in the databases; `0`: always by buckets',
    parse: int(0, 100_000_000),
    fallback: () => 20_000,
  }),
  windowProof: def({
    env: 'BACKFILL_WINDOW_PROOF',
    takes: '"rows" or "counters"',
    shown: 'rows',
    doc: "how change capture's final window proves, under the freeze, that the stream carried every write since the checkpoint: `rows`, one scan of each side for the row versions written since (by their transaction ids), the rest counted and their keys summed; `counters`, the source's write counters first (nothing read but the catalog, but they prove only a source whose other sessions have all been idle for 10.5 s), the rows when they cannot. Either way, what neither proves is measured range by range. See *the final window* in [Change capture](#change-capture-capture-logical)",
    parse: oneOf(['rows', 'counters'] as const),
    fallback: () => 'rows' as const,
  }),
  metricsAddress: def({
    env: 'BACKFILL_METRICS_ADDRESS',
    takes: 'host:port',
    shown: '',
    doc: 'where the worker serves Prometheus metrics at `/metrics` (`0.0.0.0:9464`; `:9464` binds every interface); unset: no endpoint. See [Metrics](#metrics)',
    parse: hostPort,
    fallback: () => undefined as string | undefined,
  }),
  debug: def({ env: 'BACKFILL_DEBUG', takes: 'anything', shown: '', doc: 'print stack traces of CLI errors', parse: flag, fallback: () => false }),
  policy: def({
    env: 'BACKFILL_POLICY',
    takes: '`strict`',
    shown: '',
    doc: "`strict`: the worker's own trust policy below, at its safe setting (no inline action SQL, expressions over the source table only). Unset: everything allowed, as the examples here use it",
    parse: oneOf(['strict'] as const),
    fallback: () => undefined as 'strict' | undefined,
  }),
  policyActions: def({
    env: 'BACKFILL_POLICY_ACTIONS',
    takes: '`allow`, `deny` or `sha256:<hex>,…`',
    shown: '',
    doc: 'whether `cutover.freeze`, `unfreeze` and `switch` SQL may run, or only the statements of these hashes (a refusal prints the hash of the one refused); unset: `deny` under `strict`, else `allow`',
    parse: actionsPolicy,
    fallback: () => undefined as 'allow' | 'deny' | string[] | undefined,
  }),
  policyWritable: def({
    env: 'BACKFILL_POLICY_WRITABLE',
    takes: '`alias,…`',
    shown: '',
    doc: 'the only aliases the worker writes through (target, control, action connections); unset: any',
    parse: list,
    fallback: () => undefined as string[] | undefined,
  }),
  policyExpressions: def({
    env: 'BACKFILL_POLICY_EXPRESSIONS',
    takes: '`any` or `source-table`',
    shown: '',
    doc: 'whether `where` and `transform` may read relations other than the source table (and its partitions), judged by the planner; a function that reads a table is not seen; unset: `source-table` under `strict`, else `any`',
    parse: oneOf(['any', 'source-table'] as const),
    fallback: () => undefined as 'any' | 'source-table' | undefined,
  }),
  bundleAtStart: def({
    env: 'BACKFILL_BUNDLE_AT_START',
    takes: 'anything',
    shown: '',
    doc: 'development: bundle the workflow code from the sources when the worker starts instead of using the bundle `npm run build` made',
    parse: flag,
    fallback: () => false,
  }),
  columns: def({
    env: 'COLUMNS',
    takes: 'an integer',
    shown: '80',
    doc: "the terminal's width for `status --watch` when the terminal does not say it (the shell's; anything else: 80)",
    parse: (raw) => (Number.isInteger(Number(raw)) && Number(raw) > 0 ? Number(raw) : 80),
    fallback: () => 80,
  }),
} as const;

export type SettingKey = keyof typeof SETTINGS;
export type SettingValue<K extends SettingKey> = ReturnType<(typeof SETTINGS)[K]['fallback']> | ReturnType<(typeof SETTINGS)[K]['parse']>;

/** One setting's value: parsed from the environment, or its default when unset or blank. Throws a SettingError for a value that will not do. */
export function setting<K extends SettingKey>(key: K, env: Env = process.env): SettingValue<K> {
  const d = SETTINGS[key] as Def<SettingValue<K>>;
  const raw = env[d.env];
  return raw === undefined || raw.trim() === '' ? d.fallback() : d.parse(raw, d.env);
}

/** Every setting that will not do, in a sentence each (empty: all good). */
export function settingProblems(env: Env = process.env): string[] {
  const out: string[] = [];
  for (const key of Object.keys(SETTINGS) as SettingKey[]) {
    try {
      setting(key, env);
    } catch (e) {
      if (e instanceof SettingError) out.push(e.message);
      else throw e;
    }
  }
  return out;
}

/** The folders of PATH, where a `temporal` binary may be found. */
export function executableDirs(env: Env = process.env): string[] {
  return (env.PATH ?? '').split(delimiter).filter(Boolean);
}

/** The README's Environment table: the connection strings, then this table. */
export function settingsMarkdown(): string {
  const rows = [
    '| variable | takes | default | meaning |',
    '|---|---|---|---|',
    '| `BACKFILL_DB_<ALIAS>` | a connection string | | the connection for alias `<ALIAS>` (upper-cased, non-alphanumerics as `_`); worker side only, and the CLI for `validate` and `report --ledger` |',
    ...Object.values(SETTINGS).map((d: Def<unknown>) => `| \`${d.env}\` | ${d.takes} | ${d.shown ? `\`${d.shown}\`` : ''} | ${d.doc} |`),
  ];
  return rows.join('\n');
}

// Reading what a Prometheus endpoint serves (the text exposition format), and the metric names a
// Grafana dashboard's queries use: the metrics test scrapes a real worker, the compose test reads the
// dashboard file, and both hold the dashboard to what the worker really exports.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cli';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  samples: Sample[];
  /** metric family -> counter | gauge | histogram | … (from the `# TYPE` lines) */
  types: Map<string, string>;
  text: string;
}

const unescape = (v: string) => v.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));

export function parseScrape(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1], type[2]);
    if (!line.trim() || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = unescape(l[2]);
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { samples, types, text };
}

/** The samples of `name` whose labels include `match`. */
export function select(s: Scrape, name: string, match: Record<string, string> = {}): Sample[] {
  return s.samples.filter((x) => x.name === name && Object.entries(match).every(([k, v]) => x.labels[k] === v));
}

/** Their sum (a counter is split by the SDK's labels: activity type, task queue, namespace). */
export function total(s: Scrape, name: string, match: Record<string, string> = {}): number {
  return select(s, name, match).reduce((a, x) => a + x.value, 0);
}

export const DASHBOARD = join(ROOT, 'deploy', 'grafana', 'dashboards', 'backfill.json');

interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

/** Every PromQL query of the dashboard (panels, nested rows, template variables), with its panel. */
export function dashboardQueries(file = DASHBOARD): { panel: string; expr: string }[] {
  const d = JSON.parse(readFileSync(file, 'utf8')) as {
    panels: Panel[];
    templating?: { list?: { name: string; type: string; query?: string | { query?: string } }[] };
  };
  const out: { panel: string; expr: string }[] = [];
  const walk = (ps: Panel[]) => {
    for (const p of ps) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ panel: p.title ?? '?', expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(d.panels);
  // A `datasource` variable's query is a plugin type, not PromQL.
  for (const v of (d.templating?.list ?? []).filter((x) => x.type === 'query')) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    if (q) out.push({ panel: `variable ${v.name}`, expr: q });
  }
  return out;
}

/** The metric families a query names (`foo_bucket` of a histogram is `foo`). */
export function metricNamesIn(expr: string): string[] {
  const names = expr.match(/\b(?:backfill|temporal)_[a-z0-9_]+\b/g) ?? [];
  return [...new Set(names.map((n) => n.replace(/_(bucket|sum|count)$/, '')))];
}

/** Prometheus's names: lower snake_case (metric names may also hold `:`, kept for recording rules). */
export const SNAKE_CASE = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/;

/** The base units a name may end in, by the unit (UCUM, as the SDK takes it) the metric declares. */
const BASE_UNITS: Record<string, string> = { s: 'seconds', By: 'bytes' };
/** Units that are not base units: a duration is in seconds, a size in bytes, a ratio 0…1. */
const NOT_BASE = [
  'milliseconds',
  'millis',
  'ms',
  'microseconds',
  'us',
  'nanoseconds',
  'ns',
  'minutes',
  'hours',
  'days',
  'kilobytes',
  'kb',
  'megabytes',
  'mb',
  'mib',
  'gb',
  'bits',
  'percent',
  'pct',
];
/** Suffixes the exposition format gives the series of a histogram or a summary, and labels it uses. */
const RESERVED_SUFFIXES = ['bucket', 'sum', 'count', 'created'];
const RESERVED_LABELS = ['le', 'quantile'];

/**
 * What keeps a metric of ours from Prometheus's naming convention (https://prometheus.io/docs/practices/naming/):
 * the application's prefix, snake_case, a counter ending in `_total` and nothing else doing so, the
 * base unit (seconds, bytes) at the end of the name (before `_total`) and declared, no other unit,
 * snake_case labels that are neither reserved nor ones the worker adds (`added`). [] when it follows it.
 */
export function namingProblems(d: { name: string; kind: string; unit?: string; labels: readonly string[] }, added: readonly string[] = []): string[] {
  const out: string[] = [];
  const { name } = d;
  if (!SNAKE_CASE.test(name)) out.push(`${name}: not snake_case`);
  if (!name.startsWith('backfill_')) out.push(`${name}: not prefixed backfill_`);
  const counter = d.kind === 'counter';
  if (counter !== name.endsWith('_total')) out.push(counter ? `${name}: a counter ends in _total` : `${name}: only a counter ends in _total`);
  const base = name.replace(/_total$/, '');
  const words = base.split('_');
  if (RESERVED_SUFFIXES.includes(words[words.length - 1])) out.push(`${name}: ends in a suffix of the exposition format`);
  for (const w of words) if (NOT_BASE.includes(w)) out.push(`${name}: "${w}" is not a base unit (seconds, bytes)`);
  const unitWord = d.unit === undefined ? undefined : BASE_UNITS[d.unit];
  if (d.unit !== undefined && !unitWord) out.push(`${name}: unit ${d.unit} is not a base unit (${Object.keys(BASE_UNITS).join(', ')})`);
  for (const [unit, word] of Object.entries(BASE_UNITS)) {
    const at = words.indexOf(word);
    if (word === unitWord && (at < 0 || at !== words.length - 1 || words.lastIndexOf(word) !== at))
      out.push(`${name}: the unit ${word} goes last${counter ? ', before _total' : ''}, once`);
    if (word !== unitWord && at >= 0) out.push(`${name}: names ${word} but does not declare unit ${unit}`);
  }
  const seen = new Set<string>();
  for (const l of d.labels) {
    if (!SNAKE_CASE.test(l)) out.push(`${name}: label ${l} is not snake_case`);
    if (RESERVED_LABELS.includes(l) || l.startsWith('__')) out.push(`${name}: label ${l} is reserved`);
    if (added.includes(l)) out.push(`${name}: label ${l} is added by the worker`);
    if (seen.has(l)) out.push(`${name}: label ${l} twice`);
    seen.add(l);
  }
  return out;
}

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
  const d = JSON.parse(readFileSync(file, 'utf8')) as { panels: Panel[]; templating?: { list?: { name: string; type: string; query?: string | { query?: string } }[] } };
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

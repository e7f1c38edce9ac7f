// docker-compose.yml is for users (no Docker engine runs here): check that it is valid and that it
// wires what the worker needs. The example spec must validate and name the aliases it provides.
// Prometheus scrapes the worker where it serves metrics; Grafana gets Prometheus and the dashboard,
// whose queries name only metrics the worker exports (test/metrics.test.ts checks them live).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { checkSpec } from '../src/spec/schema';
import { envNameForAlias } from '../src/spec/aliases';
import { SEARCH_ATTRIBUTES } from '../src/workflows/search-attributes';
import { ROOT } from './helpers/cli';
import { SERVER_SETTINGS } from '../src/infra/temporal';
import { METRIC_DEFS } from '../src/metrics/catalog';
import { METRICS_ADDRESS_ENV, metricsAddress } from '../src/metrics/runtime';
import { DASHBOARD, dashboardQueries, metricNamesIn } from './helpers/prometheus';

type Service = {
  image?: string;
  build?: string;
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: string[];
  ports?: string[];
  volumes?: string[];
};

const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { uniqueKeys: true }) as {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
};

test('compose: every service has an image or a build, and every dependency exists', () => {
  const names = Object.keys(compose.services);
  assert.deepEqual(names.sort(), ['grafana', 'prometheus', 'source-db', 'target-db', 'temporal', 'worker']);
  for (const [name, s] of Object.entries(compose.services)) {
    assert.ok(s.image || s.build, `${name} has neither image nor build`);
    for (const d of s.depends_on ?? []) assert.ok(names.includes(d), `${name} depends on unknown ${d}`);
    for (const p of s.ports ?? []) assert.match(p, /^\d+:\d+$/);
  }
  assert.ok(existsSync(join(ROOT, 'Dockerfile')), 'the worker is built from the Dockerfile');
});

test('compose: the dev server registers the contract search attributes, and runs with the settings our own dev server has', () => {
  const cmd = compose.services.temporal.command!.join(' ');
  for (const sa of Object.values(SEARCH_ATTRIBUTES)) assert.match(cmd, new RegExp(`--search-attribute ${sa}=Keyword`));
  assert.ok(cmd.includes(SERVER_SETTINGS.join(' ')), `the temporal service runs start-dev with ${SERVER_SETTINGS.join(' ')}`);
});

test('compose: the worker gets the connections the example spec names, and Temporal', () => {
  const env = compose.services.worker.environment!;
  assert.equal(env.TEMPORAL_ADDRESS, 'temporal:7233');
  const spec = checkSpec(parse(readFileSync(join(ROOT, 'examples', 'orders-v2.yaml'), 'utf8')));
  assert.ok(spec.ok, spec.ok ? '' : spec.problems.join('\n'));
  if (!spec.ok) return;
  for (const alias of [spec.spec.source, spec.spec.target]) {
    const url = env[envNameForAlias(alias)];
    assert.match(url ?? '', /^postgresql:\/\/[^@]+@(source|target)-db:5432\//, `no connection for alias ${alias}`);
  }
});

/** A service's bind mounts (`./host:/container[:ro]`): host path in the repo, container path. */
function mounts(service: string): { host: string; at: string }[] {
  return (compose.services[service].volumes ?? []).flatMap((v) => {
    const [host, at] = v.split(':');
    return host.startsWith('./') ? [{ host: join(ROOT, host), at }] : [];
  });
}

/** The repo file behind a container path of `service` (through its bind mounts). */
function fileAt(service: string, path: string): string {
  const m = mounts(service).find((x) => path === x.at || path.startsWith(`${x.at}/`));
  assert.ok(m, `${service}: nothing is mounted at ${path}`);
  return join(m.host, path.slice(m.at.length));
}

const yamlFile = <T>(file: string) => parse(readFileSync(file, 'utf8'), { uniqueKeys: true }) as T;

test('compose: every bind mount names a file of the repo, every named volume is declared', () => {
  for (const [name, s] of Object.entries(compose.services)) {
    for (const v of s.volumes ?? []) {
      const host = v.split(':')[0];
      if (host.startsWith('./')) assert.ok(existsSync(join(ROOT, host)), `${name} mounts ${host}, which does not exist`);
      else assert.ok(compose.volumes && host in compose.volumes, `${name} uses volume ${host}, which is not declared`);
    }
  }
});

test('compose: Prometheus scrapes the worker where the worker serves metrics', () => {
  const addr = metricsAddress(compose.services.worker.environment);
  assert.ok(addr, `the worker has no ${METRICS_ADDRESS_ENV}`);
  const port = addr.split(':').pop();
  const cmd = compose.services.prometheus.command!;
  const configPath = cmd.find((a) => a.startsWith('--config.file='))!.split('=')[1];
  const config = yamlFile<{ scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] }>(fileAt('prometheus', configPath));
  const targets = config.scrape_configs.flatMap((c) => c.static_configs.flatMap((x) => x.targets));
  assert.deepEqual(targets, [`worker:${port}`]);
  assert.ok(compose.services.prometheus.depends_on?.includes('worker'));
});

test('compose: Grafana gets Prometheus as its data source and the dashboard from the repo', () => {
  const g = compose.services.grafana;
  const provisioning = fileAt('grafana', '/etc/grafana/provisioning');
  const ds = yamlFile<{ datasources: { type: string; url: string; uid: string }[] }>(join(provisioning, 'datasources', 'prometheus.yml')).datasources;
  const promPort = compose.services.prometheus.ports![0].split(':')[1];
  assert.deepEqual(
    ds.map((d) => [d.type, d.url]),
    [['prometheus', `http://prometheus:${promPort}`]],
  );
  const providers = yamlFile<{ providers: { type: string; options: { path: string } }[] }>(join(provisioning, 'dashboards', 'backfill.yml')).providers;
  for (const p of providers) assert.ok(existsSync(join(fileAt('grafana', p.options.path), 'backfill.json')), `no dashboard at ${p.options.path}`);
  assert.equal(fileAt('grafana', g.environment!.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH), DASHBOARD);
});

test("the dashboard: valid JSON, a migration variable, and every query names metrics the worker exports (ours, all of them, and the SDK's)", () => {
  const d = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    uid: string;
    panels: { id: number; type: string; datasource?: { uid: string } }[];
    templating: { list: { name: string }[] };
  };
  assert.ok(d.uid);
  const ids = d.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  for (const p of d.panels) if (p.type !== 'row') assert.equal(p.datasource?.uid, '${datasource}', `panel ${p.id} uses the dashboard's data source`);
  assert.deepEqual(
    d.templating.list.map((v) => v.name),
    ['datasource', 'migration', 'task_queue'],
  );
  const ours = new Map(METRIC_DEFS.map((m) => [m.name, m]));
  // The SDK's runtime metrics the dashboard shows (test/metrics.test.ts sees them in a real scrape).
  const sdk = ['temporal_activity_schedule_to_start_latency', 'temporal_activity_execution_latency', 'temporal_worker_task_slots_used', 'temporal_num_pollers'];
  const used = new Set<string>();
  for (const q of dashboardQueries()) {
    for (const n of metricNamesIn(q.expr)) {
      used.add(n);
      assert.ok(ours.has(n) || sdk.includes(n), `panel "${q.panel}" queries ${n}: not a metric of ours (src/metrics/catalog.ts) nor a known SDK metric`);
      if (ours.get(n)?.kind === 'histogram') assert.match(q.expr, new RegExp(`${n}_bucket`), `${n} is a histogram: query its buckets`);
      // A metric of a migration follows the migration variable; one of the worker's activities, the task queue's.
      if (ours.has(n) && !q.panel.startsWith('variable ')) {
        if (ours.get(n)!.labels.includes('migration')) assert.match(q.expr, /migration=~"\$migration"/, `panel "${q.panel}" follows the migration variable`);
        else assert.match(q.expr, /task_queue=~"\$task_queue"/, `panel "${q.panel}" follows the task queue variable`);
      }
    }
  }
  for (const m of METRIC_DEFS) assert.ok(used.has(m.name), `the dashboard shows no ${m.name}`);
});

test('the README documents every metric (name, type, labels) and the metrics address', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  for (const m of METRIC_DEFS) {
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${m.name}\` |`));
    assert.ok(row, `README: no table row for ${m.name}`);
    assert.ok(row.includes(` ${m.kind} `), `README: ${m.name} is a ${m.kind}`);
    for (const l of m.labels) assert.ok(row.includes(`\`${l}\``), `README: ${m.name} has label ${l}`);
  }
  assert.match(readme, new RegExp(`^\\| \`${METRICS_ADDRESS_ENV}\` \\|`, 'm'));
});

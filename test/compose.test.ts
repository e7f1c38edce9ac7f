// docker-compose.yml is for users (no Docker engine runs here): check that it is valid and that it
// wires what the worker needs. The example spec must validate and name the aliases it provides.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { checkSpec } from '../src/spec/schema';
import { envNameForAlias } from '../src/spec/aliases';
import { SEARCH_ATTRIBUTES } from '../src/workflows/messages';
import { ROOT } from './helpers/cli';
import { SERVER_SETTINGS } from '../src/infra/temporal';

type Service = { image?: string; build?: string; command?: string[]; environment?: Record<string, string>; depends_on?: string[]; ports?: string[] };

const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { uniqueKeys: true }) as {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
};

test('compose: every service has an image or a build, and every dependency exists', () => {
  const names = Object.keys(compose.services);
  assert.deepEqual(names.sort(), ['source-db', 'target-db', 'temporal', 'worker']);
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

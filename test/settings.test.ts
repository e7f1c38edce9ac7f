// One table of settings: every environment variable parsed in src/settings.ts with a sentence for a
// value that will not do, the README's Environment table generated from it, no other module reading
// the environment (but the connection strings' src/spec/aliases.ts), and a worker that refuses to
// start on a bad value, saying every one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { SETTINGS, SettingError, setting, settingProblems, settingsMarkdown } from '../src/settings';
import { ROOT, backfill } from './helpers/cli';

test('settings: defaults when unset or blank, parsed values, and a sentence naming the variable for a value that will not do', () => {
  assert.equal(setting('poolMax', {}), 12);
  assert.equal(setting('poolMax', { BACKFILL_POOL_MAX: ' ' }), 12);
  assert.equal(setting('poolMax', { BACKFILL_POOL_MAX: '40' }), 40);
  assert.equal(setting('stallTimeout', { BACKFILL_STALL_TIMEOUT: '5' }), 5);
  assert.equal(setting('statementTimeout', { BACKFILL_STATEMENT_TIMEOUT: '45s' }), '45s');
  assert.equal(setting('metricsAddress', { BACKFILL_METRICS_ADDRESS: ':9464' }), '0.0.0.0:9464');
  assert.deepEqual(setting('policyActions', { BACKFILL_POLICY_ACTIONS: `sha256:${'AB'.repeat(32)}` }), ['ab'.repeat(32)]);
  assert.deepEqual(setting('policyWritable', { BACKFILL_POLICY_WRITABLE: 'tgt, ctl' }), ['tgt', 'ctl']);
  assert.equal(setting('debug', {}), false);
  assert.equal(setting('columns', { COLUMNS: 'wide' }), 80, "COLUMNS is the shell's: never an error");
  const bad: [string, string, RegExp][] = [
    ['BACKFILL_POOL_MAX', 'abc', /^BACKFILL_POOL_MAX must be an integer from 1 to 1000, not "abc"$/],
    ['BACKFILL_MAX_ACTIVITIES', '0', /^BACKFILL_MAX_ACTIVITIES must be an integer from 1 to 10000, not "0"$/],
    ['BACKFILL_STALL_TIMEOUT', '-1', /^BACKFILL_STALL_TIMEOUT must be an integer from 1 to 86400, not "-1"$/],
    ['BACKFILL_LOCATE_WHOLE_ROWS', '2.5', /^BACKFILL_LOCATE_WHOLE_ROWS must be an integer/],
    ['BACKFILL_STATEMENT_TIMEOUT', 'forever', /^BACKFILL_STATEMENT_TIMEOUT must be a PostgreSQL duration/],
    ['BACKFILL_LOCK_TIMEOUT', '10 seconds', /^BACKFILL_LOCK_TIMEOUT must be a PostgreSQL duration/],
    ['BACKFILL_METRICS_ADDRESS', '9464', /^BACKFILL_METRICS_ADDRESS must be host:port/],
    ['BACKFILL_POLICY', 'lax', /^BACKFILL_POLICY must be "strict", not "lax"$/],
    ['BACKFILL_POLICY_ACTIONS', 'sha256:beef', /^BACKFILL_POLICY_ACTIONS must be "allow", "deny" or a list of sha256/],
    ['BACKFILL_POLICY_EXPRESSIONS', 'all', /^BACKFILL_POLICY_EXPRESSIONS must be "any" or "source-table", not "all"$/],
  ];
  for (const [name, value, says] of bad) {
    const key = (Object.keys(SETTINGS) as (keyof typeof SETTINGS)[]).find((k) => SETTINGS[k].env === name)!;
    assert.throws(
      () => setting(key, { [name]: value }),
      (e: unknown) => e instanceof SettingError && e.variable === name && says.test(e.message),
      name,
    );
  }
  // All of them at once, as the worker says them.
  const all = settingProblems(Object.fromEntries(bad.map(([n, v]) => [n, v])));
  assert.equal(all.length, bad.length, all.join('\n'));
  assert.deepEqual(settingProblems({}), []);
});

test("settings: the README's Environment table is the table in src/settings.ts", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Environment'), readme.indexOf('\n## ', readme.indexOf('## Environment') + 1));
  assert.ok(
    section.includes(settingsMarkdown()),
    `README.md's Environment table differs from src/settings.ts; paste this in its place:\n${settingsMarkdown()}`,
  );
  for (const d of Object.values(SETTINGS)) assert.match(section, new RegExp(`\\| \`${d.env}\` \\|`));
});

test('settings: no module but src/settings.ts and src/spec/aliases.ts reads the environment', () => {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) files.push(p);
    }
  };
  walk(join(ROOT, 'src'));
  const allowed = ['src/settings.ts', 'src/spec/aliases.ts'];
  // A read: env.NAME or env[...] that is not assigned to (the demo sets its connections for its worker).
  const read = /\benv(\.[A-Z][A-Z0-9_]*|\[[^\]]+\])(?!\s*=[^=])/;
  const readers = files.map((f) => relative(ROOT, f)).filter((f) => !allowed.includes(f) && read.test(readFileSync(join(ROOT, f), 'utf8')));
  assert.deepEqual(readers, []);
});

test('the worker refuses to start on a setting that will not do, naming every one, with no stack trace', async () => {
  const r = await backfill(['worker'], {
    BACKFILL_POOL_MAX: 'abc',
    BACKFILL_STALL_TIMEOUT: '-1',
    BACKFILL_SESSIONS_SOURCE: '0',
    TEMPORAL_ADDRESS: '127.0.0.1:1',
  });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /BACKFILL_SESSIONS_SOURCE must be an integer from 1 to 10000, not "0"/);
  assert.match(r.stderr, /BACKFILL_STALL_TIMEOUT must be an integer from 1 to 86400, not "-1"/);
  assert.match(r.stderr, /BACKFILL_POOL_MAX must be an integer from 1 to 1000, not "abc"/);
  assert.doesNotMatch(r.stderr, /\n\s+at |dist\/|\.js:\d+/);
});

// The package a user installs on a machine without the checkout: `npm pack` of the built project,
// unpacked where nothing of the checkout is above it, its bin linked onto a PATH as a global install
// links it, and run as `backfill`. No network: the dependencies come from the checkout's
// node_modules through NODE_PATH (an `npm install` of the tarball would fetch them), so this also
// checks that every package the shipped code requires is one the tarball declares.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, renameSync, statSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ROOT, run } from './helpers/cli';
import { useTempDir } from './hooks';

interface Packed {
  filename: string;
  files: { path: string }[];
}

const dir = useTempDir('backfill-pack-').path;
let pkgDir = '';
let packed: Packed;
let manifest: { name: string; bin: Record<string, string>; dependencies: Record<string, string> };

before(async () => {
  const npm = await run('npm', ['pack', '--json', '--pack-destination', dir], { npm_config_loglevel: 'error' });
  assert.equal(npm.code, 0, npm.stderr);
  [packed] = JSON.parse(npm.stdout) as Packed[];
  // Unpacked as npm lays out a global install: <prefix>/lib/node_modules/<name>, bin linked in <prefix>/bin.
  const lib = join(dir, 'prefix', 'lib', 'node_modules');
  mkdirSync(lib, { recursive: true });
  const tar = await run('tar', ['-xzf', join(dir, packed.filename), '-C', lib]);
  assert.equal(tar.code, 0, tar.stderr);
  manifest = JSON.parse(readFileSync(join(lib, 'package', 'package.json'), 'utf8')) as typeof manifest;
  pkgDir = join(lib, manifest.name);
  mkdirSync(dirname(pkgDir), { recursive: true });
  renameSync(join(lib, 'package'), pkgDir);
  mkdirSync(join(dir, 'prefix', 'bin'));
  for (const [name, file] of Object.entries(manifest.bin)) symlinkSync(join(pkgDir, file), join(dir, 'prefix', 'bin', name));
});

/** `backfill <args>` as a user runs it after `npm install -g`, from a directory outside the checkout. */
function installed(args: string[]) {
  return run(join(dir, 'prefix', 'bin', 'backfill'), args, {
    PATH: `${join(dir, 'prefix', 'bin')}:${process.env.PATH ?? ''}`,
    NODE_PATH: join(ROOT, 'node_modules'),
  });
}

test('package: a name of its own, one bin named backfill (so `npx <name>` runs it), and the README installs that name', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.notEqual(manifest.name, 'backfill', 'the registry name "backfill" is an unrelated package');
  assert.deepEqual(Object.keys(manifest.bin), ['backfill']);
  assert.ok(readme.includes(`npm install -g ${manifest.name}`), `README: npm install -g ${manifest.name}`);
  assert.ok(readme.includes(`npx -p ${manifest.name} backfill `), `README: npx -p ${manifest.name} backfill …`);
  // `npx backfill` outside the checkout offers the unrelated package: the README must not tell users to run it.
  assert.doesNotMatch(readme, /npx backfill [a-z]/);
});

test('package: the tarball holds what a user runs (bin, the built code, the workflow bundle, README) and nothing of the build or tests', () => {
  const paths = packed.files.map((f) => f.path);
  for (const p of [
    'package.json',
    'README.md',
    'bin/backfill.js',
    'dist/src/cli/main.js',
    'dist/src/worker.js',
    'dist/src/workflows/index.js',
    'dist/workflow-bundle.js',
  ]) {
    assert.ok(paths.includes(p), `the tarball lacks ${p}`);
  }
  const stray = paths.filter((p) => /^(src|test|scripts|dist\/test|dist\/scripts|node_modules|docs)\//.test(p) || p.endsWith('.ts'));
  assert.deepEqual(stray, []);
  assert.ok(statSync(join(pkgDir, 'bin', 'backfill.js')).mode & 0o111, 'bin/backfill.js is executable');
});

test('package: every package the shipped code requires is a declared dependency', () => {
  const required = new Set<string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.js')) {
        for (const m of readFileSync(join(d, e.name), 'utf8').matchAll(/require\("([^".][^"]*)"\)/g)) {
          if (!m[1].startsWith('node:')) required.add(m[1].startsWith('@') ? m[1].split('/').slice(0, 2).join('/') : m[1].split('/')[0]);
        }
      }
    }
  };
  walk(join(pkgDir, 'dist', 'src'));
  assert.ok(required.has('@temporalio/worker'), 'the scan finds the requires');
  assert.deepEqual([...required].filter((r) => !(r in manifest.dependencies)).sort(), []);
});

test('package: installed outside the checkout, `backfill --help` and `backfill validate` run, and the worker finds the shipped workflow bundle', async () => {
  const help = await installed(['--help']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: backfill /);
  for (const c of ['validate', 'start', 'status', 'report', 'approve', 'abort', 'worker']) assert.match(help.stdout, new RegExp(`\\n  ${c} `));

  const valid = await installed(['validate', join(pkgDir, 'examples', 'orders-v2.yaml'), '--no-db']);
  assert.equal(valid.code, 0, valid.stderr);
  assert.match(valid.stdout, /the spec is valid/);

  const source = await run(
    process.execPath,
    ['-e', `process.stdout.write(JSON.stringify(require(${JSON.stringify(join(pkgDir, 'dist', 'src', 'worker.js'))}).workflowSource()))`],
    {
      NODE_PATH: join(ROOT, 'node_modules'),
    },
  );
  assert.equal(source.code, 0, source.stderr);
  assert.deepEqual(JSON.parse(source.stdout), { workflowBundle: { codePath: join(pkgDir, 'dist', 'workflow-bundle.js') } });
});

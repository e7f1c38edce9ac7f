// The failure catalog (src/domain/failures.ts): one entry per failure type, each built without a
// stack and retried as the catalog says, recognised through an activity failure; the one SQLSTATE
// classifier (src/db/sqlstate.ts); the types of the recorded histories all in the catalog; and the
// README's table of failure types equal to the catalog.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ActivityFailure, ApplicationFailure, RetryState } from '@temporalio/common';
import { FAILURES, databaseFailure, failure, failureTypeOf, isFailure, otherFailure, type NamedFailure } from '../src/domain/failures';
import { toFailure } from '../src/db/errors';
import { isConnectionLoss, isUnreachableError, isUserError } from '../src/db/sqlstate';
import { ROOT } from './helpers/cli';

const named = Object.keys(FAILURES).filter((t) => t !== 'PG<SQLSTATE>' && t !== 'Error') as NamedFailure[];

test('catalog: every type name unique (also ignoring case), each with a one-line meaning', () => {
  const types = Object.keys(FAILURES);
  assert.equal(new Set(types.map((t) => t.toLowerCase())).size, types.length);
  for (const [t, k] of Object.entries(FAILURES)) {
    assert.ok(k.meaning.length > 10 && !k.meaning.includes('\n'), `${t}: one line`);
    assert.ok(typeof k.retryable === 'boolean' || k.retryable === 'by SQLSTATE', t);
  }
});

test('catalog: each constructor builds its type, retried as the catalog says, its message alone (no stack)', () => {
  for (const t of named) {
    const f = failure(t, `the ${t} sentence`, [{ n: 1 }]);
    assert.ok(f instanceof ApplicationFailure);
    assert.equal(f.type, t);
    assert.equal(f.message, `the ${t} sentence`);
    assert.equal(f.nonRetryable, !FAILURES[t].retryable, `${t}: nonRetryable`);
    assert.equal(f.stack, '', `${t}: no stack`);
    assert.deepEqual(f.details, [{ n: 1 }]);
  }
  const user = databaseFailure('42703', 'column "x" does not exist', true);
  assert.deepEqual([user.type, user.nonRetryable, user.stack], ['PG42703', true, '']);
  const other = otherFailure('socket hang up', 'ECONNRESET');
  assert.deepEqual([other.type, other.nonRetryable, other.stack], ['ECONNRESET', false, '']);
  assert.equal(otherFailure('what').type, 'Error');
});

test('catalog: a failure is recognised through the activity failures that carry it', () => {
  const gone = failure('SnapshotGone', 'the snapshot of epoch 3 is gone');
  const inner = new ActivityFailure('Activity task failed', 'copyRange', '7', RetryState.NON_RETRYABLE_FAILURE, 'w', gone);
  const outer = new ActivityFailure('Activity task failed', 'sweepTable', '8', RetryState.NON_RETRYABLE_FAILURE, 'w', inner);
  assert.ok(isFailure(gone, 'SnapshotGone'));
  assert.ok(isFailure(outer, 'SnapshotGone'));
  assert.equal(failureTypeOf(outer), 'SnapshotGone');
  assert.ok(!isFailure(outer, 'SnapshotLost'));
  assert.ok(!isFailure(new Error('SnapshotGone'), 'SnapshotGone'));
  assert.equal(failureTypeOf(undefined), undefined);
});

test('SQLSTATE: one classifier for user errors, lost connections and databases out of reach; toFailure follows it', () => {
  for (const c of ['42703', '42501', '23505', '22P02', '28P01', '3D000', '0A000']) assert.ok(isUserError(c), c);
  for (const c of ['40001', '57P01', '08006', '53300', undefined]) assert.ok(!isUserError(c), String(c));
  const err = (code: string | undefined, message: string) => Object.assign(new Error(message), code ? { code } : {});
  assert.ok(isConnectionLoss(err('57P01', 'terminating connection due to administrator command')));
  assert.ok(isConnectionLoss(err('ECONNRESET', 'read ECONNRESET')));
  assert.ok(isConnectionLoss(err(undefined, 'Connection terminated unexpectedly')));
  assert.ok(!isConnectionLoss(err('42501', 'permission denied for table t')));
  assert.ok(isUnreachableError(err('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1')));
  assert.ok(isUnreachableError(err(undefined, 'timeout exceeded when trying to connect')));
  assert.ok(!isUnreachableError(err('28P01', 'password authentication failed')));
  assert.ok(!isUnreachableError(err('57P04', 'database dropped')));

  const refused = toFailure(err('42501', 'permission denied for table t'), 'copy');
  assert.deepEqual([refused.type, refused.nonRetryable, refused.stack, refused.message], ['PG42501', true, '', 'copy: permission denied for table t']);
  const conflict = toFailure(err('40001', 'could not serialize access'), 'copy');
  assert.deepEqual([conflict.type, conflict.nonRetryable], ['PG40001', false]);
  assert.deepEqual([toFailure(new Error('odd'), 'copy').type, toFailure(new Error('odd'), 'copy').nonRetryable], ['Error', false]);
});

/** Every application failure type in a history (the workflow's, its activities', refused updates'). */
function typesIn(node: unknown, out: Set<string>): Set<string> {
  if (Array.isArray(node)) for (const x of node) typesIn(x, out);
  else if (node && typeof node === 'object') {
    const info = (node as { applicationFailureInfo?: { type?: unknown } }).applicationFailureInfo;
    if (typeof info?.type === 'string') out.add(info.type);
    for (const x of Object.values(node)) typesIn(x, out);
  }
  return out;
}

test('catalog: every failure type of the recorded histories is in it (their names never change)', () => {
  const dir = join(ROOT, 'test', 'histories');
  const seen = new Set<string>();
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.json'))) typesIn(JSON.parse(readFileSync(join(dir, f), 'utf8')), seen);
  assert.ok(seen.size > 0, 'the histories hold failures');
  for (const t of seen) assert.ok(t in FAILURES || /^PG[0-9A-Z]{5}$/.test(t) || /^E[A-Z]+$/.test(t), `${t}: not in the catalog`);
});

test("README: the table of failure types is the catalog's, row for row", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf('\n### Failure types\n');
  assert.ok(at >= 0, 'README: a "Failure types" section');
  const section = readme.slice(at + 1).split('\n## ')[0];
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  const retried = (r: boolean | string) => (r === true ? 'yes' : r === false ? 'no' : r);
  const expected = Object.entries(FAILURES).map(([t, k]) => `| \`${t}\` | ${retried(k.retryable)} | ${k.meaning} |`);
  assert.deepEqual(rows, expected);
});

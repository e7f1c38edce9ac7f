// Pure comparison units: the profiles two databases computed (compareProfiles, failedChecks,
// aggregateAgrees), key order (compareKeys), the located differences (diffRows, summarise), and a
// range's life cycle (runRange, rangePolicy) with fake steps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NO_DUPLICATES,
  aggregateAgrees,
  compareKeys,
  compareProfiles,
  failedChecks,
  parseProfile,
  type CompareOptions,
  type DuplicateKeys,
  type SideProfile,
} from '../src/range/compare';
import { KEY_SAMPLE, diffRows, summarise, type Difference } from '../src/range/locate';
import type { Located } from '../src/domain/range-lifecycle';
import { locateFirstPolicy, rangePolicy, runRange, type RangeResult, type RangeSteps } from '../src/domain/range-lifecycle';

// ---- compareProfiles, failedChecks ----

const profile = (over: Partial<SideProfile> = {}): SideProfile => ({
  count: '100',
  checksum: '123456789',
  aggregates: { 'sum(amount)': '5050.00', 'max(price)': '9.5' },
  distribution: { status: { new: '60', paid: '40' } },
  ...over,
});

const opts = (over: Partial<CompareOptions> = {}): CompareOptions => ({
  checks: {
    aggregates: [
      { fn: 'sum', column: 'amount' },
      { fn: 'max', column: 'price' },
    ],
    distribution: ['status'],
  },
  tolerance: {},
  floatColumns: [],
  ...over,
});

const dupes = (keys: number): DuplicateKeys => ({ keys, surplus: keys, sample: Array.from({ length: keys }, (_, i) => [String(i)]) });

test('compareProfiles: equal profiles agree on every check', () => {
  const c = compareProfiles(profile(), profile(), opts());
  assert.equal(c.ok, true);
  assert.equal(c.count, true);
  assert.equal(c.checksum, true);
  assert.deepEqual(c.aggregates, {
    'sum(amount)': { source: '5050.00', target: '5050.00', ok: true },
    'max(price)': { source: '9.5', target: '9.5', ok: true },
  });
  assert.deepEqual(c.distribution, { status: { ok: true, differences: {} } });
  assert.deepEqual(c.duplicates, { source: 0, target: 0, ok: true });
  assert.deepEqual(failedChecks(c), []);
});

test('compareProfiles: a count or a checksum that differs fails that check alone, and the whole', () => {
  const count = compareProfiles(profile(), profile({ count: '99' }), opts());
  assert.equal(count.count, false);
  assert.equal(count.checksum, true);
  assert.equal(count.ok, false);
  assert.deepEqual(failedChecks(count), ['count']);
  const sum = compareProfiles(profile(), profile({ checksum: '123456788' }), opts());
  assert.equal(sum.count, true);
  assert.equal(sum.checksum, false);
  assert.equal(sum.ok, false);
  assert.deepEqual(failedChecks(sum), ['checksum']);
  // Counts are compared as the text the database gave, exactly.
  assert.deepEqual(failedChecks(compareProfiles(profile({ count: '18446744073709551617' }), profile({ count: '18446744073709551616' }), opts())), ['count']);
});

test('compareProfiles: aggregates agree within the column tolerance, and float columns within a relative 1e-9', () => {
  const amount = (s: string, t: string, o: Partial<CompareOptions> = {}) =>
    compareProfiles(
      profile({ aggregates: { 'sum(amount)': s, 'max(price)': '9.5' } }),
      profile({ aggregates: { 'sum(amount)': t, 'max(price)': '9.5' } }),
      opts(o),
    );
  assert.equal(amount('5050.00', '5050.01').ok, false, 'no tolerance: a cent is a difference');
  assert.deepEqual(amount('5050.00', '5050.01').aggregates['sum(amount)'], { source: '5050.00', target: '5050.01', ok: false });
  assert.deepEqual(failedChecks(amount('5050.00', '5050.01')), ['sum(amount)']);
  assert.equal(amount('5050.00', '5050.004', { tolerance: { amount: 0.01 } }).ok, true, 'within the tolerance');
  assert.equal(amount('5050.00', '5049.996', { tolerance: { amount: 0.01 } }).ok, true, 'within the tolerance, below');
  assert.equal(amount('5050.00', '5050.02', { tolerance: { amount: 0.01 } }).ok, false, 'beyond the tolerance');
  assert.equal(amount('5050.00', '5050.02', { tolerance: { price: 1 } }).ok, false, "another column's tolerance does not apply");
  assert.equal(amount('5050.00', '5050.00000', {}).ok, true, 'the same number in another scale agrees (a number column: numericColumns not given)');
  assert.equal(amount('5050.00', '5050.00000', { tolerance: { amount: 0 } }).ok, true, 'a zero tolerance compares numbers');
  // Float sums: the order of addition moves the last digits.
  const big = '1234567890.123456';
  const near = String(Number(big) * (1 + 5e-10));
  const far = String(Number(big) * (1 + 5e-9));
  assert.equal(amount(big, near, { floatColumns: ['amount'] }).ok, true, 'a float sum off by 5e-10 relative');
  assert.equal(amount(big, far, { floatColumns: ['amount'] }).ok, false, 'a float sum off by 5e-9 relative');
  assert.equal(amount(big, near).ok, false, 'not a float column: no relative tolerance');
  assert.equal(amount(big, near, { floatColumns: ['price'] }).ok, false, "another column's float tolerance does not apply");
  assert.equal(amount('0', '1e-300', { floatColumns: ['amount'] }).ok, false, 'relative to the larger value: 0 vs tiny is still a difference');
});

test('aggregateAgrees: null against a value, and values that are not numbers', () => {
  const o = opts({ tolerance: { amount: 1e9 }, floatColumns: ['amount'] });
  assert.equal(aggregateAgrees(null, null, 'amount', o), true, 'no rows on either side');
  assert.equal(aggregateAgrees(null, '0', 'amount', o), false, 'no rows against a zero sum, whatever the tolerance');
  assert.equal(aggregateAgrees('0', null, 'amount', o), false);
  assert.equal(aggregateAgrees('2024-01-01', '2024-01-01', 'amount', o), true, 'equal text (a max of dates) agrees');
  assert.equal(aggregateAgrees('2024-01-01', '2024-01-02', 'amount', o), false, 'text that is not a number never agrees by tolerance');
  assert.equal(aggregateAgrees('abc', '1', 'amount', o), false);
  assert.equal(aggregateAgrees('NaN', '1', 'amount', o), false);
  assert.equal(aggregateAgrees('Infinity', '1e308', 'amount', o), false, 'not finite');
  assert.equal(aggregateAgrees('1', '2', 'amount', o), true, 'a large tolerance');
  assert.equal(aggregateAgrees('1', '2', 'other', o), false, 'the tolerance is per column');
});

test('compareProfiles: distributions compare every value seen on either side, a value missing on one side counting 0', () => {
  const c = compareProfiles(
    profile({ distribution: { status: { new: '60', paid: '40', void: '2' } } }),
    profile({ distribution: { status: { new: '60', paid: '39', refunded: '3' } } }),
    opts(),
  );
  assert.equal(c.ok, false);
  assert.equal(c.distribution.status.ok, false);
  assert.deepEqual(c.distribution.status.differences, { paid: ['40', '39'], refunded: ['0', '3'], void: ['2', '0'] });
  assert.deepEqual(Object.keys(c.distribution.status.differences), ['paid', 'refunded', 'void'], 'values in sorted order');
  assert.deepEqual(failedChecks(c), ['distribution(status)']);
  // A column missing from one side's profile: all its values are missing there.
  const gone = compareProfiles(profile(), profile({ distribution: {} }), opts());
  assert.deepEqual(gone.distribution.status.differences, { new: ['60', '0'], paid: ['40', '0'] });
  // An explicit zero is the same as no rows of that value.
  assert.equal(compareProfiles(profile({ distribution: { status: { new: '60', paid: '40', x: '0' } } }), profile(), opts()).distribution.status.ok, true);
  // Differences are capped; the check still fails.
  const many = (n: number, v: string) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`v${String(i).padStart(3, '0')}`, v]));
  const capped = compareProfiles(profile({ distribution: { status: many(80, '1') } }), profile({ distribution: { status: many(80, '2') } }), opts());
  assert.equal(capped.distribution.status.ok, false);
  assert.equal(Object.keys(capped.distribution.status.differences).length, 50);
});

test('compareProfiles: duplicate keys on either side fail the duplicates check', () => {
  assert.equal(compareProfiles(profile(), profile(), opts(), { source: NO_DUPLICATES, target: NO_DUPLICATES }).ok, true);
  const t = compareProfiles(profile(), profile(), opts(), { source: NO_DUPLICATES, target: dupes(2) });
  assert.deepEqual(t.duplicates, { source: 0, target: 2, ok: false });
  assert.equal(t.ok, false);
  assert.deepEqual(failedChecks(t), ['duplicates']);
  const s = compareProfiles(profile(), profile(), opts(), { source: dupes(1), target: NO_DUPLICATES });
  assert.deepEqual(s.duplicates, { source: 1, target: 0, ok: false });
  // Equal numbers of duplicates on both sides are still duplicates.
  assert.equal(compareProfiles(profile(), profile(), opts(), { source: dupes(3), target: dupes(3) }).duplicates.ok, false);
});

test('failedChecks: every failed check named, in report order', () => {
  const c = compareProfiles(
    profile({ aggregates: { 'sum(amount)': '1', 'max(price)': '2' } }),
    profile({ count: '1', checksum: '2', aggregates: { 'sum(amount)': '3', 'max(price)': '4' }, distribution: { status: { new: '1' } } }),
    opts(),
    { source: NO_DUPLICATES, target: dupes(1) },
  );
  assert.deepEqual(failedChecks(c), ['count', 'checksum', 'sum(amount)', 'max(price)', 'distribution(status)', 'duplicates']);
});

test('parseProfile: the grand total row, aggregates by name, value counts per column', () => {
  const checks = { aggregates: [{ fn: 'sum' as const, column: 'amount' }], distribution: ['status'] };
  const p = parseProfile(
    [
      { g0: 0, v0: 'new', count: 3, checksum: 9, a0: '7.5' },
      { g0: 0, v0: null, count: 1, checksum: 1, a0: '1' },
      { g0: 1, v0: null, count: 4, checksum: 10, a0: '8.5' },
    ],
    checks,
  );
  assert.deepEqual(p, { count: '4', checksum: '10', aggregates: { 'sum(amount)': '8.5' }, distribution: { status: { new: '3', '<NULL>': '1' } } });
  assert.deepEqual(parseProfile([], checks), { count: '0', checksum: '0', aggregates: { 'sum(amount)': null }, distribution: { status: {} } });
});

// ---- compareKeys ----

test('compareKeys: integers by value, text by text, composite keys column by column, a shorter key first', () => {
  assert.equal(compareKeys(['9'], ['10']), -1, 'integers by value, not text');
  assert.equal(compareKeys(['10'], ['9']), 1);
  assert.equal(compareKeys(['-5'], ['3']), -1);
  assert.equal(compareKeys(['-10'], ['-9']), -1);
  assert.equal(compareKeys(['9007199254740993'], ['9007199254740992']), 1, 'beyond 2^53: exact');
  assert.equal(compareKeys(['b'], ['a']), 1);
  assert.equal(compareKeys(['a10'], ['a9']), -1, 'text is text');
  assert.equal(compareKeys(['9'], ['a']), -1, 'an integer against text: by text');
  assert.equal(compareKeys(['1', 'b'], ['1', 'a']), 1, 'the second column decides when the first is equal');
  assert.equal(compareKeys(['1', 'z'], ['2', 'a']), -1, 'the first column decides');
  assert.equal(compareKeys(['1', '9'], ['1', '10']), -1, 'integers in the second column too');
  assert.equal(compareKeys(['1'], ['1', '0']), -1, 'a prefix first');
  assert.equal(compareKeys(['1', '0'], ['1']), 1);
  assert.equal(compareKeys(['1', 'x'], ['1', 'x']), 0);
  assert.equal(compareKeys([], []), 0);
  const sorted = [['10'], ['2', 'b'], ['2', 'a'], ['-1'], ['2'], ['x']].sort(compareKeys);
  assert.deepEqual(sorted, [['-1'], ['2'], ['2', 'a'], ['2', 'b'], ['10'], ['x']]);
});

// ---- diffRows, summarise ----

const k = (...key: string[]) => JSON.stringify(key);
const side = (rows: [string, string, string[]][], repeated: string[] = []) => ({
  rows: new Map(rows.map(([key, h, ch]) => [key, { h, ch }])),
  repeated: new Set(repeated),
});

test('diffRows: missing, extra and changed rows (with the columns that differ), duplicates on each side, in key order', () => {
  const columns = ['id', 'amount', 'note', 'status'];
  const s = side(
    [
      [k('10'), 'h10', ['10', 'a', 'n', 's']],
      [k('2'), 'h2', ['2', 'a', 'n', 's']],
      [k('3'), 'h3', ['3', 'a', 'n', 's']],
      [k('4'), 'h4', ['4', 'a', 'n', 's']],
      [k('5'), 'h5', ['5', 'a', 'X', 's']],
    ],
    [k('4')],
  );
  const t = side(
    [
      [k('10'), 'h10x', ['10', 'b', 'n', 't']],
      [k('3'), 'h3', ['3', 'a', 'n', 's']],
      [k('4'), 'h4', ['4', 'a', 'n', 's']],
      [k('5'), 'h5', ['5', 'a', 'n', 's']],
      [k('7'), 'h7', ['7', 'a', 'n', 's']],
    ],
    [k('7'), k('3')],
  );
  const d = diffRows(columns, s, t);
  assert.deepEqual(d, [
    { kind: 'missing', key: ['2'] },
    { kind: 'duplicate', key: ['3'], side: 'target' },
    { kind: 'duplicate', key: ['4'], side: 'source' },
    { kind: 'extra', key: ['7'] },
    { kind: 'duplicate', key: ['7'], side: 'target' },
    { kind: 'changed', key: ['10'], columns: ['amount', 'status'] },
  ]);
  // Equal row hashes are equal rows: column hashes are read only to name the columns of a changed row.
  assert.ok(!d.some((x) => x.key[0] === '5'));
  // The same rows on both sides: only the repeated keys, once per side.
  assert.deepEqual(diffRows(columns, s, s), [
    { kind: 'duplicate', key: ['4'], side: 'source' },
    { kind: 'duplicate', key: ['4'], side: 'target' },
  ]);
  assert.deepEqual(diffRows(columns, side([]), side([])), []);
});

test('diffRows: composite keys sort column by column', () => {
  const s = side([
    [k('1', 'b'), 'x', []],
    [k('1', 'a'), 'x', []],
    [k('10', 'a'), 'x', []],
    [k('9', 'z'), 'x', []],
  ]);
  const d = diffRows([], s, side([]));
  assert.deepEqual(
    d.map((x) => x.key),
    [
      ['1', 'a'],
      ['1', 'b'],
      ['9', 'z'],
      ['10', 'a'],
    ],
  );
  assert.ok(d.every((x) => x.kind === 'missing'));
});

test('summarise: counts per kind, changed rows per column, key samples capped at KEY_SAMPLE', () => {
  assert.equal(KEY_SAMPLE, 20);
  const missing: Difference[] = Array.from({ length: KEY_SAMPLE + 5 }, (_, i) => ({ kind: 'missing', key: [String(i)] }));
  const diffs: Difference[] = [
    ...missing,
    { kind: 'extra', key: ['100'] },
    { kind: 'changed', key: ['200'], columns: ['amount', 'note'] },
    { kind: 'changed', key: ['201'], columns: ['amount'] },
    { kind: 'changed', key: ['202'] },
    { kind: 'duplicate', key: ['300'], side: 'source' },
    { kind: 'duplicate', key: ['301'], side: 'target' },
  ];
  const l: Located = summarise(diffs, 3, 1234);
  assert.equal(l.missing, KEY_SAMPLE + 5, 'the count is exact, not the sample');
  assert.equal(l.extra, 1);
  assert.equal(l.changed, 3);
  assert.equal(l.duplicates, 2);
  assert.deepEqual(l.columns, { amount: 2, note: 1 });
  assert.equal(l.keys.missing.length, KEY_SAMPLE);
  assert.deepEqual(
    l.keys.missing,
    missing.slice(0, KEY_SAMPLE).map((d) => d.key),
    'the first keys, in order',
  );
  assert.deepEqual(l.keys.extra, [['100']]);
  assert.deepEqual(l.keys.changed, [['200'], ['201'], ['202']]);
  assert.deepEqual(l.keys.duplicates, [['300'], ['301']]);
  assert.equal(l.levels, 3);
  assert.equal(l.rowsFetched, 1234);
  assert.deepEqual(summarise([], 1, 0), {
    missing: 0,
    extra: 0,
    changed: 0,
    duplicates: 0,
    keys: { missing: [], extra: [], changed: [], duplicates: [] },
    columns: {},
    levels: 1,
    rowsFetched: 0,
  });
});

// ---- runRange, rangePolicy ----

const result = (status: RangeResult['status'], n: number): RangeResult => ({
  status,
  lo: '0',
  hi: '10',
  source: { count: '10', checksum: `s${n}` },
  target: { count: status === 'verified' ? '10' : '9', checksum: `t${n}` },
  failed: status === 'verified' ? [] : ['count', 'checksum'],
  rowsCopied: 10 + n,
});

const LOCATED: Located = {
  missing: 1,
  extra: 0,
  changed: 0,
  duplicates: 0,
  keys: { missing: [['5']], extra: [], changed: [], duplicates: [] },
  columns: {},
  levels: 1,
  rowsFetched: 19,
};

/** Steps that verify from attempt `passAt` on (never when undefined), recording every call. */
function fakeSteps(passAt?: number, o: { onAttempt?: (n: number) => void } = {}) {
  const log = { attempts: [] as [number, boolean][], attempted: [] as RangeResult[], locates: [] as number[], waits: [] as number[], order: [] as string[] };
  const steps: RangeSteps = {
    attempt: async (n, final) => {
      log.attempts.push([n, final]);
      log.order.push(`attempt ${n}`);
      o.onAttempt?.(n);
      return result(passAt !== undefined && n >= passAt ? 'verified' : final ? 'failed' : 'mismatch', n);
    },
    attempted: (r) => {
      log.attempted.push(r);
    },
    locate: async (n) => {
      log.locates.push(n);
      log.order.push(`locate ${n}`);
      return LOCATED;
    },
    wait: async (ms) => {
      log.waits.push(ms);
      log.order.push(`wait ${ms}`);
    },
  };
  return { steps, log };
}

test('rangePolicy: copy mode attempts again at once; verify mode waits 2 s per attempt made, at most a minute', () => {
  const copy = rangePolicy('copy', 3);
  assert.equal(copy.attempts, 3);
  assert.deepEqual(
    [1, 2, 10, 100].map((n) => copy.waitMs(n)),
    [0, 0, 0, 0],
  );
  const verify = rangePolicy('verify', 5);
  assert.equal(verify.attempts, 5);
  assert.deepEqual(
    [1, 2, 3, 29, 30, 31, 100].map((n) => verify.waitMs(n)),
    [2000, 4000, 6000, 58_000, 60_000, 60_000, 60_000],
  );
  const stop = () => true;
  assert.equal(rangePolicy('copy', 2, stop).stopping, stop);
  assert.equal(rangePolicy('copy', 2).stopping, undefined);
});

test('runRange: verified at the first attempt: one attempt, not final, nothing located, no wait', async () => {
  const { steps, log } = fakeSteps(1);
  const out = await runRange(4, rangePolicy('verify', 3), steps);
  assert.deepEqual(log.attempts, [[1, false]]);
  assert.deepEqual(log.locates, []);
  assert.deepEqual(log.waits, []);
  assert.equal(out.verified, true);
  assert.ok(out.verified);
  assert.equal(out.attempts, 1);
  assert.deepEqual(out.last, result('verified', 1));
});

test('runRange: verified at a later attempt: the attempts made, the last result, every attempt reported', async () => {
  const { steps, log } = fakeSteps(3);
  const out = await runRange(0, rangePolicy('copy', 5), steps);
  assert.deepEqual(log.attempts, [
    [1, false],
    [2, false],
    [3, false],
  ]);
  assert.ok(out.verified);
  assert.equal(out.attempts, 3);
  assert.equal(out.last.source.checksum, 's3');
  assert.deepEqual(
    log.attempted.map((r) => r.rowsCopied),
    [11, 12, 13],
    'attempted() sees every attempt, the mismatches too',
  );
  assert.deepEqual(log.locates, []);
});

test('runRange: a range that always differs: exactly `attempts` attempts, final only on the last, located once with its number', async () => {
  const { steps, log } = fakeSteps(undefined);
  const out = await runRange(7, rangePolicy('copy', 3), steps);
  assert.deepEqual(log.attempts, [
    [1, false],
    [2, false],
    [3, true],
  ]);
  assert.deepEqual(log.locates, [3]);
  assert.deepEqual(log.waits, [], 'copy mode does not wait');
  assert.deepEqual(log.order, ['attempt 1', 'attempt 2', 'attempt 3', 'locate 3']);
  assert.equal(out.verified, false);
  assert.ok(!out.verified);
  assert.deepEqual(out.failure, {
    index: 7,
    lo: '0',
    hi: '10',
    attempts: 3,
    source: { count: '10', checksum: 's3' },
    target: { count: '9', checksum: 't3' },
    failed: ['count', 'checksum'],
    located: LOCATED,
  });
  assert.equal(log.attempted.length, 3);
  // One attempt allowed: the first is final.
  const one = fakeSteps(undefined);
  const o1 = await runRange(0, rangePolicy('copy', 1), one.steps);
  assert.deepEqual(one.log.attempts, [[1, true]]);
  assert.deepEqual(one.log.locates, [1]);
  assert.ok(!o1.verified && o1.failure.attempts === 1);
});

test('runRange: verify mode waits between attempts (2 s, 4 s), never after the final one', async () => {
  const { steps, log } = fakeSteps(undefined);
  await runRange(0, rangePolicy('verify', 3), steps);
  assert.deepEqual(log.order, ['attempt 1', 'wait 2000', 'attempt 2', 'wait 4000', 'attempt 3', 'locate 3']);
  // Verified after a wait: no wait after it.
  const later = fakeSteps(2);
  await runRange(0, rangePolicy('verify', 3), later.steps);
  assert.deepEqual(later.log.order, ['attempt 1', 'wait 2000', 'attempt 2']);
});

test('runRange: stopping makes the attempt under way final, decided before it starts', async () => {
  // A stop asked during attempt 1: attempt 1 stays as it started (not final); attempt 2 is the last.
  let stop = false;
  const a = fakeSteps(undefined, { onAttempt: (n) => n === 1 && (stop = true) });
  const out = await runRange(
    2,
    rangePolicy('verify', 5, () => stop),
    a.steps,
  );
  assert.deepEqual(a.log.attempts, [
    [1, false],
    [2, true],
  ]);
  assert.deepEqual(a.log.locates, [2]);
  assert.deepEqual(a.log.waits, [2000]);
  assert.ok(!out.verified && out.failure.attempts === 2);
  // Stopping from the start: the first attempt is final, located with 1.
  const b = fakeSteps(undefined);
  await runRange(
    0,
    rangePolicy('copy', 5, () => true),
    b.steps,
  );
  assert.deepEqual(b.log.attempts, [[1, true]]);
  assert.deepEqual(b.log.locates, [1]);
  // Stopping does not turn a verified range into a failure.
  const c = fakeSteps(1);
  const oc = await runRange(
    0,
    rangePolicy('copy', 5, () => true),
    c.steps,
  );
  assert.ok(oc.verified);
  assert.deepEqual(c.log.locates, []);
});

test('runRange: a step that throws ends the life cycle with that error (the caller decides)', async () => {
  const { steps, log } = fakeSteps(undefined);
  const boom = new Error('lost the connection');
  await assert.rejects(runRange(0, rangePolicy('copy', 3), { ...steps, locate: async () => Promise.reject(boom) }), boom);
  assert.deepEqual(log.attempts, [
    [1, false],
    [2, false],
    [3, true],
  ]);
});

test('aggregates: numbers compare as numbers (scale, tolerance at its edge), text as text', () => {
  const o = (over: Partial<CompareOptions> = {}): CompareOptions => ({
    checks: { distribution: [], aggregates: [] },
    tolerance: {},
    floatColumns: [],
    numericColumns: ['amount'],
    ...over,
  });
  assert.equal(aggregateAgrees('5050.00', '5050.00000', 'amount', o()), true, 'numeric(12,2) against numeric(14,5)');
  assert.equal(aggregateAgrees('-0.50', '-0.5', 'amount', o()), true);
  assert.equal(aggregateAgrees('5050.00', '5050.00001', 'amount', o()), false, 'a real difference stays one');
  assert.equal(
    aggregateAgrees('100.00', '100.01', 'amount', o({ tolerance: { amount: 0.01 } })),
    true,
    'exactly at the tolerance (float subtraction said 0.010000000000005116)',
  );
  assert.equal(aggregateAgrees('100.00', '100.011', 'amount', o({ tolerance: { amount: 0.01 } })), false, 'just beyond it');
  assert.equal(aggregateAgrees('007', '7', 'code', o()), false, 'max(code) of a text column: two values');
});

test('compareKeys: the same integer written twice orders by its text, the same way both ways', () => {
  assert.equal(compareKeys(['007'], ['7']), -compareKeys(['7'], ['007']));
  assert.notEqual(compareKeys(['007'], ['7']), 0);
  assert.equal(compareKeys(['9'], ['10']), -1);
});

test('locate-first (verify mode): located at once; with a grace, only the keys are read again, then the range once more as the proof', async () => {
  // No grace: one look, located at once, nothing waits, nothing released.
  const none = fakeSteps(undefined);
  const released: number[] = [];
  const o0 = await runRange(3, locateFirstPolicy(3, 0), { ...none.steps, release: () => released.push(3) });
  assert.deepEqual(none.log.order, ['attempt 1', 'locate 1']);
  assert.deepEqual(none.log.attempts, [[1, true]], 'the first look is the verdict');
  assert.ok(!o0.verified && o0.failure.attempts === 1 && o0.failure.located === LOCATED);
  assert.equal(released.length, 0);

  // A grace of 1 s; the located key matches at the second re-read: waits 1 s then 2 s, then the whole range once more.
  const rechecks: number[] = [];
  const still = { ...LOCATED, converged: 0 };
  const gone: Located = {
    missing: 0,
    extra: 0,
    changed: 0,
    duplicates: 0,
    keys: { missing: [], extra: [], changed: [], duplicates: [] },
    columns: {},
    levels: 0,
    rowsFetched: 1,
    converged: 1,
  };
  const g = fakeSteps(3);
  const o1 = await runRange(5, locateFirstPolicy(5, 1000), {
    ...g.steps,
    release: () => released.push(5),
    recheck: async (n) => {
      rechecks.push(n);
      g.log.order.push(`recheck ${n}`);
      return n < 3 ? still : gone;
    },
  });
  assert.deepEqual(g.log.order, ['attempt 1', 'locate 1', 'wait 1000', 'recheck 2', 'wait 2000', 'recheck 3', 'attempt 3']);
  assert.deepEqual(released, [5], 'the slot is given back once, before the first wait');
  assert.ok(o1.verified && o1.attempts === 3 && o1.converged === 1);

  // Looks run out: the keys that still differ are the verdict.
  const s = fakeSteps(undefined);
  const o2 = await runRange(1, locateFirstPolicy(2, 500), { ...s.steps, recheck: async () => still });
  assert.deepEqual(s.log.order, ['attempt 1', 'locate 1', 'wait 500']);
  assert.ok(!o2.verified && o2.failure.attempts === 2 && o2.failure.located?.missing === 1);

  // A stop asked: no more waiting.
  const t = fakeSteps(undefined);
  const o3 = await runRange(
    1,
    locateFirstPolicy(9, 500, () => true),
    { ...t.steps, recheck: async () => still },
  );
  assert.deepEqual(t.log.order, ['attempt 1', 'locate 1']);
  assert.ok(!o3.verified && o3.failure.attempts === 1);
});

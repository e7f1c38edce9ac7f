// Table and column names in a spec: the documented forms parse to exact catalog names, display
// names read back as the same table, and rerun commands survive a shell. Pure functions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTableRef, showName, showTableName, tableRefKey, namePartProblem } from '../src/spec/names';
import { rerunCommand, shellWord } from '../src/domain/report';
import { rangeBytesFor, rowsPerRange, spanFor, RANGE_BYTES, VERIFY_RANGE_BYTES } from '../src/plan/bounds';

test('names: plain, quoted and object forms', () => {
  assert.deepEqual(parseTableRef('orders'), { schema: null, table: { name: 'orders', exact: false } });
  assert.deepEqual(parseTableRef('public.Orders'), { schema: { name: 'public', exact: false }, table: { name: 'Orders', exact: false } });
  assert.deepEqual(parseTableRef('"Odd .Schema"."Order Items"'), { schema: { name: 'Odd .Schema', exact: true }, table: { name: 'Order Items', exact: true } });
  assert.deepEqual(parseTableRef('public."a ""b"".c"'), { schema: { name: 'public', exact: false }, table: { name: 'a "b".c', exact: true } });
  assert.deepEqual(parseTableRef({ schema: 'S', table: 'x"y' }), { schema: { name: 'S', exact: true }, table: { name: 'x"y', exact: true } });
  for (const bad of ['', 'a.b.c', 'public."x', 'public."x"; drop table t', 'orders; drop table t', '"".t', 'a..b', '.a'])
    assert.equal(parseTableRef(bad), undefined, bad);
});

test('names: display quotes what is not plain lower case, and reads back as the same table', () => {
  assert.equal(showTableName('public', 'orders'), 'public.orders');
  assert.equal(showTableName('public', 'User'), 'public."User"');
  assert.equal(showTableName('Odd .Schema', 'Order "Items"'), '"Odd .Schema"."Order ""Items"""');
  for (const [schema, table] of [
    ['public', 'User'],
    ['Odd .Schema', 'Order "Items"'],
    ['s', 'ünï'],
  ]) {
    const back = parseTableRef(showTableName(schema, table))!;
    assert.equal(back.schema!.name, schema);
    assert.equal(back.table.name, table);
  }
  assert.equal(showName('x"y'), '"x""y"');
  assert.equal(tableRefKey('orders'), tableRefKey('public.ORDERS'));
  assert.notEqual(tableRefKey('public."ORDERS"'), tableRefKey('public.orders'));
});

test('names: 63 bytes at most, counted in UTF-8', () => {
  assert.equal(namePartProblem('a'.repeat(63)), undefined);
  assert.match(namePartProblem('a'.repeat(64))!, /at most 63 bytes/);
  assert.match(namePartProblem('ü'.repeat(32))!, /at most 63 bytes/); // 64 bytes in 32 characters
  assert.match(namePartProblem('a\0b')!, /NUL/);
});

test('names: a rerun command is one shell word per argument', () => {
  assert.equal(shellWord('public.orders'), 'public.orders');
  assert.equal(shellWord('"Odd .Schema"."Order Items"'), `'"Odd .Schema"."Order Items"'`);
  assert.equal(shellWord("it's"), `'it'\\''s'`);
  assert.equal(rerunCommand('m', 'public."User"', 3), `backfill rerun m --table 'public."User"' --range 3`);
});

test('default ranges: sized from the table, about RANGE_BYTES each', () => {
  // 2M rows of 135 bytes: about 124k rows a range.
  assert.equal(rowsPerRange({ rows: 2_000_000, bytes: 270_000_000 }, 100_000), Math.round(RANGE_BYTES / 135));
  assert.equal(rowsPerRange({ rows: -1, bytes: 8192 }, 100_000), 100_000, 'never analyzed: the fallback');
  assert.equal(rowsPerRange({ rows: 10, bytes: 1e9 }, 100_000), 1_000, 'wide rows: at least 1,000 a range');
  assert.equal(rowsPerRange({ rows: 1e9, bytes: 1e9 }, 100_000), 1_000_000, 'narrow rows: at most 1,000,000 a range');
  // Keys 1..1,000,000 holding 250,000 rows: a span of 4 keys per row.
  assert.equal(spanFor(1000, 250_000, '1', '1000000'), '4000');
  assert.equal(spanFor(1000, -1, '1', '1000000'), '1000');
  assert.equal(spanFor(10, 1e6, '-9223372036854775808', '9223372036854775806'), '184467440737096', 'bigint-exact over the whole range');
});

test('default ranges in verify mode: larger, up to 64 MB, yet at least four per slot of the window', () => {
  const MB = 1024 * 1024;
  assert.equal(rangeBytesFor({ mode: 'copy', concurrency: 2 }, 10_000 * MB), RANGE_BYTES, 'copy mode: the copy size');
  assert.equal(rangeBytesFor({ mode: 'verify', concurrency: 2 }, 10_000 * MB), VERIFY_RANGE_BYTES);
  assert.equal(rangeBytesFor({ mode: 'verify', concurrency: 2 }, 240 * MB), 30 * MB, '240 MB, 2 in flight: 8 ranges');
  assert.equal(rangeBytesFor({ mode: 'verify', concurrency: 4 }, 100 * MB), RANGE_BYTES, 'never smaller than a copy range');
  assert.equal(rowsPerRange({ rows: 1_000_000, bytes: 240 * MB }, 100_000, 30 * MB), 125_000);
});

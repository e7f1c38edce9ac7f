// Pure units: identifier quoting, integer literals, range arithmetic, redaction, report digest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hashAs, quoteIdent, qualifiedName, quoteLiteral, rowHashExpr, typedLiteral, type BoundTable } from '../src/db/sql';
import { rangeBounds } from '../src/domain/range-bounds';
import { redact } from '../src/db/redact';
import { MAX_VERIFIED_RANGES_SHOWN, NO_KEYS, buildTableReport, evidenceText, isGreen, type TableEvidence } from '../src/domain/report';
import { digestOf, reportFromEvidence } from '../src/report/digest';
import { checkSpec, durationMs, isLive } from '../src/spec/schema';
import { bounded } from '../src/infra/postgres';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers/cli';
import { dispatchNext, noSharing, PROBE_EVERY, provenBy, RECENT_RANGES, workersInSight } from '../src/domain/sharing';

test('sql: identifiers are quoted part by part, quotes doubled', () => {
  assert.equal(quoteIdent('orders'), '"orders"');
  assert.equal(quoteIdent('we"ird'), '"we""ird"');
  assert.equal(qualifiedName('my schema', 'Orders'), '"my schema"."Orders"');
  assert.throws(() => quoteIdent('a\0b'));
});

test('sql: values in COPY are quoted literals with a catalog type', () => {
  assert.equal(quoteLiteral("it's"), "'it''s'");
  assert.equal(typedLiteral("x'; DROP TABLE t; --", 'text', true), `'x''; DROP TABLE t; --'::text COLLATE "C"`);
  assert.equal(typedLiteral('42', 'bigint', false), `'42'::bigint`);
  assert.throws(() => quoteLiteral('a\0b'));
});

test('sql: a column is hashed from its value only where the type tells apart what its text does', () => {
  const col = (typeName: string, type = typeName, builtin = true) => hashAs({ typeName, type, builtin });
  assert.equal(col('int8', 'bigint'), 'value');
  assert.equal(col('timestamptz', 'timestamp with time zone'), 'value');
  assert.equal(col('numeric', 'numeric(12,2)'), 'value');
  assert.equal(col('numeric'), 'text', '1.0 and 1.00 hash alike');
  assert.equal(col('float8', 'double precision'), 'bits', '-0 and 0 hash alike as values; their bits differ');
  assert.equal(col('float4', 'real'), 'bits');
  assert.equal(col('jsonb'), 'text');
  assert.equal(col('interval'), 'text', "'1 day' and '24 hours' hash alike");
  assert.equal(col('bpchar', 'character(3)'), 'text');
  assert.equal(col('varchar', 'character varying(20)'), 'collated');
  assert.equal(col('int8', 'my_int8', false), 'text', 'a domain or user type of the same name');
  const t = {
    source: '"s"',
    target: '"t"',
    columns: ['id', 'note', 'doc'],
    sourceExprs: ['"id"', '"note"', '"doc"::jsonb'],
    key: ['id'],
    keyTypes: ['bigint'],
    range: { names: ['id'], sourceTypes: ['bigint'], targetTypes: ['bigint'], collate: [false] },
    checks: { distribution: [], aggregates: [] },
  } as BoundTable;
  assert.equal(rowHashExpr(t, 'source'), 'hashtextextended(ROW("id", "note", "doc"::jsonb)::text, 0)', 'servers older than 14: the row text');
  t.hashAs = ['value', 'collated', 'text'];
  assert.equal(rowHashExpr(t, 'source'), 'hashint8extended(hash_record_extended(ROW("id", ("note") COLLATE "C", ("doc"::jsonb)::text COLLATE "C"), 0), 0)');
  assert.equal(
    rowHashExpr({ ...t, hashAs: ['value', 'bits', 'text'] }, 'target'),
    'hashint8extended(hash_record_extended(ROW("id", float8send(("note")::float8), ("doc")::text COLLATE "C"), 0), 0)',
  );
  assert.equal(rowHashExpr(t, 'target'), 'hashint8extended(hash_record_extended(ROW("id", ("note") COLLATE "C", ("doc")::text COLLATE "C"), 0), 0)');
});

test('ranges: half-open, contiguous, the last one clipped, bigint-exact', () => {
  const p = { lo: '9007199254740990', hi: '9007199254741001', size: '4', rangeCount: 3 };
  assert.deepEqual(
    [0, 1, 2].map((i) => rangeBounds(p, i)),
    [
      { lo: '9007199254740990', hi: '9007199254740994' },
      { lo: '9007199254740994', hi: '9007199254740998' },
      { lo: '9007199254740998', hi: '9007199254741001' },
    ],
  );
  assert.throws(() => rangeBounds(p, 3));
  assert.throws(() => rangeBounds(p, -1));
});

test('redact: connection strings and passwords never survive', () => {
  const env = { BACKFILL_DB_SOURCE: 'postgresql://app:p%40ss-w0rd@db:5432/shop' };
  const m = redact('failed on postgresql://app:p%40ss-w0rd@db:5432/shop with p@ss-w0rd', env);
  assert.doesNotMatch(m, /ss-w0rd/);
  assert.match(redact('connect to postgres://u:x@h/d', {}), /postgres:\/\/\*\*\*/);
  assert.match(redact("host=h password='s e c' user=u", {}), /password=\*\*\*/);
});

const evidence = (over: Partial<TableEvidence> = {}): TableEvidence => ({
  source: 'public.a',
  target: 'public.b',
  planned: 2,
  ranges: [
    {
      index: 0,
      lo: '1',
      hi: '11',
      status: 'verified',
      attempts: 1,
      sourceCount: '10',
      sourceChecksum: '5',
      targetCount: '10',
      targetChecksum: '5',
      failedChecks: [],
      located: null,
      keys: NO_KEYS,
    },
    {
      index: 1,
      lo: '11',
      hi: '21',
      status: 'verified',
      attempts: 1,
      sourceCount: '7',
      sourceChecksum: '9',
      targetCount: '7',
      targetChecksum: '9',
      failedChecks: [],
      located: null,
      keys: NO_KEYS,
    },
  ],
  totals: {
    source: { count: '17', checksum: '14', aggregates: {}, distribution: {} },
    target: { count: '17', checksum: '14', aggregates: {}, distribution: {} },
    outside: { count: '0', keys: [] },
  },
  ...over,
});

test('report: green only when every range, the totals, the sum of ranges and the outside check agree', () => {
  assert.equal(isGreen(buildTableReport('m', evidence())), true);
  const e = evidence();
  e.ranges[1] = { ...e.ranges[1], status: 'failed', targetCount: '6' };
  const t = buildTableReport('m', e);
  assert.equal(isGreen(t), false);
  assert.equal(t.ranges.find((r) => r.index === 1)?.missing, 1);
  assert.equal(t.ranges.find((r) => r.index === 1)?.rerun, 'backfill rerun m --table public.a --range 1');
  assert.equal(isGreen(buildTableReport('m', evidence({ totals: { ...evidence().totals!, outside: { count: '1', keys: [['99']] } } }))), false);
  assert.equal(isGreen(buildTableReport('m', evidence({ planned: 3 }))), false, 'a planned range with no evidence is not green');
});

test('report: the digest changes with any range checksum, and only with evidence', () => {
  const a = digestOf(evidenceText('m', [evidence()], null));
  assert.equal(a, digestOf(evidenceText('m', [evidence()], null)));
  const e = evidence();
  e.ranges[0] = { ...e.ranges[0], targetChecksum: '6' };
  assert.notEqual(digestOf(evidenceText('m', [e], null)), a);
  assert.notEqual(digestOf(evidenceText('m', [evidence()], '2026-01-01T00:00:00Z')), a);
});

test('spec: durations for timers, and which specs treat the source as live', () => {
  assert.equal(durationMs('30 seconds'), 30_000);
  assert.equal(durationMs('1 hour 30 minutes'), 5_400_000);
  assert.equal(durationMs('250ms'), 250);
  assert.equal(durationMs('2 days'), 172_800_000);
  const base = { name: 'm', source: 's', target: 't', tables: [{ source: 'a', target: 'b', key: ['id'] }] };
  const spec = (extra: Record<string, unknown>, table: Record<string, unknown> = {}) => {
    const r = checkSpec({ ...base, ...extra, tables: [{ ...base.tables[0], ...table }] });
    assert.ok(r.ok, r.ok ? '' : r.problems.join('\n'));
    return r.spec;
  };
  assert.equal(isLive(spec({})), false);
  assert.equal(isLive(spec({}, { delta: { column: 'updated_at' } })), true);
  assert.equal(spec({}, { delta: { column: 'updated_at' } }).tables[0].delta?.overlap, '5 minutes');
  assert.equal(isLive(spec({ catchUp: {} })), true);
  assert.equal(isLive(spec({ cutover: { freeze: { connection: 's', sql: 'REVOKE ALL ON a FROM app' } } })), true);
});

test('report: while the source takes writes the ranges are the evidence; frozen, the totals must agree too', () => {
  const side = (count: string, checksum: string) => ({ count, checksum, aggregates: {}, distribution: {} });
  const e: TableEvidence = {
    source: 's',
    target: 't',
    planned: 1,
    ranges: [
      {
        index: 0,
        lo: '1',
        hi: '9',
        status: 'verified',
        attempts: 1,
        sourceCount: '5',
        sourceChecksum: '10',
        targetCount: '5',
        targetChecksum: '10',
        failedChecks: [],
        located: null,
        keys: NO_KEYS,
      },
    ],
    totals: {
      source: side('7', '14'),
      target: side('6', '12'),
      outside: { count: '0', keys: [] },
      sourceOutside: { count: '2', keys: [['10'], ['11']] },
      coverage: { ranges: 1, ok: true },
    },
  };
  const t = buildTableReport('m', e);
  assert.equal(isGreen(t, true), true);
  assert.equal(isGreen(t), false);
  // Rows beyond the plan on both sides, equal: green once frozen.
  const caught = buildTableReport('m', { ...e, totals: { ...e.totals!, target: side('7', '14'), outside: { count: '2', keys: [['10'], ['11']] } } });
  assert.equal(isGreen(caught), true);
});

test('postgres: a setup step that never settles fails within its bound instead of hanging or exiting quietly', async () => {
  await assert.rejects(bounded(new Promise(() => undefined), 'initdb', 50), /embedded PostgreSQL: initdb did not finish within 0.05 s/);
  assert.equal(await bounded(Promise.resolve(7), 'start', 50), 7);
});

/**
 * A string literal that opens with an SQL statement: a statement's keyword, then more of it. A bare
 * keyword is not one ('BEGIN', 'COMMIT' and 'ROLLBACK' handed to a transaction, 'SELECT' as a
 * privilege's name). Keywords are upper case, as every SQL text here writes them.
 */
const SQL_STATEMENT = new RegExp(
  String.raw`[\`'"]\s*(?:${[
    'SELECT',
    'INSERT',
    'UPDATE',
    'DELETE',
    'MERGE',
    'CREATE',
    'ALTER',
    'DROP',
    'WITH',
    'VALUES',
    'TABLE',
    'COPY',
    'SET',
    'RESET',
    'SHOW',
    'BEGIN',
    'START',
    'COMMIT',
    'ROLLBACK',
    'SAVEPOINT',
    'LOCK',
    'GRANT',
    'REVOKE',
    'TRUNCATE',
    'COMMENT ON',
    'ANALYZE',
    'VACUUM',
    'EXPLAIN',
    'REINDEX',
    'CLUSTER',
    'REFRESH',
    'CALL',
    'DO',
    'NOTIFY',
    'LISTEN',
    'DISCARD',
    'PREPARE',
    'EXECUTE',
    'DECLARE',
    'FETCH',
    'IDENTIFY_SYSTEM',
    'CREATE_REPLICATION_SLOT',
    'DROP_REPLICATION_SLOT',
    'READ_REPLICATION_SLOT',
    'START_REPLICATION',
    'TIMELINE_HISTORY',
    'BASE_BACKUP',
  ].join('|')})\s+\S`,
  'g',
);

/** Where `text` (a TypeScript file) holds an SQL statement outside its comments: line numbers. */
function sqlStatementLines(text: string): number[] {
  const lines = text.split('\n');
  const code = lines.map((l) => (/^\s*(\/\/|\/\*|\*)/.test(l) ? '' : l)).join('\n');
  return [...code.matchAll(SQL_STATEMENT)].map((m) => code.slice(0, m.index).split('\n').length);
}

/** Every .ts file under `dir` (relative to the repository, with / between parts). */
function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(`${dir}/${e.name}`) : e.name.endsWith('.ts') ? [`${dir}/${e.name}`] : [],
  );
}

test("sql: every SQL text lives in src/db/ or in a capability's sql.ts", () => {
  assert.deepEqual(sqlStatementLines("const a = 'SELECT 1';\nconst b = `\nUPDATE t SET x = 1`;\n// `DELETE FROM t` in a comment"), [1, 2]);
  assert.deepEqual(sqlStatementLines("q('BEGIN'); q('COMMIT'); rights: ['SELECT', 'INSERT'], `the SELECT on t`"), []);
  const outside = tsFiles('src')
    .filter((f) => !f.startsWith('src/db/') && !f.endsWith('/sql.ts'))
    .flatMap((f) => sqlStatementLines(readFileSync(join(ROOT, f), 'utf8')).map((n) => `${f}:${n}`));
  assert.deepEqual(outside, [], `SQL outside src/db/ and the capabilities' sql.ts (move it there, as a constant or a small builder):\n${outside.join('\n')}`);
});

test('shape: no module passes 500 lines, and the workflow file stays a stage loop (250 lines at most)', () => {
  const lines = (f: string) => readFileSync(join(ROOT, f), 'utf8').split('\n').length - 1;
  const long = tsFiles('src')
    .filter((f) => lines(f) > 500)
    .map((f) => `${f}: ${lines(f)} lines`);
  assert.deepEqual(long, [], `split these by what they do (README, Code map):\n${long.join('\n')}`);
  assert.ok(
    lines('src/workflows/migration.ts') <= 250,
    `src/workflows/migration.ts has ${lines('src/workflows/migration.ts')} lines: move a stage into its capability`,
  );
});

/**
 * Writes to the migration state's fields (`s.x = …`, `s.x += …`, `s.x++`, `s.x.push(…)`, `delete s.x`,
 * through the names the workflow code gives the state and its parts) in `text`: line numbers.
 */
function stateWrites(text: string): number[] {
  const owner = String.raw`\b(s|state|st|c|l|w|live|g|gate|control|ranges|t)`;
  const path = String.raw`(\??!?\.[A-Za-z_]+|\[[^\]]*\])+!?`;
  const write = new RegExp(
    [
      `${owner}${path}\\s*(=[^=>]|\\+=|-=|\\*=|\\?\\?=|\\|\\|=|&&=|\\+\\+|--)`,
      String.raw`(\+\+|--)\s*(s|st|c|l|w)\.`,
      `${owner}${path}\\.(push|splice|shift|unshift|pop|set|add|delete|clear|sort|reverse|fill|copyWithin)\\(`,
      String.raw`\bdelete\s+(s|st|c|l|w)\.`,
    ].join('|'),
  );
  return text.split('\n').flatMap((line, i) => (!/^\s*(\/\/|\*|\/\*)/.test(line) && write.test(line) ? [i + 1] : []));
}

test("state: the workflow code changes the migration state only through its owners' methods", () => {
  assert.deepEqual(stateWrites('  s.paused = true;\n  s.gate.approvals.push(a);\n  t.next++;\n  const x = s.paused;\n  s.gate.approve(a);'), [1, 2, 3]);
  const owners = [
    'src/workflows/state.ts',
    'src/workflows/control.ts',
    'src/workflows/waiting.ts',
    'src/range/state.workflow.ts',
    'src/catchup/state.workflow.ts',
    'src/capture/state.workflow.ts',
    'src/reverse/state.workflow.ts',
    'src/gate/state.workflow.ts',
    'src/report/state.workflow.ts',
  ];
  const writes = tsFiles('src')
    .filter((f) => (f.startsWith('src/workflows/') || f.endsWith('.workflow.ts')) && !owners.includes(f))
    .flatMap((f) => stateWrites(readFileSync(join(ROOT, f), 'utf8')).map((n) => `${f}:${n}`));
  assert.deepEqual(writes, [], `a write to the state outside its owner (add a method to the owning class):\n${writes.join('\n')}`);
});

test('sharing: eager while one worker proves the ranges (a probe through the queue now and then), queued once a second one shows', () => {
  let s = noSharing();
  const take = (n: number) =>
    Array.from({ length: n }, () => {
      const d = dispatchNext(s);
      s = d.next;
      return d.eager;
    });
  // Nothing proven yet, or one worker: eager, but every PROBE_EVERY-th range goes through the queue.
  const first = take(2 * PROBE_EVERY);
  assert.equal(first.filter((e) => !e).length, 2);
  assert.equal(first[PROBE_EVERY - 1], false);
  for (let i = 0; i < 5; i++) s = provenBy(s, 'a:1');
  assert.equal(workersInSight(s), 1);
  assert.deepEqual(take(PROBE_EVERY), [true, true, true, false]);
  // A probe landed on another worker: every range goes through the queue.
  s = provenBy(s, 'b:2');
  assert.equal(workersInSight(s), 2);
  assert.ok(take(3 * PROBE_EVERY).every((e) => !e));
  // The other worker left: once the latest ranges are all one worker's again, eager comes back.
  for (let i = 0; i < RECENT_RANGES - 1; i++) s = provenBy(s, 'a:1');
  assert.equal(workersInSight(s), 2, 'b:2 is still among the latest');
  s = provenBy(s, 'a:1');
  assert.equal(workersInSight(s), 1);
  assert.ok(take(PROBE_EVERY).some((e) => e));
  // A result from a worker that predates naming itself changes nothing.
  assert.deepEqual(provenBy(s, undefined), s);
});

test('report: verified ranges are listed while the whole report has at most 500 ranges; failed ones always', () => {
  const report = (tables: number) =>
    reportFromEvidence({
      migration: 'm',
      phase: 'awaiting_approval',
      generatedAt: '',
      evidence: Array.from({ length: tables }, (_, i) => {
        const e = evidence({ source: `public.t${i}`, target: `public.t${i}` });
        // The first table's second range failed.
        return i === 0 ? { ...e, ranges: [e.ranges[0], { ...e.ranges[1], status: 'failed', targetCount: '6' }] } : e;
      }),
      delta: { watermark: null, rowsApplied: 0, remaining: 0 },
    });
  // 250 tables of two ranges: 500 in all, every one listed.
  const few = report(MAX_VERIFIED_RANGES_SHOWN / 2);
  assert.equal(
    few.tables.reduce((a, t) => a + t.ranges.length, 0),
    MAX_VERIFIED_RANGES_SHOWN,
  );
  // One table more: the verified ranges are counted, the failed one is still listed with its evidence.
  const many = report(MAX_VERIFIED_RANGES_SHOWN / 2 + 1);
  assert.deepEqual(
    many.tables.flatMap((t) => t.ranges.map((r) => `${t.source} ${r.index}`)),
    ['public.t0 1'],
  );
  assert.equal(many.tables[1].rangeSummary.verified, 2);
  assert.equal(many.verdict, 'red');
  // The digest covers every range, listed or not.
  assert.notEqual(many.digest, report(MAX_VERIFIED_RANGES_SHOWN / 2 + 2).digest);
});

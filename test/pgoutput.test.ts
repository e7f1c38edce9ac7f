// The pgoutput decoder and the CopyBoth envelope, on buffers laid out by hand from the protocol's
// documentation: no server. Values must stay the server's text, LSNs exact beyond 2^53.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { maxLsn, parseLsn, showLsn } from '../src/capture/lsn';
import { decodeCopyData, decodePgOutput, msFromPgTime, pgTimeFromMs, standbyStatusUpdate } from '../src/capture/pgoutput';

// Little writers for the wire format: big-endian integers and NUL-terminated strings.
const u8 = (n: number) => Buffer.from([n]);
const ch = (c: string) => Buffer.from(c, 'latin1');
const i16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const i32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
};
const cstr = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), u8(0)]);
const msg = (...parts: Buffer[]) => Buffer.concat(parts);

type Col = null | 'u' | string;
const tuple = (cols: Col[]) =>
  msg(
    i16(cols.length),
    ...cols.map((c) => {
      if (c === null) return ch('n');
      if (c === 'u') return ch('u');
      const bytes = Buffer.from(c, 'utf8');
      return msg(ch('t'), i32(bytes.length), bytes);
    }),
  );

// An LSN and a time past 2^53, so a Number anywhere on the way would lose the low bits.
const BIG_LSN = 0x0123_4567_89ab_cdefn;
const COMMIT_TIME = 789_012_345_678_901n;

test('LSNs: parsed and shown in PostgreSQL form, exact at 64 bits, and bad text refused', () => {
  assert.equal(parseLsn('16/B374D848'), 0x16b374d848n);
  assert.equal(showLsn(0x16b374d848n), '16/B374D848');
  assert.equal(showLsn(0n), '0/0');
  assert.equal(parseLsn('0/0'), 0n);
  assert.equal(showLsn(parseLsn('ffffffff/ffffffff')), 'FFFFFFFF/FFFFFFFF');
  assert.equal(showLsn(BIG_LSN), '1234567/89ABCDEF');
  assert.equal(parseLsn(showLsn(BIG_LSN)), BIG_LSN);
  assert.equal(maxLsn(3n, 9n, 1n), 9n);
  for (const bad of ['', '16', '16/', '/1', 'G/1', '1/123456789', '1/2/3']) assert.throws(() => parseLsn(bad), /not a WAL position/, bad);
});

test('Begin, Commit and Origin carry their LSNs, times and xid', () => {
  assert.deepEqual(decodePgOutput(msg(ch('B'), u64(BIG_LSN), u64(COMMIT_TIME), u32(0xfffffffe))), {
    tag: 'begin',
    finalLsn: BIG_LSN,
    commitTime: COMMIT_TIME,
    xid: 0xfffffffe,
  });
  assert.deepEqual(decodePgOutput(msg(ch('C'), u8(0), u64(BIG_LSN), u64(BIG_LSN + 56n), u64(COMMIT_TIME))), {
    tag: 'commit',
    flags: 0,
    commitLsn: BIG_LSN,
    endLsn: BIG_LSN + 56n,
    commitTime: COMMIT_TIME,
  });
  assert.deepEqual(decodePgOutput(msg(ch('O'), u64(42n), cstr('upstream'))), { tag: 'origin', originLsn: 42n, name: 'upstream' });
});

test('Relation: schema, name, replica identity and each column with its type and key flag; Type', () => {
  const rel = msg(
    ch('R'),
    u32(16_385),
    cstr('sales'),
    cstr('Orders "2024"'),
    ch('d'),
    i16(3),
    ...[msg(u8(1), cstr('id'), u32(20), i32(-1)), msg(u8(0), cstr('amount'), u32(1700), i32(1_310_730)), msg(u8(0), cstr('note'), u32(25), i32(-1))],
  );
  assert.deepEqual(decodePgOutput(rel), {
    tag: 'relation',
    relid: 16_385,
    schema: 'sales',
    name: 'Orders "2024"',
    replicaIdentity: 'd',
    columns: [
      { key: true, name: 'id', typeOid: 20, typeModifier: -1 },
      { key: false, name: 'amount', typeOid: 1700, typeModifier: 1_310_730 },
      { key: false, name: 'note', typeOid: 25, typeModifier: -1 },
    ],
  });
  assert.deepEqual(decodePgOutput(msg(ch('Y'), u32(70_000), cstr('public'), cstr('mood'))), { tag: 'type', typeOid: 70_000, schema: 'public', name: 'mood' });
});

test('Insert: text values stay the server text (unicode, quotes, huge numbers), NULL and unchanged apart', () => {
  const values: Col[] = ['12345678901234567890', '0.1', 'l\'été "☃" 😀', null, ''];
  const m = decodePgOutput(msg(ch('I'), u32(7), ch('N'), tuple(values)));
  assert.deepEqual(m, {
    tag: 'insert',
    relid: 7,
    tuple: [
      { kind: 'text', value: '12345678901234567890' },
      { kind: 'text', value: '0.1' },
      { kind: 'text', value: 'l\'été "☃" 😀' },
      { kind: 'null' },
      { kind: 'text', value: '' },
    ],
  });
});

test('Update: without an old tuple, with a key tuple (K) and with an old row (O); an unchanged TOASTed value is marked', () => {
  assert.deepEqual(decodePgOutput(msg(ch('U'), u32(7), ch('N'), tuple(['1', 'u', 'x']))), {
    tag: 'update',
    relid: 7,
    tuple: [{ kind: 'text', value: '1' }, { kind: 'unchanged' }, { kind: 'text', value: 'x' }],
  });
  assert.deepEqual(decodePgOutput(msg(ch('U'), u32(7), ch('K'), tuple(['1', null, null]), ch('N'), tuple(['2', 'u', 'x']))), {
    tag: 'update',
    relid: 7,
    old: { kind: 'key', tuple: [{ kind: 'text', value: '1' }, { kind: 'null' }, { kind: 'null' }] },
    tuple: [{ kind: 'text', value: '2' }, { kind: 'unchanged' }, { kind: 'text', value: 'x' }],
  });
  const full = decodePgOutput(msg(ch('U'), u32(7), ch('O'), tuple(['1', 'a', 'b']), ch('N'), tuple(['1', 'a', 'c'])));
  assert.equal(full.tag === 'update' && full.old?.kind, 'old');
});

test('Delete by key tuple or old row; Truncate with its relations and options', () => {
  assert.deepEqual(decodePgOutput(msg(ch('D'), u32(9), ch('K'), tuple(['42']))), {
    tag: 'delete',
    relid: 9,
    old: { kind: 'key', tuple: [{ kind: 'text', value: '42' }] },
  });
  const d = decodePgOutput(msg(ch('D'), u32(9), ch('O'), tuple(['42', null])));
  assert.equal(d.tag === 'delete' && d.old.kind, 'old');
  assert.deepEqual(decodePgOutput(msg(ch('T'), u32(2), u8(3), u32(16_385), u32(16_390))), {
    tag: 'truncate',
    relids: [16_385, 16_390],
    options: 3,
    cascade: true,
    restartIdentity: true,
  });
  const plain = decodePgOutput(msg(ch('T'), u32(1), u8(0), u32(5)));
  assert.equal(plain.tag === 'truncate' && (plain.cascade || plain.restartIdentity), false);
});

test('Message: transactional flag, LSN, prefix and binary content kept as bytes', () => {
  const content = Buffer.from([0, 1, 2, 255, 0]);
  const m = decodePgOutput(msg(ch('M'), u8(0), u64(BIG_LSN), cstr('backfill.fence'), u32(content.length), content));
  assert.deepEqual(m, { tag: 'message', transactional: false, lsn: BIG_LSN, prefix: 'backfill.fence', content });
  const t = decodePgOutput(msg(ch('M'), u8(1), u64(1n), cstr('p'), u32(0)));
  assert.equal(t.tag === 'message' && t.transactional, true);
});

test('malformed messages fail with a sentence instead of reading past the end', () => {
  assert.throws(() => decodePgOutput(Buffer.alloc(0)), /empty/);
  assert.throws(() => decodePgOutput(msg(ch('B'), u64(1n))), /shorter than its format/);
  assert.throws(() => decodePgOutput(msg(ch('I'), u32(7), ch('N'), i16(1), ch('t'), i32(10), Buffer.from('abc'))), /shorter than its format/);
  assert.throws(() => decodePgOutput(msg(ch('I'), u32(7), ch('N'), i16(1), ch('b'), i32(1), u8(1))), /kind 'b'/);
  assert.throws(() => decodePgOutput(msg(ch('I'), u32(7), ch('X'), tuple([]))), /expected N/);
  assert.throws(() => decodePgOutput(msg(ch('R'), u32(1), Buffer.from('no terminator'))), /unterminated/);
  assert.throws(() => decodePgOutput(msg(ch('S'), u32(1))), /unknown pgoutput message 'S'/);
});

test('CopyBoth envelope: XLogData and keepalive decoded; the status update laid out as the server expects', () => {
  const payload = msg(ch('B'), u64(BIG_LSN), u64(COMMIT_TIME), u32(5));
  assert.deepEqual(decodeCopyData(msg(ch('w'), u64(BIG_LSN - 8n), u64(BIG_LSN), u64(COMMIT_TIME), payload)), {
    tag: 'xlog',
    walStart: BIG_LSN - 8n,
    walEnd: BIG_LSN,
    sendTime: COMMIT_TIME,
    payload,
  });
  assert.deepEqual(decodeCopyData(msg(ch('k'), u64(BIG_LSN), u64(COMMIT_TIME), u8(1))), {
    tag: 'keepalive',
    walEnd: BIG_LSN,
    sendTime: COMMIT_TIME,
    replyRequested: true,
  });
  assert.equal((decodeCopyData(msg(ch('k'), u64(1n), u64(2n), u8(0))) as { replyRequested: boolean }).replyRequested, false);
  assert.throws(() => decodeCopyData(msg(ch('z'))), /unknown replication frame/);

  // 2000-01-02T00:00:00.123Z: one day and 123 ms after the server's epoch, in microseconds.
  const now = Date.UTC(2000, 0, 2, 0, 0, 0, 123);
  const r = standbyStatusUpdate(BIG_LSN, true, now);
  assert.equal(r.length, 34);
  assert.equal(r.toString('latin1', 0, 1), 'r');
  for (const at of [1, 9, 17]) assert.equal(r.readBigUInt64BE(at), BIG_LSN, 'write = flush = apply');
  assert.equal(r.readBigInt64BE(25), 86_400_123_000n);
  assert.equal(r.readUInt8(33), 1);
  assert.equal(standbyStatusUpdate(1n, false, now).readUInt8(33), 0);
  assert.equal(pgTimeFromMs(now), 86_400_123_000n);
  assert.equal(msFromPgTime(86_400_123_000n), now);
});

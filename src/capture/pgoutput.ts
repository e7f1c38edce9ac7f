// A pure decoder of what a logical replication stream carries: the CopyBoth envelope (XLogData and
// primary keepalives, and the standby status update we send back) and, inside XLogData, pgoutput's
// messages in protocol version 1. Values stay the text the server printed: no type parsing here,
// so a numeric, a timestamptz's microseconds or a float's last digit reach the target unchanged.

/** A column's value in a tuple: 'unchanged' is an unchanged TOASTed value the server did not send. */
export type ColumnValue = { kind: 'null' } | { kind: 'unchanged' } | { kind: 'text'; value: string };
export type Tuple = ColumnValue[];

/** 'key': only the replica identity's columns (the others are null); 'old': the whole old row (REPLICA IDENTITY FULL). */
export interface OldTuple {
  kind: 'key' | 'old';
  tuple: Tuple;
}

/** Times are microseconds since 2000-01-01 UTC, as the server counts them. */
export interface BeginMessage {
  tag: 'begin';
  /** the LSN of the transaction's commit record */
  finalLsn: bigint;
  commitTime: bigint;
  xid: number;
}

export interface CommitMessage {
  tag: 'commit';
  flags: number;
  commitLsn: bigint;
  /** the end of the commit record: where a restarted stream resumes after this transaction */
  endLsn: bigint;
  commitTime: bigint;
}

export interface OriginMessage {
  tag: 'origin';
  originLsn: bigint;
  name: string;
}

export interface RelationColumn {
  name: string;
  typeOid: number;
  typeModifier: number;
  /** part of the replica identity (every column is, with REPLICA IDENTITY FULL) */
  key: boolean;
}

export interface RelationMessage {
  tag: 'relation';
  relid: number;
  /** empty for pg_catalog */
  schema: string;
  name: string;
  /** d default, n nothing, f full, i index */
  replicaIdentity: string;
  columns: RelationColumn[];
}

export interface TypeMessage {
  tag: 'type';
  typeOid: number;
  schema: string;
  name: string;
}

export interface InsertMessage {
  tag: 'insert';
  relid: number;
  tuple: Tuple;
}

export interface UpdateMessage {
  tag: 'update';
  relid: number;
  /** sent only when the key changed (or always, with REPLICA IDENTITY FULL) */
  old?: OldTuple;
  tuple: Tuple;
}

export interface DeleteMessage {
  tag: 'delete';
  relid: number;
  old: OldTuple;
}

export interface TruncateMessage {
  tag: 'truncate';
  relids: number[];
  options: number;
  cascade: boolean;
  restartIdentity: boolean;
}

export interface LogicalMessage {
  tag: 'message';
  transactional: boolean;
  lsn: bigint;
  prefix: string;
  content: Buffer;
}

export type PgOutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage;

/** A bounds-checked cursor: a short or garbled message fails with a sentence, never reads past the end. */
class Reader {
  private at = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  private need(n: number): number {
    if (this.at + n > this.buf.length) throw new Error(`${this.what} is shorter than its format requires`);
    const at = this.at;
    this.at += n;
    return at;
  }

  u8(): number {
    return this.buf.readUInt8(this.need(1));
  }
  i16(): number {
    return this.buf.readInt16BE(this.need(2));
  }
  u32(): number {
    return this.buf.readUInt32BE(this.need(4));
  }
  i32(): number {
    return this.buf.readInt32BE(this.need(4));
  }
  u64(): bigint {
    return this.buf.readBigUInt64BE(this.need(8));
  }
  i64(): bigint {
    return this.buf.readBigInt64BE(this.need(8));
  }
  bytes(n: number): Buffer {
    if (n < 0) throw new Error(`${this.what} has a negative length`);
    const at = this.need(n);
    return this.buf.subarray(at, at + n);
  }
  /** A NUL-terminated string. */
  cstring(): string {
    const end = this.buf.indexOf(0, this.at);
    if (end < 0) throw new Error(`${this.what} has an unterminated string`);
    const s = this.buf.toString('utf8', this.at, end);
    this.at = end + 1;
    return s;
  }
  rest(): Buffer {
    const out = this.buf.subarray(this.at);
    this.at = this.buf.length;
    return out;
  }
  char(): string {
    return String.fromCharCode(this.u8());
  }
}

function tupleData(r: Reader): Tuple {
  const n = r.i16();
  const out: Tuple = [];
  for (let i = 0; i < n; i++) {
    const kind = r.char();
    if (kind === 'n') out.push({ kind: 'null' });
    else if (kind === 'u') out.push({ kind: 'unchanged' });
    else if (kind === 't') out.push({ kind: 'text', value: r.bytes(r.i32()).toString('utf8') });
    else throw new Error(`a tuple has a column of kind '${kind}' (only text values are requested)`);
  }
  return out;
}

function oldTuple(r: Reader, marker: string): OldTuple {
  if (marker === 'K') return { kind: 'key', tuple: tupleData(r) };
  if (marker === 'O') return { kind: 'old', tuple: tupleData(r) };
  throw new Error(`an old tuple is marked '${marker}' (expected K or O)`);
}

/** One pgoutput message (the payload of an XLogData frame). */
export function decodePgOutput(buf: Buffer): PgOutputMessage {
  if (buf.length === 0) throw new Error('an empty pgoutput message');
  const tag = String.fromCharCode(buf[0]);
  const r = new Reader(buf.subarray(1), `a pgoutput '${tag}' message`);
  switch (tag) {
    case 'B':
      return { tag: 'begin', finalLsn: r.u64(), commitTime: r.i64(), xid: r.u32() };
    case 'C':
      return { tag: 'commit', flags: r.u8(), commitLsn: r.u64(), endLsn: r.u64(), commitTime: r.i64() };
    case 'O':
      return { tag: 'origin', originLsn: r.u64(), name: r.cstring() };
    case 'R': {
      const relid = r.u32();
      const schema = r.cstring();
      const name = r.cstring();
      const replicaIdentity = r.char();
      const n = r.i16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < n; i++) {
        const flags = r.u8();
        columns.push({ key: (flags & 1) === 1, name: r.cstring(), typeOid: r.u32(), typeModifier: r.i32() });
      }
      return { tag: 'relation', relid, schema, name, replicaIdentity, columns };
    }
    case 'Y':
      return { tag: 'type', typeOid: r.u32(), schema: r.cstring(), name: r.cstring() };
    case 'I': {
      const relid = r.u32();
      const marker = r.char();
      if (marker !== 'N') throw new Error(`an insert's tuple is marked '${marker}' (expected N)`);
      return { tag: 'insert', relid, tuple: tupleData(r) };
    }
    case 'U': {
      const relid = r.u32();
      let marker = r.char();
      let old: OldTuple | undefined;
      if (marker === 'K' || marker === 'O') {
        old = oldTuple(r, marker);
        marker = r.char();
      }
      if (marker !== 'N') throw new Error(`an update's new tuple is marked '${marker}' (expected N)`);
      const tuple = tupleData(r);
      return old ? { tag: 'update', relid, old, tuple } : { tag: 'update', relid, tuple };
    }
    case 'D': {
      const relid = r.u32();
      return { tag: 'delete', relid, old: oldTuple(r, r.char()) };
    }
    case 'T': {
      const n = r.u32();
      const options = r.u8();
      const relids: number[] = [];
      for (let i = 0; i < n; i++) relids.push(r.u32());
      return { tag: 'truncate', relids, options, cascade: (options & 1) !== 0, restartIdentity: (options & 2) !== 0 };
    }
    case 'M': {
      const flags = r.u8();
      const lsn = r.u64();
      const prefix = r.cstring();
      const content = Buffer.from(r.bytes(r.u32()));
      return { tag: 'message', transactional: (flags & 1) === 1, lsn, prefix, content };
    }
    default:
      throw new Error(`an unknown pgoutput message '${tag}' (protocol version 1 was requested)`);
  }
}

// ---- The CopyBoth envelope -------------------------------------------------------------------

export interface XLogData {
  tag: 'xlog';
  walStart: bigint;
  walEnd: bigint;
  sendTime: bigint;
  payload: Buffer;
}

export interface PrimaryKeepalive {
  tag: 'keepalive';
  walEnd: bigint;
  sendTime: bigint;
  /** the server disconnects a client that does not answer in time (wal_sender_timeout) */
  replyRequested: boolean;
}

export type CopyDataFrame = XLogData | PrimaryKeepalive;

/** One CopyData message from the server during START_REPLICATION. */
export function decodeCopyData(buf: Buffer): CopyDataFrame {
  if (buf.length === 0) throw new Error('an empty replication frame');
  const tag = String.fromCharCode(buf[0]);
  const r = new Reader(buf.subarray(1), `a replication '${tag}' frame`);
  if (tag === 'w') return { tag: 'xlog', walStart: r.u64(), walEnd: r.u64(), sendTime: r.i64(), payload: r.rest() };
  if (tag === 'k') return { tag: 'keepalive', walEnd: r.u64(), sendTime: r.i64(), replyRequested: r.u8() === 1 };
  throw new Error(`an unknown replication frame '${tag}'`);
}

/** 2000-01-01T00:00:00Z in Unix milliseconds: the server's epoch. */
const PG_EPOCH_MS = 946_684_800_000n;

export function pgTimeFromMs(ms: number): bigint {
  return (BigInt(Math.floor(ms)) - PG_EPOCH_MS) * 1000n;
}

export function msFromPgTime(micros: bigint): number {
  return Number(micros / 1000n + PG_EPOCH_MS);
}

/**
 * The standby status update: written, flushed and applied all at `lsn` (what the target has
 * durably committed: the server may recycle WAL before it and will resume a slot there), the
 * client's clock, and whether we ask the server to answer at once.
 */
export function standbyStatusUpdate(lsn: bigint, replyRequested: boolean, nowMs: number = Date.now()): Buffer {
  const out = Buffer.alloc(1 + 8 * 4 + 1);
  out.write('r', 0, 'latin1');
  out.writeBigUInt64BE(lsn, 1);
  out.writeBigUInt64BE(lsn, 9);
  out.writeBigUInt64BE(lsn, 17);
  out.writeBigInt64BE(pgTimeFromMs(nowMs), 25);
  out.writeUInt8(replyRequested ? 1 : 0, 33);
  return out;
}

// Replication sessions on the source: creating a slot with its exported snapshot, and streaming a
// slot's changes. `pg` opens the walsender session (`replication: 'database'` at startup) and
// pg-copy-streams' `both()` carries the CopyBoth exchange, one CopyData frame per chunk, with
// backpressure down to the socket. Sessions pin the pools' settings, so the walsender prints
// values exactly as every other session of the product reads them.
import type { Socket } from 'node:net';
import type { Duplex, DuplexOptions } from 'node:stream';
import pg from 'pg';
import { parse } from 'pg-connection-string';
import { both } from 'pg-copy-streams';
import { PINNED } from '../db/pools';
import { markUnreachable } from '../db/reach';
import { CaptureError, explain, reasonOf } from './errors';
import { REPLICATION_VERSION_SQL, SLOT_STATE_SQL, TERMINATE_BACKEND_SQL, createSlotSql, startReplicationSql } from './sql';
import { codeOf } from '../db/sqlstate';
import { FrameQueue } from './frame-queue';
import { parseLsn, showLsn } from './lsn';
import { decodeCopyData, decodePgOutput, standbyStatusUpdate, type PgOutputMessage, type PrimaryKeepalive, type XLogData } from './pgoutput';

// @types/pg-copy-streams describes `to` and `from` only.
declare module 'pg-copy-streams' {
  export function both(txt: string, options?: DuplexOptions & { alignOnCopyDataFrame?: boolean }): Duplex & pg.Submittable;
}

/** A stream is long-lived and a snapshot holder idles by design: no statement or idle timeout may end them. */
const REPLICATION_SETTINGS: Record<string, string> = { ...PINNED, statement_timeout: '0', idle_in_transaction_session_timeout: '0' };
/** A normal session for the slot's bookkeeping and the fence: short statements only. */
const SESSION_SETTINGS: Record<string, string> = { ...PINNED, statement_timeout: '60s', lock_timeout: '10s' };

function clientFor(connectionString: string, settings: Record<string, string>, replication: boolean): pg.Client {
  const cfg = parse(connectionString);
  const pinned = Object.entries(settings)
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(' ');
  const config = {
    ...(cfg as pg.ClientConfig),
    options: [cfg.options, pinned].filter(Boolean).join(' '),
    connectionTimeoutMillis: 15_000,
    keepAlive: true,
    // pg sends it in the startup packet; @types/pg does not know it.
    ...(replication ? { replication: 'database' } : {}),
  } as pg.ClientConfig;
  const client = new pg.Client(config);
  // An idle client whose connection dies emits 'error'; with no listener that would end the process.
  // The next use of the client fails instead, and says so.
  client.on('error', () => undefined);
  return client;
}

async function connected(client: pg.Client, what: string): Promise<pg.Client> {
  try {
    await client.connect();
    return client;
  } catch (e) {
    // Closing what failed: the error that made it fail is the one reported.
    await client.end().catch(() => undefined);
    // A source that cannot be reached is said as such (the migration waits in sight for it).
    const at = client.host?.startsWith('/') ? client.host : `${client.host}:${client.port}`;
    throw markUnreachable(explain(`could not open ${what} on the source`, e), 'the source', at);
  }
}

/** A normal (not replication, not read-only) session on the source. */
export function connectSource(connectionString: string): Promise<pg.Client> {
  return connected(clientFor(connectionString, SESSION_SETTINGS, false), 'a session');
}

export interface CreatedSlot {
  /**
   * The session that created the slot. The exported snapshot lives only while it stays open AND
   * idle: any further command on it (even IDENTIFY_SYSTEM) destroys the snapshot, and later
   * `SET TRANSACTION SNAPSHOT` fail. Keep it untouched while readers import the snapshot, then
   * `end()` it to release the snapshot (it holds back the source's vacuum). A temporary slot is
   * dropped with this session.
   */
  client: pg.Client;
  /** where the slot's stream begins: the snapshot sees every transaction committed before it */
  consistentPoint: string;
  /** for `SET TRANSACTION SNAPSHOT` in a REPEATABLE READ transaction */
  snapshot: string;
}

export async function createSlot(connectionString: string, o: { slot: string; temporary: boolean }): Promise<CreatedSlot> {
  const client = await connected(clientFor(connectionString, REPLICATION_SETTINGS, true), 'a replication session');
  try {
    // Asked before the slot is made: after it, any command would end the exported snapshot.
    const version = Number((await client.query<{ server_version_num: string }>(REPLICATION_VERSION_SQL)).rows[0].server_version_num);
    const r = await client.query<{ consistent_point: string; snapshot_name: string }>(createSlotSql(o.slot, o.temporary, version));
    const row = r.rows[0];
    return { client, consistentPoint: row.consistent_point, snapshot: row.snapshot_name };
  } catch (e) {
    // Closing what failed: the error that made it fail is the one reported.
    await client.end().catch(() => undefined);
    throw explain(`could not create the replication slot ${o.slot} on the source`, e);
  }
}

/** A frame of the stream: pgoutput's message decoded, or the server's keepalive. */
export type ReplicationFrame = (Omit<XLogData, 'payload'> & { message: PgOutputMessage }) | PrimaryKeepalive;

export interface ReplicationStream extends AsyncIterable<ReplicationFrame> {
  /** the slot's confirmed position when the stream started (never acknowledge below it) */
  readonly slotConfirmed: bigint;
  /** frames in order; `undefined` when `waitMs` passed with none (or after close) */
  next(waitMs?: number): Promise<ReplicationFrame | undefined>;
  /** the standby status update: write = flush = apply = `lsn`; false when the stream is gone (nothing sent) */
  sendStatus(lsn: bigint, replyRequested?: boolean): boolean;
  /** ends the stream gracefully (what was sent is processed first), then the session */
  close(): Promise<void>;
}

export interface StreamOptions {
  slot: string;
  publication: string;
  /** resume position; '0/0': where the slot's confirmed position is */
  startLsn: string;
}

const SLOT_FREE_WAIT_MS = 15_000;

interface SlotState {
  active_pid: number | null;
  confirmed: string | null;
  wal_status: string | null;
  slot_type: string;
  plugin: string | null;
}

async function slotState(session: pg.Client, slot: string): Promise<SlotState> {
  const r = await session.query<SlotState>(SLOT_STATE_SQL, [slot]);
  const s = r.rows[0];
  if (!s) throw new CaptureError(`the replication slot ${slot} does not exist in the source database`, '42704');
  if (s.slot_type !== 'logical' || s.plugin !== 'pgoutput') throw new CaptureError(`the replication slot ${slot} is not a logical slot of pgoutput`, '55000');
  if (s.wal_status === 'lost')
    throw new CaptureError(
      `the replication slot ${slot} has lost WAL it needed (max_slot_wal_keep_size): changes cannot be resumed; the migration must be rerun`,
      '55000',
      true,
    );
  return s;
}

/**
 * Only one session can stream a slot. A worker that died may leave its WAL sender holding the
 * slot until it notices (up to wal_sender_timeout): end that backend, and wait for the slot.
 */
async function freeSlot(connectionString: string, slot: string): Promise<bigint> {
  const session = await connectSource(connectionString);
  try {
    const deadline = Date.now() + SLOT_FREE_WAIT_MS;
    for (;;) {
      const s = await slotState(session, slot);
      if (s.active_pid == null) return s.confirmed ? parseLsn(s.confirmed) : 0n;
      if (Date.now() > deadline)
        throw new CaptureError(`the replication slot ${slot} is still in use by another session after ${SLOT_FREE_WAIT_MS / 1000} s`, '55006');
      await session.query(TERMINATE_BACKEND_SQL, [s.active_pid]);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    throw explain(`could not take over the replication slot ${slot}`, e);
  } finally {
    // A session that cannot close cleanly is gone anyway; the work's own errors are reported.
    await session.end().catch(() => undefined);
  }
}

export async function openStream(connectionString: string, o: StreamOptions): Promise<ReplicationStream> {
  for (let attempt = 1; ; attempt++) {
    const slotConfirmed = await freeSlot(connectionString, o.slot);
    try {
      return await startStreaming(connectionString, o, slotConfirmed);
    } catch (e) {
      // Another session took the slot between our look and our start: take it over again.
      if (codeOf(e) === '55006' && attempt < 3) continue;
      throw e;
    }
  }
}

async function startStreaming(connectionString: string, o: StreamOptions, slotConfirmed: bigint): Promise<ReplicationStream> {
  const client = await connected(clientFor(connectionString, REPLICATION_SETTINGS, true), 'a replication session');
  const socket = (client as unknown as { connection: { stream: Socket } }).connection.stream;
  const copy = both(startReplicationSql({ slot: o.slot, publication: o.publication, lsn: showLsn(parseLsn(o.startLsn)) }), {
    alignOnCopyDataFrame: true,
    readableObjectMode: true,
  });
  // pg-copy-streams calls this when the server ends the COPY; it is set only when we end it. A
  // server that ends it first (an error, a shutdown) would otherwise throw inside pg's parser.
  (copy as unknown as { cb_flush: () => void }).cb_flush = () => undefined;

  let closing = false;
  let broken = false;
  const queue = new FrameQueue<ReplicationFrame>(
    () => copy.pause(),
    () => copy.resume(),
  );
  const lost = (why: string) => (e?: unknown) => {
    broken = true;
    if (!closing) queue.fail(new CaptureError(e ? `${why}: ${reasonOf(e)}` : why, codeOf(e) ?? '08006'));
  };
  copy.on('data', (chunk: Buffer) => {
    if (closing) return;
    try {
      const frame = decodeCopyData(chunk);
      if (frame.tag === 'keepalive') queue.push(frame);
      else queue.push({ tag: 'xlog', walStart: frame.walStart, walEnd: frame.walEnd, sendTime: frame.sendTime, message: decodePgOutput(frame.payload) });
    } catch (e) {
      queue.fail(new CaptureError(`the replication stream sent a frame that cannot be read: ${reasonOf(e)}`, 'XX001'));
      broken = true;
      socket.destroy();
    }
  });
  copy.on('error', lost('the replication stream from the source stopped'));
  copy.on('end', lost('the source ended the replication stream'));
  client.on('end', lost('the replication connection to the source was closed'));
  client.on('error', lost('the replication connection to the source was lost'));

  client.query(copy);
  // The first status update is sent once the server answers START_REPLICATION with CopyBoth: its
  // callback tells that streaming began, an error that it did not. It acknowledges only what the
  // slot already has.
  try {
    await new Promise<void>((resolve, reject) => {
      copy.once('error', reject);
      copy.write(standbyStatusUpdate(slotConfirmed, false), (e) => (e ? reject(e) : resolve()));
    });
  } catch (e) {
    closing = true;
    socket.destroy();
    // Closing what failed: the error that made it fail is the one reported.
    await client.end().catch(() => undefined);
    throw explain(`could not start streaming the replication slot ${o.slot}`, e);
  }

  const close = async () => {
    if (closing) return;
    closing = true;
    queue.end();
    // Keep reading (and dropping) so the server's CopyDone and the end of the session get through.
    copy.resume();
    if (!broken) {
      await within(
        new Promise<void>((resolve) => {
          copy.once('finish', resolve);
          copy.once('error', () => resolve());
          copy.end();
        }),
        5000,
      );
    }
    if (
      !(await within(
        client.end().then(
          () => true,
          () => true,
        ),
        3000,
      ))
    )
      socket.destroy();
  };

  return {
    slotConfirmed,
    next: (waitMs) => queue.next(waitMs),
    sendStatus(lsn, replyRequested = false) {
      if (closing || broken || copy.writableEnded) return false;
      copy.write(standbyStatusUpdate(lsn, replyRequested));
      return true;
    },
    close,
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const f = await queue.next();
        if (!f) return;
        yield f;
      }
    },
  };
}

/** `p`, or `undefined` after `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

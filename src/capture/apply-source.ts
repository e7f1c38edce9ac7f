// The apply's two statements on a normal source session (not the stream's): the fence, a logical
// message emitted once the stream is open, whose arrival means the stream has caught up to that
// moment; and the source's WAL position, for the lag left when the call ends.
import { SERVER_VERSION_SQL } from '../db/sql';
import { explain } from './errors';
import { parseLsn } from './lsn';
import { connectSource } from './replication';
import { CURRENT_WAL_SQL, FLUSH_WAL_SQL, STANDBY_SNAPSHOT_SQL, emitMessageSql } from './sql';

/** Non-transactional logical messages arrive in WAL order: ours says every earlier commit was sent. */
export const FENCE_PREFIX = 'backfill.fence';
/** A call that follows the stream past its fence stops at this mark, whose content is its slot's name. */
export const STOP_PREFIX = 'backfill.stop';

/** Emits the fence `id`; returns the end of its record. */
export function emitFence(source: string, id: string): Promise<bigint> {
  return emitMark(source, FENCE_PREFIX, id);
}

/** Emits the mark that stops a call of `slot` following the stream (the gate's, when a decision arrives). */
export function emitStop(source: string, slot: string): Promise<bigint> {
  return emitMark(source, STOP_PREFIX, slot);
}

async function emitMark(source: string, prefix: string, content: string): Promise<bigint> {
  const session = await connectSource(source);
  try {
    const v = await session.query<{ v: string }>(SERVER_VERSION_SQL);
    // PostgreSQL 17 flushes the message at once; before, a synchronous commit after it does (FLUSH_WAL_SQL).
    const version = Number(v.rows[0].v);
    // A snapshot of the running transactions in the WAL just before the fence: once the fence is
    // acknowledged, the slot's restart point can move up to here, so the next call decodes from
    // near this moment instead of from the last periodic one (up to 15 s of WAL back). PostgreSQL
    // 16 and later; a role without the right to it only loses the shortcut.
    if (version >= 160000) await session.query(STANDBY_SNAPSHOT_SQL).catch(() => undefined);
    const r = await session.query<{ lsn: string }>(emitMessageSql(version >= 170000), [prefix, content]);
    // Best effort, as the snapshot above: without it the fence only arrives later.
    if (version < 170000) await session.query(FLUSH_WAL_SQL).catch(() => undefined);
    // The function returns the end of the message's record: acknowledging it does not send the
    // fence again to the next call.
    return parseLsn(r.rows[0].lsn);
  } catch (e) {
    throw explain('could not mark the current position on the source (pg_logical_emit_message)', e);
  } finally {
    // A session that cannot close cleanly is gone anyway; the work's own errors are reported.
    await session.end().catch(() => undefined);
  }
}

/** The source's WAL not yet covered, in bytes: its write position minus `caughtUp` (never below 0). */
export async function lagBytes(source: string, caughtUp: bigint): Promise<string> {
  const session = await connectSource(source);
  try {
    const r = await session.query<{ lsn: string }>(CURRENT_WAL_SQL);
    const behind = parseLsn(r.rows[0].lsn) - caughtUp;
    return String(behind > 0n ? behind : 0n);
  } catch (e) {
    throw explain("could not read the source's WAL position", e);
  } finally {
    // A session that cannot close cleanly is gone anyway; the work's own errors are reported.
    await session.end().catch(() => undefined);
  }
}

// The COPY pipeline: source COPY TO -> a byte meter -> target COPY FROM, and the client pair it
// runs on. Shared by the range copy, catch-up and the sweep's repair of the rows outside the ranges.
import { setting } from '../settings';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { Context } from '@temporalio/activity';
import type { MigrationSpec } from '../spec/schema';
import { poolFor } from '../db/pools';
import { heartbeat } from '../activities/heartbeat';

/** No byte through the COPY pipe for this long: the connection is dead or stuck; abort and retry. */
function stallTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  return setting('stallTimeout', env) * 1000;
}

/**
 * Counts bytes through the COPY pipe and heartbeats with them. A pipe that stops moving fails the
 * attempt (liveness heartbeats alone would keep a stuck copy alive forever).
 */
export class CopyMeter extends Transform {
  bytes = 0;
  private lastBeat = Date.now();
  private lastByte = Date.now();
  private readonly watchdog: NodeJS.Timeout;
  constructor(stallMs: number = stallTimeoutMs()) {
    super();
    this.watchdog = setInterval(
      () => {
        if (Date.now() - this.lastByte > stallMs) this.destroy(new Error(`the copy stalled: no data for ${Math.round(stallMs / 1000)} s`));
      },
      Math.min(5000, stallMs / 2),
    );
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.lastByte = Date.now();
    if (this.lastByte - this.lastBeat > 2000) {
      this.lastBeat = this.lastByte;
      heartbeat({ bytes: this.bytes });
    }
    cb(null, chunk);
  }
  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    clearInterval(this.watchdog);
    cb(err);
  }
  override _flush(cb: TransformCallback): void {
    clearInterval(this.watchdog);
    cb();
  }
}

function cancellation(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

/**
 * Source COPY -> meter -> target COPY. Settles on the first error of any stream: after a
 * connection dies, waiting for every stream to close can wait forever; the caller then destroys
 * both clients, which ends whatever is left.
 */
export async function copyPipe(streams: [NodeJS.ReadableStream, ...Transform[], NodeJS.WritableStream]): Promise<void> {
  const failed = new Promise<never>((_, reject) => {
    for (const s of streams) (s as unknown as NodeJS.EventEmitter).once('error', reject);
  });
  const done = pipeline(streams, { signal: cancellation() });
  // Both reach the race below; these only keep the one that loses it from being unhandled.
  done.catch(() => undefined);
  failed.catch(() => undefined);
  await Promise.race([done, failed]);
}

/**
 * Runs `fn` with a source and a target client. A client that failed (mid-COPY, say) is in an
 * unknown state: it is destroyed (the server rolls back a transaction whose connection closes),
 * never asked to ROLLBACK, which pg would queue behind the abandoned COPY forever.
 */
export async function withCopyClients<T>(
  spec: Pick<MigrationSpec, 'source' | 'target'>,
  fn: (src: pg.PoolClient, tgt: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const src = await poolFor(spec.source, 'read').connect();
  let tgt: pg.PoolClient | undefined;
  let failure: Error | undefined;
  try {
    tgt = await poolFor(spec.target, 'write').connect();
    return await fn(src, tgt);
  } catch (e) {
    failure = e as Error;
    throw e;
  } finally {
    tgt?.release(failure);
    src.release(failure);
  }
}

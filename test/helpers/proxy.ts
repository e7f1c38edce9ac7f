// A TCP fault proxy for the tests: the worker talks to PostgreSQL through it, and the test breaks
// the network between them on purpose, at runtime, while a migration runs. Killing a session in
// the server (pg_terminate_backend) is a polite fault: the client is told at once. The faults here
// are the rude ones a real network has: slowness, resets, silence, connections cut mid-stream.
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface ProxyStats {
  /** connections accepted since the start */
  accepted: number;
  /** connections open now */
  open: number;
  /** connections ended by reset() */
  reset: number;
  /** connections cut by the byte cap */
  capped: number;
  /** connections that lost data to a blackhole: silent forever, like a half-open TCP connection */
  stale: number;
  /** stale connections the client still holds open: it has not noticed yet */
  staleOpen: number;
  /** bytes forwarded client -> server and server -> client */
  bytesUp: number;
  bytesDown: number;
}

export interface FaultProxy {
  readonly port: number;
  /** `url` (a postgresql:// URL of the target) rewritten to go through this proxy */
  url(url: string): string;
  /** delay every chunk by `ms`, both ways (0: none); order is kept */
  latency(ms: number): void;
  /** end every open connection with a TCP RST on both sides; returns how many */
  reset(): number;
  /** on: forward nothing either way, drop what arrives; new connections are accepted but silent */
  blackhole(on: boolean): void;
  /** cut each connection (RST) once the server has sent it more than `n` bytes; undefined: no cap */
  byteCap(n: number | undefined): void;
  /** no latency, no blackhole, no cap; connections already stale stay stale (new ones work) */
  heal(): void;
  stats(): ProxyStats;
  close(): Promise<void>;
}

interface Conn {
  client: Socket;
  server: Socket;
  /** data was dropped: forwarding anything later would desynchronise the protocol, so never again */
  stale: boolean;
  /** bytes the server has sent on this connection (for the byte cap) */
  fromServer: number;
  lanes: Lane[];
}

/**
 * One direction of one connection. Chunks wait in a queue until their due time (the latency), so a
 * change of latency never reorders bytes. Backpressure: a slow reader pauses the writer's socket.
 */
class Lane {
  private queue: { due: number; chunk?: Buffer }[] = []; // no chunk: the end of the stream
  private timer: NodeJS.Timeout | undefined;
  private lastDue = 0;

  constructor(
    private readonly proxy: State,
    private readonly conn: Conn,
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly down: boolean,
  ) {
    from.on('data', (chunk: Buffer) => this.take(chunk));
    from.on('end', () => this.take(undefined));
  }

  private take(chunk: Buffer | undefined): void {
    const { proxy, conn } = this;
    if (proxy.blackholed || conn.stale) return this.drop();
    if (chunk && this.down) {
      conn.fromServer += chunk.length;
      if (proxy.cap !== undefined && conn.fromServer > proxy.cap) {
        proxy.counts.capped++;
        return proxy.kill(conn);
      }
    }
    this.lastDue = Math.max(Date.now() + proxy.latencyMs, this.lastDue);
    this.queue.push({ due: this.lastDue, chunk });
    this.pump();
  }

  /** A blackhole loses packets; after that the byte stream has a hole in it: the connection is dead. */
  private drop(): void {
    this.queue = [];
    if (!this.conn.stale) {
      this.conn.stale = true;
      this.proxy.counts.stale++;
      for (const l of this.conn.lanes) l.queue = [];
    }
  }

  pump(): void {
    if (this.timer || this.to.destroyed) return;
    while (this.queue.length) {
      if (this.proxy.blackholed || this.conn.stale) return this.drop(); // queued when the lights went out
      const wait = this.queue[0].due - Date.now();
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, wait);
        return;
      }
      const { chunk } = this.queue.shift()!;
      if (!chunk) {
        this.to.end();
        return;
      }
      if (this.down) this.proxy.counts.bytesDown += chunk.length;
      else this.proxy.counts.bytesUp += chunk.length;
      if (!this.to.write(chunk) && !this.from.isPaused()) {
        this.from.pause();
        this.to.once('drain', () => this.from.resume());
      }
    }
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
  }
}

interface State {
  latencyMs: number;
  blackholed: boolean;
  cap: number | undefined;
  counts: Omit<ProxyStats, 'open' | 'staleOpen'>;
  kill(conn: Conn): void;
}

/** Listens on a free port of 127.0.0.1 and forwards every connection to `target`. */
export async function startProxy(target: { host?: string; port: number }): Promise<FaultProxy> {
  const conns = new Set<Conn>();
  const state: State = {
    latencyMs: 0,
    blackholed: false,
    cap: undefined,
    counts: { accepted: 0, reset: 0, capped: 0, stale: 0, bytesUp: 0, bytesDown: 0 },
    // RST, not FIN: the peer learns of it as a network error (ECONNRESET), not as a polite goodbye.
    kill(conn) {
      for (const l of conn.lanes) l.stop();
      for (const s of [conn.client, conn.server]) if (!s.destroyed) s.resetAndDestroy();
      conns.delete(conn);
    },
  };

  const server: Server = createServer((client) => {
    state.counts.accepted++;
    // The upstream connection is opened even in a blackhole: the client's startup packet is what
    // gets lost, so the client sees an accepted connection that never answers.
    const upstream = connect({ host: target.host ?? '127.0.0.1', port: target.port });
    const conn: Conn = { client, server: upstream, stale: false, fromServer: 0, lanes: [] };
    conn.lanes.push(new Lane(state, conn, client, upstream, false), new Lane(state, conn, upstream, client, true));
    conns.add(conn);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    // One side failing or closing ends the other (an error as a RST, a close as a FIN). Not while
    // the network is down: nothing crosses it, not even a goodbye; heal() delivers it later.
    const ended = (hadError: boolean) => {
      for (const l of conn.lanes) l.stop();
      if (state.blackholed) return;
      for (const s of [client, upstream]) {
        if (s.destroyed) continue;
        if (hadError) s.resetAndDestroy();
        else s.destroy();
      }
      conns.delete(conn);
    };
    client.on('error', () => ended(true));
    upstream.on('error', () => ended(true));
    client.on('close', (e) => ended(e));
    upstream.on('close', (e) => ended(e));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as { port: number }).port;

  /** The network is back: what waited is delivered. */
  const wake = () => {
    for (const c of [...conns]) {
      // A side that closed during the blackhole: the other side learns it now (so the server
      // sessions of clients that gave up do not linger). A stale connection stays silent otherwise.
      if (c.client.destroyed || c.server.destroyed) {
        for (const s of [c.client, c.server]) if (!s.destroyed) s.destroy();
        conns.delete(c);
      } else for (const l of c.lanes) l.pump();
    }
  };

  return {
    port,
    url(u) {
      const x = new URL(u);
      x.hostname = '127.0.0.1';
      x.port = String(port);
      return x.toString();
    },
    latency(ms) {
      state.latencyMs = Math.max(0, ms);
    },
    reset() {
      const all = [...conns];
      for (const c of all) state.kill(c);
      state.counts.reset += all.length;
      return all.length;
    },
    blackhole(on) {
      state.blackholed = on;
      if (!on) wake();
    },
    byteCap(n) {
      state.cap = n;
    },
    heal() {
      state.latencyMs = 0;
      state.cap = undefined;
      state.blackholed = false;
      wake();
    },
    stats: () => ({
      ...state.counts,
      open: conns.size,
      staleOpen: [...conns].filter((c) => c.stale && !c.client.destroyed).length,
    }),
    async close() {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const c of [...conns]) state.kill(c);
      await closed;
    },
  };
}

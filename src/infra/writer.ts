// A steady writer, as an application would be (for `backfill demo --live`, the tests and the bench): its own role, one statement per transaction, at a
// set rate, mixing updates (most leave a large TOASTed text alone, a few change it), inserts and
// deletes spread over the table. A freeze (its rights revoked) makes its writes fail; it keeps
// trying and counts them, as a real application would retry.
import pg from 'pg';
import { FINGERPRINT, UTC, WRITER_DELETE, WRITER_DOC_UPDATE, WRITER_INSERT, WRITER_UPDATE } from '../db/demo';

// The writer's table and its fill are SQL (src/db/demo.ts); the demo, tests and bench take them from here.

export interface WriterCounts {
  updates: number;
  docUpdates: number;
  inserts: number;
  deletes: number;
  refused: number;
  failed: number;
  /** when a write was first refused (the freeze), ms since the epoch */
  firstRefusedAt?: number;
}

export interface Writer {
  counts: WriterCounts;
  /** writes that succeeded so far */
  total(): number;
  /** the last error that was not a refusal (for a test's message) */
  lastError(): string;
  stop(): Promise<WriterCounts>;
}

/** Writes to `table` at about `perSecond` statements a second until stopped. */
export async function startWriter(url: string, table: string, o: { perSecond: number; firstNewId: number; maxId: number }): Promise<Writer> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  await c.connect();
  const counts: WriterCounts = { updates: 0, docUpdates: 0, inserts: 0, deletes: 0, refused: 0, failed: 0 };
  let nextId = o.firstNewId;
  let running = true;
  let lastError = '';
  const some = () => 1 + Math.floor(Math.random() * (nextId - 1));
  const one = async () => {
    const r = Math.random();
    try {
      if (r < 0.55) {
        await c.query(WRITER_UPDATE(table), [some()]);
        counts.updates++;
      } else if (r < 0.6) {
        await c.query(WRITER_DOC_UPDATE(table), [50 * Math.max(1, Math.floor(some() / 50)), String(Math.random())]);
        counts.docUpdates++;
      } else if (r < 0.9) {
        const id = nextId++;
        await c.query(WRITER_INSERT(table), [id, (id % 997) / 4]);
        counts.inserts++;
      } else {
        await c.query(WRITER_DELETE(table), [some()]);
        counts.deletes++;
      }
    } catch (e) {
      // 42501: frozen (rights revoked); anything else is counted too, never thrown.
      if ((e as { code?: string }).code === '42501') {
        counts.refused++;
        counts.firstRefusedAt ??= Date.now();
      } else {
        counts.failed++;
        lastError = (e as Error).message;
      }
    }
  };
  const every = 1000 / o.perSecond;
  const loop = (async () => {
    let due = Date.now();
    while (running) {
      await one();
      due += every;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      else if (wait < -1000) due = Date.now();
    }
  })();
  return {
    counts,
    total: () => counts.updates + counts.docUpdates + counts.inserts + counts.deletes,
    lastError: () => lastError,
    async stop() {
      running = false;
      await loop;
      // The writer's counts are what it returns; a connection that cannot close changes none.
      await c.end().catch(() => undefined);
      return counts;
    },
  };
}

/** An independent fingerprint of a table: row count and the md5 of every row's text in key order. */
export async function tableFingerprint(url: string, table: string): Promise<{ rows: string; md5: string }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(UTC);
    const r = await c.query(FINGERPRINT(table));
    return r.rows[0] as { rows: string; md5: string };
  } finally {
    await c.end();
  }
}

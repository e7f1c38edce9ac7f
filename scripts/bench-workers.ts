// The bench's workers part (`--only workers`): one migration of tiny ranges served by one, two and
// three `backfill worker` processes on the dev server (eager activity execution on): the
// orchestration cost per range and how the ranges were shared (the ledger's worker of each range).
import type { Client } from '@temporalio/client';
import type { PostgresServer } from '../src/infra/postgres';
import { backfillMigration } from '../src/workflows/migration';
import { spawnWorker } from '../test/helpers/temporal';

export interface WorkersResult {
  workers: number;
  ranges: number;
  /** median over the runs */
  msPerRange: number;
  /** ranges per worker in each run, the largest share first */
  shares: number[][];
}

interface WorkersBench {
  src: PostgresServer;
  tgt: PostgresServer;
  client: Client;
  address: string;
  ranges: number;
  runs: number;
  concurrency: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function workersBench(o: WorkersBench): Promise<WorkersResult[]> {
  for (const [db, fill] of [
    [o.src, true],
    [o.tgt, false],
  ] as const) {
    await db.query('bench', 'DROP TABLE IF EXISTS public.shared');
    await db.query('bench', 'CREATE TABLE public.shared (id bigint PRIMARY KEY, v text)');
    if (fill) await db.query('bench', `INSERT INTO public.shared SELECT g, 'v' || g FROM generate_series(1, $1::bigint) g`, [o.ranges * 5]);
  }
  const out: WorkersResult[] = [];
  for (const n of [1, 2, 3]) {
    // A queue of its own, so that only these workers serve it.
    const taskQueue = `bench-workers-${n}`;
    const workers = await Promise.all(Array.from({ length: n }, () => spawnWorker(o.address, taskQueue)));
    const perRange: number[] = [];
    const shares: number[][] = [];
    try {
      for (let run = 0; run < o.runs; run++) {
        const name = `bench-workers-${n}-${run}`;
        await o.tgt.query('bench', 'TRUNCATE public.shared');
        const spec = {
          name,
          taskQueue,
          source: 'src',
          target: 'tgt',
          concurrency: o.concurrency,
          tables: [{ source: 'public.shared', target: 'public.shared', key: ['id'], chunk: { column: 'id', size: 5 } }],
          cutover: { approval: 'auto' },
        };
        const t0 = performance.now();
        const h = await o.client.workflow.start(backfillMigration, { taskQueue, workflowId: name, args: [spec] });
        await h.result();
        perRange.push((performance.now() - t0) / o.ranges);
        const by = await o.tgt.query('bench', `SELECT count(*)::int AS n FROM backfill.ranges WHERE migration = $1 GROUP BY worker ORDER BY 1 DESC`, [name]);
        shares.push(by.rows.map((r: { n: number }) => r.n));
        console.log(`  ${n} worker(s), run ${run + 1}: ${perRange.at(-1)!.toFixed(1)} ms per range; ranges by worker ${shares.at(-1)!.join(' / ')}`);
      }
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
    out.push({ workers: n, ranges: o.ranges, msPerRange: median(perRange), shares });
  }
  return out;
}

export function printWorkers(rs: WorkersResult[]): void {
  const one = rs.find((r) => r.workers === 1)?.msPerRange;
  for (const r of rs) {
    const fair = r.ranges / r.workers;
    // The least share of any worker in any run, against a fair one.
    const least = Math.min(...r.shares.map((s) => (s.length < r.workers ? 0 : Math.min(...s))));
    const ratio = one ? ` (${(r.msPerRange / one).toFixed(2)}× one worker's)` : '';
    console.log(
      `| ${r.workers} worker(s), ${r.ranges} tiny ranges: orchestration per range${ratio}; ranges by worker (each run) | ${r.msPerRange.toFixed(1)} ms; ${r.shares.map((s) => s.join('/')).join(', ')} | each worker ≥ half a fair share: least ${least} of ${fair.toFixed(0)} |`,
    );
  }
}

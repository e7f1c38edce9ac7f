// `backfill demo`: a real migration with nothing configured. Embedded PostgreSQL (source and target
// databases), the Temporal dev server with its UI, a worker in this process, a million rows of
// mixed types, the checks, the approval gate and the switch.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { stringify as toYaml } from 'yaml';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { startPostgres, type PostgresServer } from '../infra/postgres';
import { freePort } from '../infra/postgres';
import { startDevServer } from '../infra/temporal';
import { createWorker } from '../worker';
import { closePools } from '../db/pools';
import { envNameForAlias } from '../spec/aliases';
import { MigrationSpec, type MigrationSpecInput } from '../spec/schema';
import { captureLine, renderMarkdown, reverseLine } from '../report/render';
import { startWriter, type Writer } from '../infra/writer';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import { TERMINAL } from '../domain/phases';
import { FILL_WRITER_TABLE, WRITER_TABLE } from '../db/demo';
import { approveCutoverUpdate, progressQuery, reportQuery, switchBackUpdate, type MigrationResult, type Progress } from '../workflows/messages';
import { backfillMigration } from '../workflows/migration';
import { Interrupted, follow } from './follow';
import { startDetails, startSummary } from './summary';
import {
  DEMO_ANALYZE,
  DEMO_SOURCE_DDL,
  DEMO_SOURCE_FILL,
  DEMO_SWITCH,
  DEMO_TARGET_DDL,
  INDEPENDENT,
  LIVE_ANALYZE,
  LIVE_FREEZE,
  LIVE_GRANT,
  LIVE_MAX_ID,
  LIVE_READ,
  LIVE_ROLE,
  LIVE_SWITCH,
  LIVE_TABLE,
  LIVE_UNFREEZE,
} from '../db/demo';

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** `--live`: the source's own table for a writer, its role, and how the freeze stops it. */
const LIVE = {
  table: LIVE_TABLE,
  role: LIVE_ROLE,
  grant: LIVE_GRANT,
  freeze: LIVE_FREEZE,
  unfreeze: LIVE_UNFREEZE,
};

/** `--reverse`: the switch hands the writes to the target, and the way back hands them back. */
const grants = (connection: string, verb: 'GRANT' | 'REVOKE') => ({ connection, sql: verb === 'GRANT' ? LIVE.unfreeze : LIVE.freeze });
const REVERSE = {
  switch: grants('target', 'GRANT'),
  reverse: { freeze: grants('target', 'REVOKE'), unfreeze: grants('target', 'GRANT'), switch: grants('source', 'GRANT') },
};

function liveSpec(o: { chunk: number; reverse?: boolean }): MigrationSpecInput {
  return {
    name: 'accounts-live',
    source: 'source',
    target: 'target',
    concurrency: 2,
    capture: 'logical',
    catchUp: { maxLag: '5 seconds' },
    tables: [
      {
        source: LIVE.table,
        target: LIVE.table,
        key: ['id'],
        chunk: { column: 'id', size: o.chunk },
        checks: { distribution: ['status'], aggregates: [{ fn: 'sum', column: 'balance' }] },
      },
    ],
    cutover: {
      approval: 'required',
      approvers: ['demo'],
      freeze: { connection: 'source', sql: LIVE.freeze },
      unfreeze: { connection: 'source', sql: LIVE.unfreeze },
      switch: { connection: 'target', sql: LIVE_SWITCH },
      ...(o.reverse ? REVERSE : {}),
    },
  };
}

export async function runDemo(o: { rows: number; chunk: number; keep: boolean; live?: { perSecond: number; reverse?: boolean } }): Promise<number> {
  const say = (s: string) => console.log(s);
  // The demo talks to a person: the SDK's own INFO lines would drown the progress.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const live = o.live;
  say(
    `backfill demo${live ? ' --live' : ''}${live?.reverse ? ' --reverse' : ''}: ${o.rows.toLocaleString('en-US')} rows, ranges of ${o.chunk.toLocaleString('en-US')} keys${live ? `, a writer at ${live.perSecond} writes/s throughout, change capture by logical replication` : ''}`,
  );
  say('starting embedded PostgreSQL (databases "source" and "target") ...');
  const pg = await startPostgres();
  let env: Awaited<ReturnType<typeof startDevServer>> | undefined;
  try {
    await pg.createDatabase('source');
    await pg.createDatabase('target');
    let t0 = Date.now();
    if (live) {
      await pg.query('source', LIVE.role);
      await pg.query('source', WRITER_TABLE(LIVE.table));
      await pg.query('source', FILL_WRITER_TABLE(LIVE.table, o.rows));
      await pg.query('source', LIVE.grant);
      await pg.query('source', LIVE_ANALYZE);
      await pg.query('target', WRITER_TABLE(LIVE.table));
      say(`  source table ${LIVE.table} filled in ${seconds(Date.now() - t0)}`);
    } else {
      await pg.query('source', DEMO_SOURCE_DDL);
      await pg.query('source', DEMO_SOURCE_FILL, [o.rows]);
      await pg.query('source', DEMO_ANALYZE);
      await pg.query('target', DEMO_TARGET_DDL);
      say(`  source table public.orders filled in ${seconds(Date.now() - t0)}`);
    }

    say('starting the Temporal dev server ...');
    const uiPort = await freePort();
    env = await startDevServer({ ui: true, uiPort });
    const address = env.address;
    say(`  Temporal at ${address}; Web UI: http://127.0.0.1:${uiPort}/namespaces/default/workflows`);

    // The worker (in this process) resolves the aliases; the spec only names them.
    process.env[envNameForAlias('source')] = pg.url('source');
    process.env[envNameForAlias('target')] = pg.url('target');
    if (live?.reverse) await pg.query('target', LIVE_READ);
    const input: MigrationSpecInput = live
      ? liveSpec({ chunk: o.chunk, reverse: live.reverse })
      : {
          name: 'orders-v2',
          source: 'source',
          target: 'target',
          concurrency: 2,
          tables: [
            {
              source: 'public.orders',
              target: 'public.orders_v2',
              key: ['id'],
              chunk: { column: 'id', size: o.chunk },
              checks: {
                distribution: ['status'],
                aggregates: [
                  { fn: 'sum', column: 'amount' },
                  { fn: 'max', column: 'updated_at' },
                ],
              },
            },
          ],
          cutover: {
            approval: 'required',
            approvers: ['demo'],
            switch: { connection: 'target', sql: DEMO_SWITCH },
          },
        };
    const spec = MigrationSpec.parse(input);
    const specFile = join(tmpdir(), 'backfill-demo-spec.yaml');
    writeFileSync(specFile, toYaml(spec));
    say(`  spec: ${specFile}`);

    const worker = await createWorker({ connection: env.nativeConnection, taskQueue: spec.taskQueue });
    // The application: writing at a steady rate from before the start until after the switch.
    const writer = live
      ? await startWriter(pg.url('source').replace(/\/\/postgres:[^@]*@/, '//app:app@'), LIVE.table, {
          perSecond: live.perSecond,
          firstNewId: o.rows + 1,
          maxId: o.rows,
        })
      : undefined;
    const code = await worker.runUntil(async () => {
      try {
        t0 = Date.now();
        // The summary and details `backfill start` gives: what the UI shows at the top of the migration.
        const h = await env!.client.workflow.start(backfillMigration, {
          taskQueue: spec.taskQueue,
          workflowId: spec.name,
          args: [spec],
          staticSummary: startSummary(spec),
          staticDetails: startDetails(spec),
        });
        say(`migration ${spec.name} started: http://127.0.0.1:${uiPort}/namespaces/default/workflows/${spec.name}`);
        const gate = await follow(h, { untilGate: true }).catch((e: unknown) => {
          // The demo's Temporal server stops with it: nothing goes on.
          throw e instanceof Interrupted ? new Interrupted(spec.name, 'demo stopped (Ctrl-C); its servers and its migration stop with it') : e;
        });
        if (gate.capture) say(`at the gate: ${captureLine(gate.capture)}`);
        const toGate = Date.now() - t0;
        if (gate.phase !== 'awaiting_approval') {
          say(`the migration stopped in phase ${gate.phase}${gate.detail ? `: ${gate.detail}` : ''}`);
          return 1;
        }
        const report = await h.query(reportQuery);
        say('');
        say(renderMarkdown(report));
        say(
          `copied and verified ${o.rows.toLocaleString('en-US')} rows in ${seconds(toGate)} (${Math.round(o.rows / (toGate / 1000)).toLocaleString('en-US')} rows/s, checks included)`,
        );
        if (writer)
          say(
            `the writer has written ${writer.total().toLocaleString('en-US')} times so far; the evidence is the source at checkpoint ${gate.capture?.checkpoint ?? '–'}`,
          );
        say(`approving digest ${report.digest} as "demo" (what \`backfill approve ${spec.name} --as demo --yes\` does) ...`);
        const approvedAt = Date.now();
        await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'demo', digest: report.digest, comment: 'demo run' }] });
        const result = live?.reverse ? await switchedAndBack(h, live.perSecond, pg, writer!, approvedAt, say) : await h.result();
        const switchedAt = Date.now();
        say(`${result.phase}: authority switched at ${result.switchedAt}`);
        if (writer && !live?.reverse) {
          // After the switch the application would write to the target; here it stops.
          const c = await writer.stop();
          const refusedFor = c.firstRefusedAt ? switchedAt - c.firstRefusedAt : 0;
          say(
            `approval to switch: ${seconds(switchedAt - approvedAt)}; writes were refused for ${seconds(refusedFor)} (from the freeze to the switch: ${c.refused.toLocaleString('en-US')} refused attempts)`,
          );
          if (result.finalWindow)
            say(
              `final window: ${result.finalWindow.rows.toLocaleString('en-US')} row(s), ${seconds(result.finalWindow.ms)} from the freeze to the verdict${result.finalWindow.proof ? `; ${result.finalWindow.proof}` : ''}`,
            );
          say(
            `the writer wrote ${(c.updates + c.docUpdates + c.inserts + c.deletes).toLocaleString('en-US')} times: ${c.inserts} inserts, ${c.updates + c.docUpdates} updates, ${c.deletes} deletes`,
          );
        }

        const [from, to] = live ? [LIVE.table, LIVE.table] : ['public.orders', 'public.orders_v2'];
        const [s, t] = await Promise.all([pg.query('source', INDEPENDENT(from)), pg.query('target', INDEPENDENT(to))]);
        const same = s.rows[0].n === t.rows[0].n && s.rows[0].h === t.rows[0].h;
        say(
          `independent check (md5 of every row): source ${s.rows[0].n} rows / ${s.rows[0].h}, target ${t.rows[0].n} rows / ${t.rows[0].h}: ${same ? 'equal' : 'DIFFERENT'}`,
        );
        if (o.keep) {
          say(`servers kept running; the Temporal UI is at http://127.0.0.1:${uiPort} (Ctrl-C to stop)`);
          await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
        }
        return same && result.phase === 'completed' ? 0 : 1;
      } finally {
        await writer?.stop();
      }
    });
    return code;
  } finally {
    await closePools();
    // The demo is over: its Temporal server is a child of this process and ends with it.
    await env?.teardown().catch(() => undefined);
    await pg.stop();
  }
}

/**
 * `--reverse`: the switch hands the writes to the target (the source's writer stops, one on the
 * target starts), the source follows the target by the stream back for a few seconds, then the
 * switch back, approved as `backfill switch-back <name> --as demo --yes` would: how long each switch
 * took, and how long writes were refused by each freeze.
 */
async function switchedAndBack(
  h: WorkflowHandle,
  perSecond: number,
  pg: PostgresServer,
  onSource: Writer,
  approvedAt: number,
  say: (s: string) => void,
): Promise<MigrationResult> {
  let p: Progress = await h.query(progressQuery);
  while (p.phase !== 'switched') {
    if (TERMINAL.includes(p.phase)) throw new Error(`the migration ended in phase ${p.phase} before the switch: ${p.detail ?? ''}`);
    await sleep(100);
    p = await h.query(progressQuery);
  }
  const switchedAt = Date.now();
  const c = await onSource.stop();
  say(
    `switched ${seconds(switchedAt - approvedAt)} after the approval; writes on the source were refused for ${seconds(c.firstRefusedAt ? switchedAt - c.firstRefusedAt : 0)}. The application writes the target now; the source follows it (the way back)`,
  );
  const maxId = Number((await pg.query('target', LIVE_MAX_ID)).rows[0].m);
  const onTarget = await startWriter(pg.url('target').replace(/\/\/postgres:[^@]*@/, '//app:app@'), LIVE.table, { perSecond, firstNewId: maxId + 1, maxId });
  try {
    await sleep(5_000);
    p = await h.query(progressQuery);
    if (p.reverse) say(reverseLine(p.reverse));
    say(`switching back: approving digest ${p.reverse?.digest ?? ''} as "demo" (what \`backfill switch-back ${h.workflowId} --as demo --yes\` does) ...`);
    const backAt = Date.now();
    await h.executeUpdate(switchBackUpdate, { args: [{ approver: 'demo', digest: p.reverse?.digest ?? '', comment: 'demo run' }] });
    const result = await h.result();
    const doneAt = Date.now();
    const t = await onTarget.stop();
    say(
      `${result.phase}: switched back at ${result.reverse?.switchedBackAt ?? '–'}, ${seconds(doneAt - backAt)} after its approval; writes on the target were refused for ${seconds(t.firstRefusedAt ? doneAt - t.firstRefusedAt : 0)}; ${(result.reverse?.transactions ?? 0).toLocaleString('en-US')} target transaction(s) went back to the source`,
    );
    return result;
  } finally {
    await onTarget.stop();
  }
}

// The apply engine: reads a slot's stream and applies each source transaction to the target in one
// target transaction, together with the record of how far it got. The source is acknowledged only
// after that commit, so a connection or process killed anywhere leaves the target either with the
// whole transaction and its record, or with neither; the next call resumes from the record and
// skips, by commit LSN, whatever the slot sends again. By step: the stream read into transactions
// (apply-stream.ts), the relations they touch (apply-relations.ts), each applied on the target with
// its record (apply-target.ts), the fence and WAL position on the source (apply-source.ts).
import type pg from 'pg';
import { ApplyRun } from './apply-stream';
import type { ApplyOptions, ApplyResult } from './apply-types';
import { CaptureError, explain } from './errors';
import { parseLsn } from './lsn';
import { keyColumnsOf, sourceLabel, type CaptureTable } from './tables';

export async function applyChanges(o: ApplyOptions): Promise<ApplyResult> {
  const started = Date.now();
  checkTables(o.tables);
  const until = o.untilLsn === undefined ? undefined : parseLsn(o.untilLsn);
  let client: pg.PoolClient;
  try {
    client = await o.target.connect();
  } catch (e) {
    throw explain('could not connect to the target', e);
  }
  // A checked-out client has no error listener; a connection that dies between two statements
  // would otherwise end the process. The next statement fails instead.
  const ignore = () => undefined;
  client.on('error', ignore);
  const run = new ApplyRun(o, client, until, started);
  try {
    return await run.run();
  } finally {
    await run.settled();
    client.removeListener('error', ignore);
    client.release(run.targetBroken || undefined);
  }
}

/** Before anything is opened: each table once, by index and by source name, with a copied key. */
function checkTables(tables: CaptureTable[]): void {
  const indexes = new Set<number>();
  const names = new Set<string>();
  for (const t of tables) {
    const name = `${t.sourceSchema}\0${t.sourceName}`;
    if (indexes.has(t.index) || names.has(name))
      throw new CaptureError(`the table ${sourceLabel(t)} (index ${t.index}) is listed twice for change capture`, '42710');
    indexes.add(t.index);
    names.add(name);
    if (!t.key.length) throw new CaptureError(`the table ${sourceLabel(t)} has no key for change capture`, '42P10');
    keyColumnsOf(t);
  }
}

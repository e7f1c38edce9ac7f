// The setup most integration test files share: one PostgreSQL server with databases `src` and
// `tgt` (their connections in BACKFILL_DB_SRC/TGT, for workers too), prepared by the test, then a
// Temporal dev server and its workers; `stop` takes it all down again.
import { startPostgres, type PostgresServer } from '../../src/infra/postgres';
import { closePools } from '../../src/db/pools';
import { startTemporal, type TemporalHarness } from './temporal';

export interface Stack {
  pg: PostgresServer;
  temporal: TemporalHarness;
  stop(): Promise<void>;
}

export async function startStack(
  taskQueue: string,
  prepare: (pg: PostgresServer) => Promise<void>,
  temporalOptions: Parameters<typeof startTemporal>[1] = {},
): Promise<Stack> {
  const pg = await startPostgres();
  let temporal: TemporalHarness | undefined;
  const stop = async () => {
    await temporal?.stop();
    await closePools();
    await pg.stop();
  };
  try {
    await pg.createDatabase('src');
    await pg.createDatabase('tgt');
    await prepare(pg);
    process.env.BACKFILL_DB_SRC = pg.url('src');
    process.env.BACKFILL_DB_TGT = pg.url('tgt');
    temporal = await startTemporal(taskQueue, temporalOptions);
    return { pg, temporal, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

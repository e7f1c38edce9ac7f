// The activities the worker registers. Every one is idempotent (a retry after a crash, or a second
// run of the same input, leaves the databases as one run would) and heartbeats while it runs.
import { planMigration as plan } from './plan';
import { copyRange as copy, verifyRange as verify } from './range';
import { locateRange as locate } from './locate';
import { reconcileTable as reconcile } from './reconcile';
import { buildReport as report } from './report';
import { advanceSequences as sequences, runSwitch as sw, appendAudit, type AuditEntry } from './cutover';
import { alive } from './heartbeat';
import type { MigrationSpec } from '../spec/schema';

export const planMigration = alive(plan);
export const copyRange = alive(copy);
export const verifyRange = alive(verify);
export const locateRange = alive(locate);
export const reconcileTable = alive(reconcile);
export const buildReport = alive(report);
export const advanceSequences = alive(sequences);
export const runSwitch = alive(sw);
export const recordAudit = alive(async (input: { spec: MigrationSpec; entry: AuditEntry }): Promise<void> => {
  await appendAudit(input.spec, input.entry);
});

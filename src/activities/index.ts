// The activities the worker registers. Every one is idempotent: a retry after a crash, or a
// second run of the same input, leaves the databases as one run would.
export { planMigration } from './plan';
export { copyRange, verifyRange } from './range';
export { locateRange } from './locate';
export { reconcileTable } from './reconcile';
export { buildReport } from './report';
export { advanceSequences, runSwitch } from './cutover';
import { appendAudit as append, type AuditEntry } from './cutover';
import type { MigrationSpec } from '../spec/schema';

export async function recordAudit(input: { spec: MigrationSpec; entry: AuditEntry }): Promise<void> {
  await append(input.spec, input.entry);
}

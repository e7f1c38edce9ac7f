// The workflows the worker bundles. Workflow code is deterministic: no I/O, no Node built-ins.
export { backfillMigration } from './migration';

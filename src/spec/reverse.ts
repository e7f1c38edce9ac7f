// The way back (`cutover.reverse`) seen as a migration of its own: the target is its source, the
// source its target, and its actions those of `cutover.reverse`. The change-capture activities run
// on it unchanged. Pure: the workflow builds it too.
import { controlAlias, type MigrationSpec } from './schema';

/** The name the way back goes by: its slot, its publication and its bookkeeping on the source. */
function reverseName(name: string): string {
  return `${name}.reverse`;
}

/**
 * The spec of the stream back, or undefined without `cutover.reverse`. Each table's sides swap (the
 * same columns, key and omissions by name); the ledger stays where it is (control pinned); the
 * slot and publication are its own, created and dropped by the migration.
 */
export function reversedSpec(spec: MigrationSpec): MigrationSpec | undefined {
  const back = spec.cutover.reverse;
  if (!back) return undefined;
  return {
    ...spec,
    name: reverseName(spec.name),
    source: spec.target,
    target: spec.source,
    control: controlAlias(spec),
    tables: spec.tables.map((t) => ({ ...t, source: t.target ?? t.source, target: t.source })),
    capture: 'logical',
    cutover: {
      approval: spec.cutover.approval,
      ...(spec.cutover.approvers ? { approvers: spec.cutover.approvers } : {}),
      freeze: back.freeze,
      ...(back.unfreeze ? { unfreeze: back.unfreeze } : {}),
      switch: back.switch,
    },
  };
}

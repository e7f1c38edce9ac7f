// Preflight: every table of a spec checked against the databases as they are now, with every
// privilege each role needs and change capture's own checks, before anything is written.
import { reverseProblems } from '../reverse/steps';
import type { MigrationSpec } from '../spec/schema';
import { guarded } from '../db/errors';
import { captureProblems } from '../capture/preflight';
import { checkTable, rememberBindings, unbound, type Binding, type TableSides } from './binding';
import { migrationRights, refusals, tableRights, type PrivilegeReport, type Right } from './privileges';

/**
 * Checks every table of the spec once, against the databases as they are now, with every privilege
 * each role needs, and keeps the bindings for the activities that follow in this worker. Throws one
 * non-retryable failure that lists every problem found. `privileges` receives what the privilege
 * check asked and what it could not (validate prints it).
 */
export async function preflight(spec: MigrationSpec, o: { probeValues?: boolean; privileges?: (r: PrivilegeReport) => void } = {}): Promise<Binding[]> {
  const problems: string[] = [];
  const bindings: Binding[] = [];
  // Tables whose roles lack a right are bound all the same, for the migration's own rights.
  const bound: Binding[] = [];
  const rights: Right[] = [];
  for (const [i, table] of spec.tables.entries()) {
    const privileges = async (b: Binding, sides: TableSides) => {
      bound.push(b);
      const found = await tableRights(spec, i, b, sides);
      rights.push(...found);
      return refusals(found);
    };
    const r = await guarded(`checking tables[${i}]`, () =>
      checkTable({ sourceAlias: spec.source, targetAlias: spec.target, table, tableIndex: i, probeValues: o.probeValues, privileges }),
    );
    problems.push(...r.problems);
    if (r.binding) bindings.push(r.binding);
  }
  // The ledger, change capture's role, the switch's record, the foreign keys: for every table that bound.
  const report = await guarded('checking privileges', () => migrationRights(spec, bound));
  report.rights.unshift(...rights);
  problems.push(...refusals(report.rights).filter((p) => !problems.includes(p)));
  o.privileges?.(report);
  // Change capture: the server and every table, before anything is created.
  if (problems.length === 0 && spec.capture !== undefined)
    problems.push(
      ...(await guarded('checking change capture', () => captureProblems({ name: spec.name, source: spec.source, capture: spec.capture }, bindings))),
    );
  // The way back: the target checked as a source, the source as a target, before anything is created.
  if (problems.length === 0 && spec.cutover.reverse) problems.push(...(await guarded('checking the way back', () => reverseProblems(spec))));
  if (problems.length) throw unbound([...new Set(problems)]);
  rememberBindings(spec, bindings);
  return bindings;
}

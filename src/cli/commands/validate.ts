// `backfill validate`: a spec checked on its own, then (where this shell has the connections)
// against the databases: the tables as they resolve, privileges, columns, the plan, foreign keys.
import type { Command } from 'commander';
import { BadInput, loadSpecFile } from '../../spec/load';
import { aliasIsConfigured, envNameForAlias } from '../../spec/aliases';
import { controlAlias, type MigrationSpec, type TableSpec } from '../../spec/schema';
import { redact } from '../../db/redact';
import { constraintsToSetAside, estimatePlan, type PlanEstimate } from '../../plan/plan';
import { preflight } from '../../plan/preflight';
import type { ForeignKey } from '../../db/catalog';
import type { Binding } from '../../plan/binding';
import { describeColumn, summariseColumns } from '../../domain/columns';
import type { PrivilegeReport } from '../../plan/privileges';
import { checkedLines, checkedRoles } from '../../plan/privilege-report';
import { parseTableRef, showName, type TableRef } from '../../spec/names';
import { expandTables } from '../../plan/expand';
import { enforcePolicy } from '../../plan/trust';
import { closePools } from '../../db/pools';
import { EXIT, type Act } from '../exit';

/** The spec in a file, or bad input with its problems. */
export function specOrExit(file: string): MigrationSpec {
  const r = loadSpecFile(file);
  if (!r.ok) throw new BadInput(`${file}: the spec is not valid`, r.problems);
  return r.spec;
}

/** The names of a table entry that had no schema, found through the search path: said next to what they resolved to. */
function searchPathNote(t: TableSpec): string {
  const bare = [t.source, t.target].flatMap((r) => {
    const n = parseTableRef(r as TableRef);
    return n && !n.schema ? [showName(n.table.name)] : [];
  });
  return bare.length ? ` (${bare.join(' and ')} found through the search path)` : '';
}

const megabytes = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`;

export function registerValidate(program: Command, act: Act): void {
  program
    .command('validate')
    .argument('<spec>', 'the migration spec, YAML or JSON')
    .option('--no-db', 'check the spec only, not the databases')
    .description('check a spec, and (where this shell has the BACKFILL_DB_<ALIAS> connections) check it against the databases')
    .action(
      act(async (file: string, o: { db: boolean }) => {
        const spec = specOrExit(file);
        console.log(`${file}: the spec is valid (${spec.tables.length} table${spec.tables.length === 1 ? '' : 's'}, mode ${spec.mode})`);
        const aliases = [...new Set([spec.source, spec.target, controlAlias(spec)])];
        const missing = aliases.filter((a) => !aliasIsConfigured(a));
        if (!o.db) return EXIT.ok;
        if (missing.length) {
          console.log(`databases not checked here: ${missing.map(envNameForAlias).join(', ')} not set (the worker checks them before any row is written)`);
          return EXIT.ok;
        }
        let plans: PlanEstimate[];
        let fks: ForeignKey[];
        let bindings: Binding[];
        let privileges: PrivilegeReport | undefined;
        let tables: TableSpec[];
        try {
          // This shell's worker policy (BACKFILL_POLICY…), if any: the worker applies its own.
          enforcePolicy(spec);
          // Schema patterns stand for the tables they select: each is checked on its own.
          tables = await expandTables(spec);
          const expanded = { ...spec, tables };
          bindings = await preflight(expanded, { probeValues: true, privileges: (r) => (privileges = r) });
          plans = await estimatePlan(expanded, bindings);
          fks = spec.mode === 'copy' ? await constraintsToSetAside(expanded, bindings) : [];
        } catch (e) {
          throw new BadInput(redact((e as Error).message));
        } finally {
          await closePools();
        }
        console.log('the databases match the spec: tables, columns, key, privileges and the source query all check out');
        console.log('the tables, as the databases resolve their names:');
        for (const [i, b] of bindings.entries()) console.log(`  ${b.sourceName} → ${b.targetName}${searchPathNote(tables[i])}`);
        if (privileges) {
          console.log(`privileges: checked for ${checkedRoles(privileges)}; each right the migration uses, asked of the server:`);
          for (const l of checkedLines(privileges)) console.log(`  ${l}`);
          if (privileges.unchecked.length) {
            console.log('not checked:');
            for (const u of privileges.unchecked) console.log(`  ${u}`);
          }
        }
        console.log("the columns (every source column copied or left out by name; every cast and transform evaluated over all the source's rows):");
        for (const b of bindings) {
          console.log(`  ${b.sourceName} -> ${b.targetName}: ${summariseColumns(b.columnPlan)}`);
          for (const c of b.columnPlan) console.log(`    ${describeColumn(c)}`);
        }
        console.log("the plan (row counts are the planner's estimates; nothing was written):");
        for (const p of plans) {
          const rows = p.rows === null ? 'rows unknown (never analyzed)' : `~${p.rows.toLocaleString('en-US')} rows`;
          console.log(`  ${p.table}: ${p.rangeCount.toLocaleString('en-US')} range(s), ${p.ranges}; ${rows}, ${megabytes(p.bytes)}`);
        }
        if (fks.length) {
          console.log('foreign keys on the target, set aside while ranges are written (kept in the ledger), re-created and validated once the data is proven:');
          for (const f of fks) console.log(`  ${f.name} on ${f.owner} -> ${f.referenced}${f.valid ? '' : ' (NOT VALID now: re-created NOT VALID, as it was)'}`);
        }
        return EXIT.ok;
      }),
    );
}

// Whole schemas: a table entry whose source is "schema.*" (or { schema, exclude }) stands for every
// table of that schema, each mapped to the same name in the target schema and keyed by its primary
// key. A table listed on its own wins over a pattern that also takes it.
import { failure } from '../domain/failures';
import type { MigrationSpec, TableSpec } from '../spec/schema';
import { parseSchemaPattern, showName, tableRefKey, type TableRef } from '../spec/names';
import { poolFor } from '../db/pools';
import { resolveSchema, schemaTables } from '../db/catalog';
import { guarded } from '../db/errors';

/** The spec's tables with every schema pattern replaced by the tables it selects (in name order). */
export async function expandTables(spec: Pick<MigrationSpec, 'source' | 'tables'>): Promise<TableSpec[]> {
  if (!spec.tables.some((t) => parseSchemaPattern(t.source) !== undefined)) return spec.tables;
  return guarded('listing the tables of a schema', async () => {
    const src = poolFor(spec.source, 'read');
    const taken = new Set(spec.tables.filter((t) => parseSchemaPattern(t.source) === undefined).map((t) => tableRefKey(t.source as TableRef)));
    const problems: string[] = [];
    const out: TableSpec[] = [];
    for (const [i, t] of spec.tables.entries()) {
      const p = parseSchemaPattern(t.source);
      if (!p) {
        out.push(t);
        continue;
      }
      const schema = await resolveSchema(src, p);
      if (!schema) {
        problems.push(`tables[${i}].source: schema ${showName(p.name)} not found on connection "${spec.source}"`);
        continue;
      }
      const target = t.target === undefined ? schema : parseSchemaPattern(t.target)!.name;
      const excluded = new Set([...(t.exclude ?? []), ...(typeof t.source === 'object' && 'exclude' in t.source ? (t.source.exclude ?? []) : [])]);
      const names = (await schemaTables(src, schema)).filter((n) => !excluded.has(n));
      let added = 0;
      for (const name of names) {
        const key = tableRefKey({ schema, table: name });
        if (taken.has(key)) continue;
        taken.add(key);
        out.push({ source: { schema, table: name }, target: { schema: target, table: name } });
        added++;
      }
      if (added === 0 && names.length === 0) problems.push(`tables[${i}].source: schema ${showName(schema)} has no tables to migrate`);
    }
    if (problems.length) throw failure('PreflightError', `the spec does not match the databases:\n${problems.map((x) => `  ${x}`).join('\n')}`);
    return out;
  });
}

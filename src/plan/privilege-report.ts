// How `backfill validate` tells what the privilege check covered: each role by connection and purpose,
// and what it was checked for.
import { showName } from '../spec/names';
import type { PrivilegeReport, Purpose, Right } from './privileges';

const PURPOSES: Purpose[] = ['source', 'target', 'control', 'capture', 'switch'];

/** Who was checked: `role app on source (connection "src"), role mover on target (connection "tgt"), …`. */
export function checkedRoles(report: PrivilegeReport): string {
  const seen = new Map<string, Right>();
  for (const p of PURPOSES) for (const r of report.rights) if (r.purpose === p && !seen.has(`${p}\0${r.alias}`)) seen.set(`${p}\0${r.alias}`, r);
  return [...seen.values()].map((r) => `role ${showName(r.role)} on ${r.purpose} (connection "${r.alias}")`).join(', ');
}

/** `validate`'s account of the check: per purpose, the role and connection and what it was checked for. */
export function checkedLines(report: PrivilegeReport): string[] {
  const out: string[] = [];
  for (const p of PURPOSES) {
    const rs = report.rights.filter((r) => r.purpose === p);
    if (rs.length === 0) continue;
    for (const alias of [...new Set(rs.map((r) => r.alias))]) {
      const mine = rs.filter((r) => r.alias === alias);
      const byPrivilege = new Map<string, string[]>();
      for (const r of mine) {
        const objects = byPrivilege.get(r.privilege) ?? [];
        if (!objects.includes(r.object)) objects.push(r.object);
        byPrivilege.set(r.privilege, objects);
      }
      const what = [...byPrivilege].map(([priv, objects]) => {
        const named = objects.filter(Boolean);
        if (named.length === 0) return priv;
        const list = named.length <= 4 ? named.join(', ') : `${named.slice(0, 3).join(', ')} and ${named.length - 3} more`;
        return `${priv} ${priv === 'ownership' ? 'of' : 'on'} ${list}`;
      });
      out.push(`${p}: role ${showName(mine[0].role)} on connection "${alias}": ${what.join('; ')}`);
    }
  }
  return out;
}

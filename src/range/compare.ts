// Comparing what the two databases computed: counts, checksums, aggregates (with tolerance) and
// value distributions. Pure functions; the SQL that produced the inputs is in src/db/sql.ts and src/range/sql.ts.
import type { CheckSpec } from '../db/sql';
import { aggregateName } from './sql';

const NULL_VALUE = '<NULL>';

export interface SideProfile {
  count: string;
  checksum: string;
  /** "sum(amount)" -> value as text (null when there are no rows) */
  aggregates: Record<string, string | null>;
  /** column -> value -> count */
  distribution: Record<string, Record<string, string>>;
}

export interface DuplicateKeys {
  /** keys that occur more than once */
  keys: number;
  /** rows beyond the first of each such key */
  surplus: number;
  sample: string[][];
}

export const NO_DUPLICATES: DuplicateKeys = { keys: 0, surplus: 0, sample: [] };

type Row = Record<string, unknown>;

export function parseProfile(rows: Row[], checks: CheckSpec): SideProfile {
  const dist = checks.distribution;
  const total = rows.find((r) => dist.every((_, i) => Number(r[`g${i}`]) === 1)) ?? rows[0];
  const profile: SideProfile = {
    count: String(total?.count ?? '0'),
    checksum: String(total?.checksum ?? '0'),
    aggregates: {},
    distribution: {},
  };
  checks.aggregates.forEach((a, i) => {
    const v = total?.[`a${i}`];
    profile.aggregates[aggregateName(a)] = v === null || v === undefined ? null : String(v);
  });
  dist.forEach((c, i) => {
    const m: Record<string, string> = {};
    for (const r of rows) {
      if (Number(r[`g${i}`]) !== 0) continue;
      const v = r[`v${i}`];
      m[v === null || v === undefined ? NULL_VALUE : String(v)] = String(r.count);
    }
    profile.distribution[c] = m;
  });
  return profile;
}

export function parseDuplicates(rows: Row[]): DuplicateKeys {
  if (rows.length === 0) return NO_DUPLICATES;
  return {
    keys: Number(rows[0].keys),
    surplus: Number(rows[0].surplus),
    sample: rows.map((r) => JSON.parse(String(r.key)) as string[]),
  };
}

export interface AggregateCheck {
  source: string | null;
  target: string | null;
  ok: boolean;
}

export interface Checks {
  count: boolean;
  checksum: boolean;
  aggregates: Record<string, AggregateCheck>;
  /** per distribution column: the values whose counts differ, [source, target] (capped) */
  distribution: Record<string, { ok: boolean; differences: Record<string, [string, string]> }>;
  duplicates: { source: number; target: number; ok: boolean };
  ok: boolean;
}

export interface CompareOptions {
  checks: CheckSpec;
  tolerance: Record<string, number>;
  floatColumns: string[];
  /** columns of number types (integers, numeric, floats); absent: every aggregate is taken as a number */
  numericColumns?: string[];
}

/** Float sums depend on the order of addition: differences this small are not differences. */
const FLOAT_RELATIVE = 1e-9;

const DECIMAL = /^-?\d+(\.\d+)?$/;

const fractionDigits = (v: string) => (v.includes('.') ? v.length - v.indexOf('.') - 1 : 0);

/** A decimal text as an integer count of 10^-scale units (exact: no binary fractions). */
function scaled(v: string, scale: number): bigint {
  const [int, frac = ''] = v.replace(/^-/, '').split('.');
  const n = BigInt(int + frac.padEnd(scale, '0'));
  return v.startsWith('-') ? -n : n;
}

/** |a - b| <= tol, exactly, for decimal texts; undefined when one of them is not one (floats in exponent form). */
function decimalWithin(a: string, b: string, tol: number): boolean | undefined {
  const t = String(tol);
  if (!DECIMAL.test(a) || !DECIMAL.test(b) || !DECIMAL.test(t)) return undefined;
  const scale = Math.max(fractionDigits(a), fractionDigits(b), fractionDigits(t));
  const d = scaled(a, scale) - scaled(b, scale);
  return (d < 0n ? -d : d) <= scaled(t, scale);
}

export function aggregateAgrees(a: string | null, b: string | null, column: string, o: CompareOptions): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  // The same number written with another scale (numeric(12,2) against numeric(14,5)): equal.
  // Numbers only: text '007' and '7' are two values.
  const numeric = o.numericColumns === undefined || o.numericColumns.includes(column);
  if (numeric && decimalWithin(a, b, 0)) return true;
  const tol = o.tolerance[column];
  if (tol !== undefined) {
    const within = decimalWithin(a, b, tol);
    if (within !== undefined) return within || floatsAgree(a, b, column, o);
    const x = Number(a);
    const y = Number(b);
    if (Number.isFinite(x) && Number.isFinite(y) && Math.abs(x - y) <= tol * (1 + FLOAT_RELATIVE)) return true;
  }
  return floatsAgree(a, b, column, o);
}

/** Float sums depend on the order of addition: a difference within FLOAT_RELATIVE of the larger is none. */
function floatsAgree(a: string, b: string, column: string, o: CompareOptions): boolean {
  const x = Number(a);
  const y = Number(b);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return false;
  return o.floatColumns.includes(column) && Math.abs(x - y) <= FLOAT_RELATIVE * Math.max(Math.abs(x), Math.abs(y));
}

const MAX_VALUE_DIFFERENCES = 50;

export function compareProfiles(
  s: SideProfile,
  t: SideProfile,
  o: CompareOptions,
  dups: { source: DuplicateKeys; target: DuplicateKeys } = { source: NO_DUPLICATES, target: NO_DUPLICATES },
): Checks {
  const aggregates: Checks['aggregates'] = {};
  for (const a of o.checks.aggregates) {
    const n = aggregateName(a);
    aggregates[n] = {
      source: s.aggregates[n] ?? null,
      target: t.aggregates[n] ?? null,
      ok: aggregateAgrees(s.aggregates[n] ?? null, t.aggregates[n] ?? null, a.column, o),
    };
  }
  const distribution: Checks['distribution'] = {};
  for (const c of o.checks.distribution) {
    const sm = s.distribution[c] ?? {};
    const tm = t.distribution[c] ?? {};
    const differences: Record<string, [string, string]> = {};
    for (const v of [...new Set([...Object.keys(sm), ...Object.keys(tm)])].sort()) {
      if ((sm[v] ?? '0') !== (tm[v] ?? '0') && Object.keys(differences).length < MAX_VALUE_DIFFERENCES) differences[v] = [sm[v] ?? '0', tm[v] ?? '0'];
    }
    distribution[c] = { ok: Object.keys(differences).length === 0, differences };
  }
  const checks: Checks = {
    count: s.count === t.count,
    checksum: s.checksum === t.checksum,
    aggregates,
    distribution,
    duplicates: { source: dups.source.keys, target: dups.target.keys, ok: dups.source.keys === 0 && dups.target.keys === 0 },
    ok: false,
  };
  checks.ok =
    checks.count && checks.checksum && Object.values(aggregates).every((a) => a.ok) && Object.values(distribution).every((d) => d.ok) && checks.duplicates.ok;
  return checks;
}

/** The names of the checks that failed, for a line in a report. */
export function failedChecks(c: Checks): string[] {
  const out: string[] = [];
  if (!c.count) out.push('count');
  if (!c.checksum) out.push('checksum');
  for (const [n, a] of Object.entries(c.aggregates)) if (!a.ok) out.push(n);
  for (const [n, d] of Object.entries(c.distribution)) if (!d.ok) out.push(`distribution(${n})`);
  if (!c.duplicates.ok) out.push('duplicates');
  return out;
}

/** Orders keys as the database would for integers, and by text otherwise. */
export function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? '';
    const y = b[i] ?? '';
    if (x === y) continue;
    // Integers by value ('9' before '10'); the same value written twice ('007', '7') by its text,
    // so that the order is consistent both ways.
    if (/^-?\d+$/.test(x) && /^-?\d+$/.test(y) && BigInt(x) !== BigInt(y)) return BigInt(x) < BigInt(y) ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

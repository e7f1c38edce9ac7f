// Reports for rendering tests and screenshots, built the way the worker builds them (from ledger
// rows, through reportFromEvidence), without a database: any number of ranges, chosen ones red.
import { reportFromEvidence } from '../../src/report/digest';
import { NO_KEYS, type LedgerRange, type Report, type TableEvidence } from '../../src/domain/report';

export interface SyntheticTable {
  source: string;
  target?: string;
  ranges: number;
  /** rows per range */
  span?: number;
  /** indexes of ranges that failed, each with one located key per kind given */
  failed?: number[];
  /** indexes of ranges the ledger has no row for yet */
  pending?: number[];
  /** the located key of each failed range (default: its first key, as text) */
  keyOf?: (index: number) => string[];
}

export function syntheticReport(migration: string, tables: SyntheticTable[], phase = 'needs_attention'): Report {
  const evidence: TableEvidence[] = tables.map((t) => {
    const span = t.span ?? 200;
    const failed = new Set(t.failed ?? []);
    const pending = new Set(t.pending ?? []);
    const ranges: LedgerRange[] = [];
    for (let i = 0; i < t.ranges; i++) {
      if (pending.has(i)) continue;
      const lo = String(i * span + 1);
      const hi = i === t.ranges - 1 ? '' : String((i + 1) * span + 1);
      const checksum = String(1_000_003n * BigInt(i + 7));
      const bad = failed.has(i);
      const k = t.keyOf?.(i) ?? [String(i * span + 17)];
      ranges.push({
        index: i,
        lo,
        hi,
        status: bad ? 'failed' : 'verified',
        attempts: bad ? 2 : 1,
        sourceCount: String(span),
        sourceChecksum: checksum,
        targetCount: String(bad ? span - 1 : span),
        targetChecksum: bad ? String(BigInt(checksum) - 12345n) : checksum,
        failedChecks: bad ? ['count', 'checksum'] : [],
        located: bad ? { missing: 1, extra: 0, changed: 0, duplicates: 0, columns: {} } : null,
        keys: bad ? { ...NO_KEYS, missing: [k] } : NO_KEYS,
      });
    }
    const total = String(t.ranges * span);
    const side = (count: string) => ({
      count,
      checksum: '987654321987654321',
      aggregates: { 'sum(amount)': '12345.67' },
      distribution: { status: { new: '10', paid: '20' } },
    });
    return {
      source: t.source,
      target: t.target ?? `${t.source}_v2`,
      planned: t.ranges,
      ranges,
      totals: {
        source: side(total),
        target: side(String(Number(total) - failed.size)),
        failed: failed.size ? ['count', 'checksum'] : [],
        outside: { count: '0', keys: [] },
      },
    };
  });
  return reportFromEvidence({
    migration,
    phase,
    generatedAt: '2025-01-02T03:04:05.000Z',
    evidence,
    delta: { watermark: null, rowsApplied: 0, remaining: 0 },
  });
}

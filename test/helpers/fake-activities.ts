// In-memory fakes of the activities the worker registers (src/activities/index.ts), for running the
// migration workflow on a real Temporal server without databases. One table per migration; each
// migration (by name) has its own scenario: its behaviour (ranges that mismatch, delays, latches)
// and what the workflow asked of it (calls per range, locates, switches, audit entries).
//
// The ledger is the scenario's: every attempt writes its range's latest status there, reconcileTable(s)
// sums it into totals, and buildReport hands it to the real report model (reportFromEvidence), so
// verdicts and digests are the product's own. A range's checksums carry its copy counter, so a range
// copied again is new evidence and the digest changes.
import { ApplicationFailure } from '@temporalio/common';
import type { InjectedSinks } from '@temporalio/worker';
import type * as real from '../../src/activities';
import type { AuditEntry, SwitchResult } from '../../src/gate/cutover';
import type { RangeInput } from '../../src/range/copy';
import type { Located } from '../../src/domain/range-lifecycle';
import type { TableTotals } from '../../src/gate/reconcile';
import type { TablePlan } from '../../src/domain/plan';
import type { RangeResult } from '../../src/domain/range-lifecycle';
import type { LedgerRange } from '../../src/domain/report';
import { NO_KEYS } from '../../src/domain/report';
import { reportFromEvidence } from '../../src/report/digest';
import type { AuditSinks } from '../../src/workflows/messages';
import type { MetricSinks } from '../../src/workflows/metrics';
import { metricSinks } from '../../src/metrics/meter';

export type Activities = typeof real;
export type RefusedEntry = Parameters<AuditSinks['audit']['refused']>[0];

export interface Latch {
  promise: Promise<void>;
  release(): void;
}

export function latch(): Latch {
  let release!: () => void;
  const promise = new Promise<void>((r) => (release = r));
  return { promise, release };
}

export interface RangeCall {
  i: number;
  attempt: number;
  final: boolean;
}

export class Scenario {
  /** ranges of the one table */
  ranges = 3;
  /** how long one copy takes */
  delayMs = 10;
  /** ranges whose copies mismatch (every attempt, until taken out) */
  readonly broken = new Set<number>();
  /** set: copies wait for it before they finish */
  holdCopies?: Latch;
  /** per audit action: recording that entry waits for the latch (e.g. 'approve': the approval is taken, the switch not yet run) */
  readonly holdAudit = new Map<string, Latch>();

  readonly copies: RangeCall[] = [];
  readonly locates: RangeCall[] = [];
  readonly switches: Parameters<Activities['runSwitch']>[0][] = [];
  readonly sequences: number[] = [];
  readonly audit: AuditEntry[] = [];
  readonly refused: RefusedEntry[] = [];
  readonly reports: string[] = [];
  inFlight = 0;
  maxInFlight = 0;

  readonly ledger = new Map<number, LedgerRange>();
  readonly generation = new Map<number, number>();
  totals: TableTotals | null = null;

  constructor(readonly name: string) {}

  copiesOf(i: number): RangeCall[] {
    return this.copies.filter((c) => c.i === i);
  }

  /** copies started per range, index by index */
  copyCounts(): number[] {
    return Array.from({ length: this.ranges }, (_, i) => this.copiesOf(i).length);
  }

  actions(): string[] {
    return this.audit.map((e) => e.action);
  }
}

const side = (count: string, checksum: string) => ({ count, checksum, aggregates: {}, distribution: {} });

export class FakeActivities {
  private readonly scenarios = new Map<string, Scenario>();

  scenario(name: string, o: Partial<Pick<Scenario, 'ranges' | 'delayMs'>> & { broken?: number[] } = {}): Scenario {
    const s = new Scenario(name);
    if (o.ranges !== undefined) s.ranges = o.ranges;
    if (o.delayMs !== undefined) s.delayMs = o.delayMs;
    for (const i of o.broken ?? []) s.broken.add(i);
    this.scenarios.set(name, s);
    return s;
  }

  of(name: string): Scenario {
    const s = this.scenarios.get(name);
    if (!s) throw ApplicationFailure.nonRetryable(`no scenario for migration ${name}`);
    return s;
  }

  private async range(input: RangeInput): Promise<RangeResult> {
    const s = this.of(input.migration);
    const i = input.rangeIndex;
    s.copies.push({ i, attempt: input.attempt, final: input.finalAttempt });
    s.inFlight++;
    s.maxInFlight = Math.max(s.maxInFlight, s.inFlight);
    try {
      await new Promise((r) => setTimeout(r, s.delayMs));
      await s.holdCopies?.promise;
      const gen = (s.generation.get(i) ?? 0) + 1;
      s.generation.set(i, gen);
      const bad = s.broken.has(i);
      const checksum = String(1000 * (i + 1) + gen);
      const source = { count: '10', checksum };
      const target = bad ? { count: '9', checksum: String(Number(checksum) - 7) } : { ...source };
      const status: RangeResult['status'] = bad ? (input.finalAttempt ? 'failed' : 'mismatch') : 'verified';
      const r: RangeResult = { status, lo: String(i * 10), hi: String(i * 10 + 10), source, target, failed: bad ? ['count', 'checksum'] : [], rowsCopied: 10 };
      s.ledger.set(i, {
        index: i,
        lo: r.lo,
        hi: r.hi,
        status,
        attempts: input.attempt,
        sourceCount: source.count,
        sourceChecksum: source.checksum,
        targetCount: target.count,
        targetChecksum: target.checksum,
        failedChecks: r.failed,
        located: null,
        keys: NO_KEYS,
      });
      return r;
    } finally {
      s.inFlight--;
    }
  }

  private readonly sinkFns = {
    refused: (entry: RefusedEntry): void => {
      this.of(entry.migration).refused.push(entry);
    },
  };

  /** The worker's sinks: refused approvals recorded in the scenario (the real worker writes the ledger's audit); the workflow's gauges. */
  readonly sinks: InjectedSinks<AuditSinks & MetricSinks> = {
    audit: { refused: { fn: (_info, e) => this.sinkFns.refused(e), callDuringReplay: false } },
    ...metricSinks(),
  };

  private notHere(what: string): never {
    throw ApplicationFailure.nonRetryable(`${what} is not expected for a migration whose source takes no writes`);
  }

  readonly activities: Activities = {
    planMigration: async ({ migration, spec }) => {
      const s = this.of(migration);
      const plans = spec.tables.map((t): TablePlan => ({
        source: String(t.source),
        target: String(t.target),
        kind: 'size',
        lo: ['0'],
        hi: [String(s.ranges * 10)],
        size: '10',
        rangeCount: s.ranges,
      }));
      return { plans, tables: spec.tables };
    },
    copyRange: (input) => this.range(input),
    verifyRange: (input) => this.range(input),
    locateRange: async (input): Promise<Located> => {
      const s = this.of(input.migration);
      const i = input.rangeIndex;
      s.locates.push({ i, attempt: input.attempt, final: input.finalAttempt });
      const located: Located = {
        missing: 1,
        extra: 0,
        changed: 0,
        duplicates: 0,
        keys: { missing: [[String(i * 10 + 5)]], extra: [], changed: [], duplicates: [] },
        columns: {},
        levels: 1,
        rowsFetched: 19,
      };
      const l = s.ledger.get(i);
      if (l) s.ledger.set(i, { ...l, located: { missing: 1, extra: 0, changed: 0, duplicates: 0, columns: {} }, keys: located.keys });
      return located;
    },
    recheckRange: async () => {
      throw ApplicationFailure.nonRetryable('reading located keys again is not expected here: these scenarios do not verify a lagging target');
    },
    reconcileTable: async ({ migration }) => {
      const s = this.of(migration);
      const rs = [...s.ledger.values()];
      const sum = (xs: string[]) => xs.reduce((a, x) => a + BigInt(x), 0n).toString();
      const src = side(sum(rs.map((r) => r.sourceCount!)), sum(rs.map((r) => r.sourceChecksum!)));
      const tgt = side(sum(rs.map((r) => r.targetCount!)), sum(rs.map((r) => r.targetChecksum!)));
      const count = src.count === tgt.count;
      const checksum = src.checksum === tgt.checksum;
      const failed = [...(count ? [] : ['count']), ...(checksum ? [] : ['checksum'])];
      s.totals = {
        source: src,
        target: tgt,
        checks: { count, checksum, aggregates: {}, distribution: {}, duplicates: { source: 0, target: 0, ok: true }, ok: count && checksum },
        failed,
        outside: { count: '0', keys: [] },
        sourceOutside: { count: '0', keys: [] },
        coverage: { ranges: rs.length, ok: true },
      };
      return s.totals;
    },
    reconcileTables: async (input) => {
      for (const t of input.tables) await this.activities.reconcileTable({ migration: input.migration, spec: input.spec, ...t });
      return { reconciled: input.tables.length };
    },
    buildReport: async (input) => {
      const s = this.of(input.migration);
      const report = reportFromEvidence({
        migration: input.migration,
        phase: input.phase,
        generatedAt: input.generatedAt,
        evidence: input.plans.map((p) => ({
          source: p.source,
          target: p.target,
          planned: p.rangeCount,
          ranges: [...s.ledger.values()].sort((a, b) => a.index - b.index),
          totals: s.totals,
        })),
        delta: input.delta ?? { watermark: null, rowsApplied: 0, remaining: 0 },
        live: input.live,
      });
      s.reports.push(report.digest);
      return report;
    },
    advanceSequences: async ({ spec }) => {
      this.of(spec.name).sequences.push(Date.now());
      return [];
    },
    runSwitch: async (input): Promise<SwitchResult> => {
      this.of(input.migration).switches.push(input);
      return { applied: true, switchedAt: new Date().toISOString() };
    },
    compareTotals: async (input) => input.tables.map(() => ({ failed: [] })),
    checkpointBack: async () => {
      throw new Error('not faked: the way back runs against real servers');
    },
    switchRecorded: async (input) => {
      const s = this.of(input.migration).switches.find((x) => x.execution === input.execution && !x.back === !input.back);
      return s ? { at: new Date().toISOString() } : null;
    },
    recordAudit: async ({ entry }) => {
      const s = this.of(entry.migration);
      await s.holdAudit.get(entry.action)?.promise;
      s.audit.push(entry);
    },
    captureWatermark: async () => this.notHere('captureWatermark'),
    applyDelta: async () => this.notHere('applyDelta'),
    sweepTable: async () => this.notHere('sweepTable'),
    runAction: async () => this.notHere('runAction'),
    awaitWriters: async () => this.notHere('awaitWriters'),
    restoreConstraints: async () => [],
    checkSchema: async () => ({ columns: [], partitions: [] }),
    captureBaseline: async () => this.notHere('captureBaseline'),
    captureTripwire: async () => this.notHere('captureTripwire'),
    changedSince: async () => this.notHere('changedSince'),
    copyOutside: async () => this.notHere('copyOutside'),
    holdSnapshot: async () => this.notHere('holdSnapshot'),
    awaitEpoch: async () => this.notHere('awaitEpoch'),
    applyCapture: async () => this.notHere('applyCapture'),
    compareWindow: async () => this.notHere('compareWindow'),
    slotState: async () => this.notHere('slotState'),
    dropCapture: async () => this.notHere('dropCapture'),
    stopStream: async () => this.notHere('stopStream'),
    startReverse: async () => this.notHere('startReverse'),
  };
}

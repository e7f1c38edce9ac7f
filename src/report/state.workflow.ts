// The evidence the migration keeps: the last report built from the ledger and its digest, and the
// audit entries recorded since (shown with it until it is built again). The evidence phase and the
// switch change it through these methods; the rest reads it.
import { withAuditSince, type AuditRecord, type Report } from '../domain/report';

interface AuditSince {
  entry: AuditRecord;
  /** recorded while a report was being built (its ledger read may or may not see it) */
  raced?: boolean;
}

export class Evidence {
  private _report?: Report;
  private _digest?: string;
  /** audit entries recorded since the report was built (the workflow's own, and refused attempts the worker signalled), shown with it */
  private readonly since: AuditSince[] = [];
  private building = false;

  get report(): Readonly<Report> | undefined {
    return this._report;
  }
  /** the digest of the evidence presented now */
  get digest(): string | undefined {
    return this._digest;
  }

  /** `r` with the audit entries recorded since the report was built. */
  withAuditSince(r: Report): Report {
    return withAuditSince(r, this.since);
  }

  /** An audit entry recorded now, for the report until it is built again. */
  audited(entry: AuditRecord): void {
    this.since.push({ entry, ...(this.building ? { raced: true } : {}) });
  }

  /** A report is being built: returns the entries recorded before (its ledger read has them). */
  buildStarted(): number {
    this.building = true;
    return this.since.length;
  }

  /** The build ended (built or not). */
  buildEnded(): void {
    this.building = false;
  }

  /** The report built: its digest is the evidence's, and the `before` entries it covers are no longer shown apart. */
  built(report: Report, before: number): void {
    this._report = report;
    this.since.splice(0, before);
    this._digest = report.digest;
  }

  /** Authority switched at `at`. */
  switched(at: string): void {
    this._report = { ...this._report!, switchedAt: at };
  }
}

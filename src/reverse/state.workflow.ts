// The way back's state (`cutover.reverse`), inside the live state that continue-as-new carries:
// where its stream started on the target, the switch it follows, how far it has applied to the
// source, and a finish asked for. The way back's workflow code changes it through these methods;
// the progress query reads it.
import type { ReverseProgress } from '../workflows/messages';
import type { LiveState, ReverseState } from '../workflows/types';
import { countApplied, type Applied } from '../capture/state.workflow';
import type { CaptureBaseline } from '../capture/baseline';
import type { Approval, ReverseReport } from '../domain/report';

export class Reverse {
  /** `live`: the live state as it stands now (a continued run replaces it) */
  constructor(private readonly live: () => LiveState | undefined) {}

  get view(): Readonly<ReverseState> | undefined {
    return this.live()?.reverse;
  }

  private get r(): ReverseState {
    return this.live()!.reverse!;
  }

  /** The slot of the way back exists on the target from `point` on (before the switch), with its evidence's digest and the tripwire's start. */
  started(point: string, evidence?: string, baseline?: CaptureBaseline): void {
    const l = this.live()!;
    l.reverse ??= { point, applied: null, transactions: 0, rows: 0, lagBytes: '0', lagSeconds: 0, dropped: false, evidence, baseline };
  }

  /** The switch back is approved (its validator checked the digest and the approver). */
  approveBack(a: Approval): void {
    this.r.approval = a;
  }

  /** The switch back froze the target. */
  froze(): void {
    this.r.frozen = true;
  }

  /** The target takes writes again (cutover.reverse.unfreeze ran, or there is none to run). */
  unfroze(): void {
    this.r.frozen = false;
  }

  /** The switch back's final window was red: the approval is void, and why is kept. Returns the approval voided. */
  backRed(why: string): Approval | undefined {
    const r = this.r;
    const a = r.approval;
    r.approval = undefined;
    r.red = why;
    return a;
  }

  /** A checkpoint was tried at `at` (workflow time). */
  checkpointTried(at: number): void {
    this.r.checkpointTried = { at, rows: this.r.rows };
  }

  /** A checkpoint held: the source equals the target at `point`. */
  checkpointed(c: { point: string; baseline: CaptureBaseline; at: string }): void {
    const r = this.r;
    r.checkpoint = { ...c, rows: r.rows };
    r.checkpointRed = undefined;
  }

  /** A checkpoint did not hold: why (the one before it stays). */
  checkpointDiffered(why: string): void {
    this.r.checkpointRed = why;
  }

  /** Where the switch back's window starts: the last checkpoint, else the switch. */
  get windowStart(): { point: string; baseline?: CaptureBaseline } {
    const r = this.r;
    return r.checkpoint ? { point: r.checkpoint.point, baseline: r.checkpoint.baseline } : { point: r.point, baseline: r.baseline };
  }

  /** The switch back's final window was green. */
  windowChecked(w: NonNullable<ReverseState['window']>): void {
    this.r.window = w;
  }

  /** runSwitch is about to be asked to switch back. */
  backAsked(): void {
    this.r.backAsked = true;
  }

  /** The switch back ran: the target stays as its freeze left it. */
  switchedBack(at: string): void {
    const r = this.r;
    r.switchedBackAt = at;
    r.frozen = false;
  }

  /** The switch ran: the source follows the target from now on. */
  switched(o: { switchedAt: string; digest: string; approver: string; keepUntil?: number }): void {
    Object.assign(this.r, o);
  }

  /** Counts a call of the stream back. */
  applied(a: Applied): void {
    countApplied(this.r, a);
  }

  /** A finish is asked for (the update, an abort, a cancellation, `keep` elapsed); the first one counts. */
  finishAsked(by: string, reason: string): void {
    const r = this.live()?.reverse;
    if (r && !r.finish) r.finish = { by, reason };
  }

  get finishing(): boolean {
    return !!this.live()?.reverse?.finish;
  }

  /** The slot and the publication on the target are gone. */
  dropped(): void {
    this.r.dropped = true;
  }

  progress(): ReverseProgress | undefined {
    const r = this.live()?.reverse;
    return (
      r && {
        since: r.switchedAt ?? null,
        appliedLsn: r.applied,
        lagSeconds: r.lagSeconds,
        lagBytes: r.lagBytes,
        transactions: r.transactions,
        rows: r.rows,
        ...(r.evidence ? { digest: r.evidence } : {}),
        ...(r.red ? { red: r.red } : {}),
        ...(r.keepUntil !== undefined ? { keepUntil: new Date(r.keepUntil).toISOString() } : {}),
      }
    );
  }

  /** The way back as the report presents it. */
  report(): ReverseReport | undefined {
    const r = this.live()?.reverse;
    if (!r) return undefined;
    return {
      digest: r.evidence ?? null,
      point: r.point,
      switchedAt: r.switchedAt ?? null,
      stream: { appliedLsn: r.applied, transactions: r.transactions, rows: r.rows, lagSeconds: r.lagSeconds, lagBytes: r.lagBytes },
      ...(r.approval ? { approval: r.approval } : {}),
      ...(r.red ? { red: r.red } : {}),
      ...(r.window ? { window: r.window } : {}),
      ...(r.switchedBackAt ? { switchedBackAt: r.switchedBackAt } : {}),
      ...(r.finish && r.dropped ? { finished: r.finish } : {}),
      ...(r.keepUntil !== undefined ? { keepUntil: new Date(r.keepUntil).toISOString() } : {}),
      ...(r.checkpoint ? { checkpoint: { point: r.checkpoint.point, at: r.checkpoint.at } } : {}),
      ...(r.checkpointRed ? { checkpointRed: r.checkpointRed } : {}),
    };
  }
}

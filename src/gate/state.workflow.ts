// The gate's state: the decision on the evidence presented now (an approval or a rejection), every
// approval given, the overdue approval's attention, the freeze, and the last final window. The
// handlers, the gate and the final check change it through these methods; the rest reads it.
import type { Approval } from '../domain/report';
import type { FinalWindow } from '../workflows/types';

export interface Rejection {
  approver: string;
  reason: string;
}

export class Decisions {
  private _approval?: Approval;
  private _rejection?: Rejection;
  private readonly given: Approval[] = [];
  private _attention?: string;
  private _frozen = false;
  private _switching = false;
  private _finalWindow?: FinalWindow;

  /** the approval of the evidence presented now */
  get approval(): Approval | undefined {
    return this._approval;
  }
  /** the rejection of the evidence presented now */
  get rejection(): Readonly<Rejection> | undefined {
    return this._rejection;
  }
  /** every approval given, in order (the report lists them) */
  get approvals(): readonly Approval[] {
    return this.given;
  }
  /** why a person should look (the approval is overdue) */
  get attention(): string | undefined {
    return this._attention;
  }
  /** the freeze action ran and no unfreeze or switch has followed: an abort must unfreeze */
  get frozen(): boolean {
    return this._frozen;
  }
  /** the switch action was asked for (runSwitch scheduled): from here only its record says whether it ran */
  get switching(): boolean {
    return this._switching;
  }
  /** the last final check: rows in its window, and how long it took */
  get finalWindow(): Readonly<FinalWindow> | undefined {
    return this._finalWindow;
  }

  /** A continued run: the approvals given before. */
  restore(approvals: Approval[]): void {
    this.given.push(...approvals);
  }

  /** What the next run takes over. */
  carried(): Approval[] {
    return this.given;
  }

  /** The evidence is presented (again): no decision on it yet. */
  presented(): void {
    this._approval = undefined;
    this._rejection = undefined;
  }

  approve(a: Approval): void {
    this._approval = a;
    this.given.push(a);
  }

  reject(r: Rejection): void {
    this._rejection = r;
  }

  /** The approval no longer holds: returns it (a new one is needed). */
  voidApproval(): Approval | undefined {
    const a = this._approval;
    this._approval = undefined;
    return a;
  }

  /** A person should look: `why` (set while the approval is overdue). */
  attend(why: string): void {
    this._attention = why;
  }

  attended(): void {
    this._attention = undefined;
  }

  froze(): void {
    this._frozen = true;
  }

  unfroze(): void {
    this._frozen = false;
  }

  /** runSwitch is about to be asked to switch. */
  switchAsked(): void {
    this._switching = true;
  }

  /** The switch ran: the source stays as the switch left it, and nothing unfreezes it any more. */
  handedOver(): void {
    this._frozen = false;
  }

  /** The final check's window: its rows, its time, its watermark. */
  finalWindowChecked(w: FinalWindow): void {
    this._finalWindow = w;
  }
}

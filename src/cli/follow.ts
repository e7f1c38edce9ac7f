// Following a migration's progress until it ends or waits for a person. Ctrl-C stops the following,
// never the migration: the terminal is given back as it was, and `Interrupted` says how to go on.
import type { WorkflowHandle } from '@temporalio/client';
import { gateInstructions, renderProgress } from '../report/render';
import { progressQuery, type Progress } from '../workflows/messages';
import { TERMINAL } from '../domain/phases';
import { ProgressDisplay } from './progress';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Ctrl-C (SIGINT) while following a migration: the watch ends, the migration goes on in Temporal. */
export class Interrupted extends Error {
  constructor(
    readonly migration: string,
    said = `stopped watching ${migration}; the migration goes on in Temporal. Follow it again: backfill status ${migration} --watch; ` +
      `read its report: backfill report ${migration}; stop it: backfill abort ${migration}`,
  ) {
    super(said);
  }
}

/** Follows a migration until it ends (or, with `untilGate`, until it waits for a person). */
export async function follow(h: WorkflowHandle, o: { quiet?: boolean; untilGate?: boolean; everyMs?: number } = {}): Promise<Progress> {
  const display = o.quiet ? undefined : new ProgressDisplay();
  let last: Progress | undefined;
  let said = '';
  let ratesAt = Date.now();
  const RATES_EVERY_MS = 30_000;
  // Ctrl-C ends whatever the loop waits for (a query, the pause between two).
  let interrupt: (e: Interrupted) => void = () => undefined;
  const interrupted = new Promise<never>((_, reject) => (interrupt = reject));
  // Read through `until` (a race); unhandled only when nothing waits at the moment of Ctrl-C.
  interrupted.catch(() => undefined);
  const onSigint = () => interrupt(new Interrupted(h.workflowId));
  const until = <T>(p: Promise<T>): Promise<T> => Promise.race([p, interrupted]);
  process.on('SIGINT', onSigint);
  try {
    for (;;) {
      try {
        last = await until(h.query(progressQuery));
      } catch (e) {
        if (e instanceof Interrupted) throw e;
        const d = await until(h.describe());
        if (d.status.name !== 'RUNNING') break;
        throw e;
      }
      display?.update(last);
      // A new block when the phase, its reason, the digest or what it waits for changes.
      const waits = (last.waiting ?? []).map((w) => `${w.what} ${w.error}`).join('; ');
      const line = `${last.phase}${last.detail ? ` – ${last.detail}` : ''}${last.digest ?? ''}${waits}`;
      if (display && !display.interactive) {
        // A log gets a line per change, the gate's steps once, and each table's rate now and then.
        if (line !== said) {
          said = line;
          console.error(renderProgress(last));
          const gate = gateInstructions(last);
          if (gate) console.error(gate);
          ratesAt = Date.now();
        } else if (Date.now() - ratesAt >= RATES_EVERY_MS && !TERMINAL.includes(last.phase)) {
          ratesAt = Date.now();
          console.error(display.rateLines(last).join('\n'));
        }
      }
      if (TERMINAL.includes(last.phase)) break;
      if (o.untilGate && (last.phase === 'awaiting_approval' || last.phase === 'needs_attention')) break;
      await until(sleep(o.everyMs ?? 1000));
    }
  } catch (e) {
    // The terminal echoed ^C where the cursor was: the message takes that row.
    if (e instanceof Interrupted && process.stderr.isTTY) process.stderr.write('\r\u001b[K');
    throw e;
  } finally {
    process.removeListener('SIGINT', onSigint);
    display?.stop();
  }
  return last!;
}

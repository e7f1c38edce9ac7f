// Following a migration's progress until it ends or waits for a person.
import type { WorkflowHandle } from '@temporalio/client';
import { gateInstructions, renderProgress } from '../report/render';
import { TERMINAL, progressQuery, type Progress } from '../workflows/messages';
import { ProgressDisplay } from './progress';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Follows a migration until it ends (or, with `untilGate`, until it waits for a person). */
export async function follow(h: WorkflowHandle, o: { quiet?: boolean; untilGate?: boolean; everyMs?: number } = {}): Promise<Progress> {
  const display = o.quiet ? undefined : new ProgressDisplay();
  let last: Progress | undefined;
  let said = '';
  let ratesAt = Date.now();
  const RATES_EVERY_MS = 30_000;
  try {
    for (;;) {
      try {
        last = await h.query(progressQuery);
      } catch (e) {
        const d = await h.describe();
        if (d.status.name !== 'RUNNING') break;
        throw e;
      }
      display?.update(last);
      const line = `${last.phase}${last.detail ? ` – ${last.detail}` : ''}${last.digest ?? ''}`;
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
      await sleep(o.everyMs ?? 1000);
    }
  } finally {
    display?.stop();
  }
  return last!;
}


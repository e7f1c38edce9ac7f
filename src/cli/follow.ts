// Following a migration's progress until it ends or waits for a person.
import type { WorkflowHandle } from '@temporalio/client';
import { renderProgress } from '../report/render';
import { TERMINAL, progressQuery, type Progress } from '../workflows/messages';
import { ProgressDisplay } from './progress';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Follows a migration until it ends (or, with `untilGate`, until it waits for a person). */
export async function follow(h: WorkflowHandle, o: { quiet?: boolean; untilGate?: boolean } = {}): Promise<Progress> {
  const display = o.quiet ? undefined : new ProgressDisplay();
  let last: Progress | undefined;
  let said = '';
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
      const line = `${last.phase}${last.detail ? ` – ${last.detail}` : ''}`;
      if (line !== said && !display?.interactive) {
        said = line;
        if (!o.quiet) console.error(renderProgress(last));
      }
      if (TERMINAL.includes(last.phase)) break;
      if (o.untilGate && (last.phase === 'awaiting_approval' || last.phase === 'needs_attention')) break;
      await sleep(1000);
    }
  } finally {
    display?.stop();
  }
  return last!;
}


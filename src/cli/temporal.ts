// A migration's workflow as the CLI reaches it in Temporal: the connection, how a closed workflow
// ended, and sending it something only while it runs.
import { Client, Connection, WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { BadInput } from '../spec/load';
import { redact } from '../db/redact';
import { temporalTarget } from '../client';
import type { Ending } from '../domain/report';
import type { MigrationResult } from '../workflows/messages';
import { isFailure } from '../domain/failures';

export async function connect(): Promise<Client> {
  const t = temporalTarget();
  try {
    const connection = await Connection.connect({ address: t.address, tls: t.tls as never, apiKey: t.apiKey, metadata: t.metadata });
    return new Client({ connection, namespace: t.namespace });
  } catch (e) {
    throw new Error(`cannot reach Temporal at ${t.address}: ${(e as Error).message} (set TEMPORAL_ADDRESS)`);
  }
}

export async function finalResult(h: WorkflowHandle): Promise<MigrationResult | { phase: 'failed'; reason: string }> {
  try {
    return (await h.result()) as MigrationResult;
  } catch (e) {
    const cause = (e as { cause?: { message?: string; type?: string; details?: unknown[] } }).cause;
    // An aborted migration ends as a failure of type Aborted, its result in the details.
    if (isFailure(cause, 'Aborted') && cause?.details?.[0]) return cause.details[0] as MigrationResult;
    return { phase: 'failed', reason: redact(cause?.message ?? (e as Error).message) };
  }
}

/** How a closed workflow ended: completed, or an Ending. */
type Closed = Ending | { phase: 'completed'; switchedAt?: string; switchedBackAt?: string };

/**
 * How a closed workflow ended, or undefined while it runs: completed, an abort (a failure of type
 * Aborted, its result in the details; Canceled before that was patched), a failure, a termination.
 */
async function closedAs(h: WorkflowHandle): Promise<Closed | undefined> {
  const status = (await h.describe()).status.name;
  if (!['COMPLETED', 'FAILED', 'CANCELLED', 'TERMINATED', 'TIMED_OUT'].includes(status)) return undefined;
  if (status === 'TERMINATED') return { phase: 'failed', reason: 'terminated in Temporal, with nothing cleaned up' };
  if (status === 'TIMED_OUT') return { phase: 'failed', reason: 'timed out in Temporal' };
  if (status === 'CANCELLED') return { phase: 'aborted', reason: 'cancelled through Temporal' };
  const r = await finalResult(h);
  if (r.phase === 'aborted') return { phase: 'aborted', reason: r.reason ?? 'by an operator' };
  if (r.phase === 'completed')
    return {
      phase: 'completed',
      switchedAt: 'switchedAt' in r ? r.switchedAt : undefined,
      ...(r.reverse?.switchedBackAt ? { switchedBackAt: r.reverse.switchedBackAt } : {}),
    };
  return { phase: 'failed', reason: r.reason ?? 'the migration failed' };
}

/** How a closed workflow ended, when that is not a completed migration. */
export async function endingInTemporal(h: WorkflowHandle): Promise<Ending | undefined> {
  const c = await closedAs(h);
  return c && c.phase !== 'completed' ? c : undefined;
}

/** A migration that has ended cannot be told anything: bad input, saying how it ended. */
export async function refuseIfEnded(h: WorkflowHandle, cannotBe: string): Promise<void> {
  const c = await closedAs(h);
  if (!c) return;
  // A reason of several lines (a spec that does not match the databases, problem by problem) follows the sentence.
  const why = c.phase === 'completed' ? [] : c.reason.split('\n').map((l) => l.trimEnd());
  const how =
    c.phase === 'completed'
      ? `completed${c.switchedAt ? `, switched at ${c.switchedAt}` : ''}${c.switchedBackAt ? `, switched back at ${c.switchedBackAt}` : ''}`
      : why.length === 1
        ? `${c.phase}: ${why[0]}`
        : c.phase;
  throw new BadInput(
    `${h.workflowId} has ended (${how}); it cannot be ${cannotBe} any more. What it left: backfill report ${h.workflowId}`,
    why.length > 1 ? why : [],
  );
}

/**
 * Sends a signal or an update to a migration that runs; one that has ended (before, or while this
 * was sent: Temporal then says "not found") is named as ended, with how it ended.
 */
export async function whileRunning<T>(h: WorkflowHandle, cannotBe: string, send: () => Promise<T>): Promise<T> {
  await refuseIfEnded(h, cannotBe);
  try {
    return await send();
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) await refuseIfEnded(h, cannotBe);
    throw e;
  }
}

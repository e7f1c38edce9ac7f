// The error a person should read: the root cause of an activity failure (a preflight message, a
// dropped column), not "Activity task failed".
import { ActivityFailure } from '@temporalio/workflow';

export function rootCause(e: unknown): Error {
  let cur = e as Error & { cause?: unknown };
  while (cur instanceof ActivityFailure && cur.cause instanceof Error) cur = cur.cause;
  return cur;
}

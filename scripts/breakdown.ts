// Where a migration's time went, read from its Temporal history (the bench's breakdowns).
import type { WorkflowHandle } from '@temporalio/client';

const secs = (ms: number) => (ms / 1000).toFixed(2);

/**
 * Where a migration's time went, from its history: per activity type, how many ran, the sum of
 * their run times (started -> completed) and the span from the first schedule to the last
 * completion; and the whole run.
 */
type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;
export function breakdown(h: History): { totalMs: number; byType: Record<string, { n: number; runMs: number; spanMs: number; waitMs: number }> } {
  const ms = (t: unknown) => {
    const x = t as { seconds?: unknown; nanos?: number };
    return Number(x.seconds ?? 0) * 1000 + (x.nanos ?? 0) / 1e6;
  };
  const events = h.events ?? [];
  const scheduled = new Map<string, { type: string; at: number; startedAt?: number }>();
  const byType: Record<string, { n: number; runMs: number; spanMs: number; waitMs: number; first: number; last: number }> = {};
  for (const e of events) {
    const at = ms(e.eventTime);
    const id = String(e.eventId);
    if (e.activityTaskScheduledEventAttributes) scheduled.set(id, { type: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', at });
    const st = e.activityTaskStartedEventAttributes;
    if (st) scheduled.get(String(st.scheduledEventId))!.startedAt = at;
    const done = e.activityTaskCompletedEventAttributes;
    if (done) {
      const s = scheduled.get(String(done.scheduledEventId))!;
      const b = (byType[s.type] ??= { n: 0, runMs: 0, spanMs: 0, waitMs: 0, first: Infinity, last: 0 });
      b.n++;
      b.runMs += at - (s.startedAt ?? s.at);
      b.waitMs += (s.startedAt ?? s.at) - s.at;
      b.first = Math.min(b.first, s.at);
      b.last = Math.max(b.last, at);
    }
  }
  const out: Record<string, { n: number; runMs: number; spanMs: number; waitMs: number }> = {};
  for (const [k, b] of Object.entries(byType)) out[k] = { n: b.n, runMs: b.runMs, spanMs: b.last - b.first, waitMs: b.waitMs };
  return { totalMs: events.length ? ms(events.at(-1)!.eventTime) - ms(events[0].eventTime) : 0, byType: out };
}

export function printBreakdown(label: string, b: ReturnType<typeof breakdown>): void {
  const parts = Object.entries(b.byType).map(([k, v]) => `${k} ×${v.n}: span ${secs(v.spanMs)} s, run ${secs(v.runMs)} s, queued ${secs(v.waitMs)} s`);
  console.log(`    ${label} in the history: ${secs(b.totalMs)} s; ${parts.join('; ')}`);
}

/**
 * From the first accepted update (the approval) to the end: each activity that ran then, in
 * order, with when it was scheduled, started and ended, in seconds after the approval (the
 * capture bench's picture of where the switch's time went).
 */
export function afterApproval(h: History): string {
  const ms = (t: unknown) => {
    const x = t as { seconds?: unknown; nanos?: number };
    return Number(x.seconds ?? 0) * 1000 + (x.nanos ?? 0) / 1e6;
  };
  const events = h.events ?? [];
  const approval = events.find((e) => e.workflowExecutionUpdateAcceptedEventAttributes);
  if (!approval) return 'no approval in the history';
  const t0 = ms(approval.eventTime);
  const acts = new Map<string, { type: string; at: number; startedAt?: number; endedAt?: number; how?: string }>();
  for (const e of events) {
    const at = ms(e.eventTime) - t0;
    const id = String(e.eventId);
    if (e.activityTaskScheduledEventAttributes) acts.set(id, { type: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', at });
    const st = e.activityTaskStartedEventAttributes;
    if (st) acts.get(String(st.scheduledEventId))!.startedAt = at;
    const end =
      e.activityTaskCompletedEventAttributes ??
      e.activityTaskFailedEventAttributes ??
      e.activityTaskCanceledEventAttributes ??
      e.activityTaskTimedOutEventAttributes;
    if (end) {
      const a = acts.get(String(end.scheduledEventId))!;
      a.endedAt = at;
      a.how = e.activityTaskCompletedEventAttributes ? '' : e.activityTaskCanceledEventAttributes ? ' cancelled' : ' failed';
    }
  }
  const s = (x?: number) => (x === undefined ? '?' : (x / 1000).toFixed(2));
  return [...acts.values()]
    .filter((a) => a.endedAt === undefined || a.endedAt >= 0)
    .map((a) => `${a.type} ${s(a.at)}/${s(a.startedAt)}–${s(a.endedAt)}${a.how ?? ''}`)
    .join('; ');
}

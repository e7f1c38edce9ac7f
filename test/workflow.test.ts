// The migration workflow on a real Temporal dev server, with in-memory activities (no databases):
// the gate and its refusals, rejection and rerun, a range that keeps failing, pause and resume,
// concurrency, abort. One server and one worker for the file; each test has its own migration.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { startDevServer } from '../src/infra/temporal';
import { workflowSource } from '../src/worker';
import { backfillMigration } from '../src/workflows/migration';
import {
  abortSignal,
  approveCutoverUpdate,
  pauseSignal,
  progressQuery,
  rejectCutoverUpdate,
  reportQuery,
  rerunUpdate,
  resumeSignal,
  setConcurrencySignal,
  type Progress,
} from '../src/workflows/messages';
import { type Phase } from '../src/domain/phases';
import type { MigrationSpecInput } from '../src/spec/schema';
import { FakeActivities, latch, type Scenario } from './helpers/fake-activities';
import { endingOf } from './helpers/temporal';

const TASK_QUEUE = 'workflow-mocked';
const fakes = new FakeActivities();
let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;

before(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  env = await startDevServer();
  worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: TASK_QUEUE,
    ...workflowSource(),
    activities: fakes.activities,
    sinks: fakes.sinks,
    shutdownGraceTime: '1 second',
  });
  running = worker.run();
});

after(async () => {
  worker?.shutdown();
  await running?.catch(() => undefined);
  await env?.teardown();
});

const TABLE = 'public.t';

function specOf(name: string, over: Partial<MigrationSpecInput> = {}): MigrationSpecInput {
  return {
    name,
    taskQueue: TASK_QUEUE,
    source: 'src',
    target: 'tgt',
    concurrency: 2,
    retries: { rangeAttempts: 2 },
    tables: [{ source: TABLE, target: 'public.t_new', key: ['id'], chunk: { column: 'id', size: 10 } }],
    cutover: { approval: 'required' },
    ...over,
  };
}

async function start(spec: MigrationSpecInput): Promise<WorkflowHandle<typeof backfillMigration>> {
  return env.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: spec.name, args: [spec] });
}

async function until<T>(what: string | (() => string), f: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e; // the first workflow task may not have run yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function phase(h: WorkflowHandle, p: Phase): Promise<Progress> {
  let last: Progress | undefined;
  return until(
    () => `phase ${p} (last: ${JSON.stringify(last)})`,
    async () => {
      last = await h.query(progressQuery);
      if (TERMINAL_OR_STUCK.includes(last.phase) && last.phase !== p) throw new Error(`went to ${last.phase} instead of ${p}: ${last.detail}`);
      return last.phase === p ? last : undefined;
    },
  );
}
const TERMINAL_OR_STUCK: Phase[] = ['completed', 'aborted', 'failed'];

/** The validator's reason, from an update that must be refused. */
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof WorkflowUpdateFailedError, `not a refused update: ${String(e)}`);
    return (e.cause as Error).message;
  }
  assert.fail('the update was accepted');
}

/** Sink calls are made by the worker after the activation: give them a moment. */
async function refusedCount(s: Scenario, n: number): Promise<void> {
  await until(`${n} refused entries (have ${s.refused.length})`, () => s.refused.length >= n || undefined, 5_000);
}

test('gate: a green report waits for approval of its digest; approving that digest switches once and completes with it', async () => {
  const s = fakes.scenario('gate-green', { ranges: 3 });
  const h = await start(specOf(s.name));
  const p = await phase(h, 'awaiting_approval');
  const report = await h.query(reportQuery);
  assert.equal(report.verdict, 'green');
  assert.equal(report.complete, true);
  assert.ok(report.digest, 'the report has no digest');
  assert.equal(p.digest, report.digest);
  assert.equal(p.digest, s.reports.at(-1), 'the digest presented is not the last report built');
  assert.deepEqual(p.tables[0].ranges, { total: 3, pending: 0, inFlight: 0, verified: 3, failed: 0 });
  assert.deepEqual(s.copyCounts(), [1, 1, 1]);
  assert.equal(s.switches.length, 0, 'switched before the approval');

  const accepted = await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: p.digest, comment: 'looks right' }] });
  assert.ok(accepted.approvedAt);
  const result = await h.result();
  assert.equal(result.phase, 'completed');
  assert.equal(result.verdict, 'green');
  assert.equal(result.digest, p.digest);
  assert.ok(result.switchedAt);
  assert.equal(s.switches.length, 1);
  assert.equal(s.switches[0].digest, p.digest);
  assert.equal(s.switches[0].approver, 'alice');
  assert.equal(s.sequences.length, 1, 'sequences were not advanced once before the switch');
  const approve = s.audit.filter((e) => e.action === 'approve');
  assert.equal(approve.length, 1);
  assert.equal(approve[0].actor, 'alice');
  assert.equal(approve[0].digest, p.digest);
  assert.deepEqual(approve[0].detail, { comment: 'looks right' });
  assert.equal(s.refused.length, 0);
  const final = await h.query(reportQuery);
  assert.equal(final.phase, 'completed');
  assert.deepEqual(
    final.approvals.map((a) => [a.approver, a.digest]),
    [['alice', p.digest]],
  );
});

test('refused approvals: before the gate, a stale digest, an approver not allowed, a second approval; each recorded, none switches', async () => {
  const s = fakes.scenario('gate-refusals', { ranges: 2 });
  s.holdCopies = latch();
  const h = await start(specOf(s.name, { cutover: { approval: 'required', approvers: ['alice', 'bob'] } }));
  await until('a range in flight', () => s.copies.length > 0 || undefined);
  const early = await refusal(h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: 'anything' }] }));
  assert.match(early, /cannot approve: the migration is in phase backfilling, not awaiting_approval/);
  assert.equal((await h.query(progressQuery)).phase, 'backfilling');
  s.holdCopies.release();

  const p = await phase(h, 'awaiting_approval');
  const digest = p.digest!;
  const staleDigest = digest.replace(/.$/, (c) => (c === '0' ? '1' : '0'));
  const stale = await refusal(h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest: staleDigest }] }));
  assert.match(stale, /is not the evidence presented now/);
  assert.ok(!stale.includes(digest), `the refusal hands out the digest to approve: ${stale}`);
  const stranger = await refusal(h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'mallory', digest }] }));
  assert.match(stranger, /"mallory" is not an allowed approver \(cutover.approvers: alice, bob\)/);
  const blank = await refusal(h.executeUpdate(approveCutoverUpdate, { args: [{ approver: '  ', digest }] }));
  assert.match(blank, /approveCutover needs \{ approver, digest \}/);
  assert.equal((await h.query(progressQuery)).phase, 'awaiting_approval', 'a refused approval moved the gate');

  // The first approval is taken; the switch waits behind its audit entry, so the gate still shows this evidence.
  const held = latch();
  s.holdAudit.set('approve', held);
  await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'bob', digest }] });
  const again = await refusal(h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'alice', digest }] }));
  assert.match(again, /this evidence is already approved/);
  assert.equal(s.switches.length, 0, 'switched before the approval was recorded');

  await refusedCount(s, 5);
  assert.deepEqual(
    s.refused.map((e) => [e.action, e.actor, e.reason]),
    [
      ['approve-refused', 'alice', early],
      ['approve-refused', 'alice', stale],
      ['approve-refused', 'mallory', stranger],
      ['approve-refused', '  ', blank],
      ['approve-refused', 'alice', again],
    ],
  );
  assert.ok(
    s.refused.every((e) => e.migration === s.name && e.control === 'tgt' && e.execution),
    JSON.stringify(s.refused),
  );
  assert.equal(s.refused[2].digest, digest);

  held.release();
  const result = await h.result();
  assert.equal(result.phase, 'completed');
  assert.equal(result.digest, digest);
  assert.equal(s.switches.length, 1);
  assert.equal(s.switches[0].approver, 'bob');
  assert.deepEqual(s.actions(), ['approve'], 'refused approvals went through the workflow audit activity');
  assert.equal(s.refused.length, 5);
});

test('rejectCutover sends the migration to needs_attention; rerun copies exactly the named ranges and returns to the gate with a new digest', async () => {
  const s = fakes.scenario('gate-reject-rerun', { ranges: 4 });
  const h = await start(specOf(s.name));
  const first = await phase(h, 'awaiting_approval');
  const rejected = await h.executeUpdate(rejectCutoverUpdate, { args: [{ approver: 'carol', reason: 'range 2 looks short' }] });
  assert.ok(rejected.rejectedAt);
  const na = await phase(h, 'needs_attention');
  assert.match(na.detail ?? '', /rejected by carol: range 2 looks short/);
  assert.equal(na.digest, undefined, 'a digest is presented outside the gate');
  await until('the reject audit entry', () => s.audit.some((e) => e.action === 'reject') || undefined);
  const reject = s.audit.find((e) => e.action === 'reject')!;
  assert.equal(reject.actor, 'carol');
  assert.equal(reject.digest, first.digest);
  assert.deepEqual(reject.detail, { reason: 'range 2 looks short' });

  // Approving after the rejection is refused: the gate is closed.
  assert.match(await refusal(h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'carol', digest: first.digest! }] })), /phase needs_attention/);
  assert.match(await refusal(h.executeUpdate(rerunUpdate, { args: [{ ranges: [9] }] })), /no range 9/);
  assert.match(await refusal(h.executeUpdate(rerunUpdate, { args: [{ table: 'public.nope', ranges: [1] }] })), /no table "public.nope"/);

  const before = s.copyCounts();
  assert.deepEqual(before, [1, 1, 1, 1]);
  const queued = await h.executeUpdate(rerunUpdate, { args: [{ table: TABLE, ranges: [2, 0, 2] }] });
  assert.equal(queued.ranges, 2, 'a range named twice was queued twice');
  const second = await phase(h, 'awaiting_approval');
  assert.deepEqual(s.copyCounts(), [2, 1, 2, 1], 'the rerun did not copy exactly ranges 0 and 2 once more');
  assert.ok(second.digest && second.digest !== first.digest, 'the evidence changed but the digest did not');
  assert.deepEqual(second.tables[0].ranges, { total: 4, pending: 0, inFlight: 0, verified: 4, failed: 0 });

  assert.match(
    await refusal(h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'carol', digest: first.digest! }] })),
    /is not the evidence presented now/,
  );
  await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'carol', digest: second.digest }] });
  const result = await h.result();
  assert.equal(result.phase, 'completed');
  assert.equal(result.digest, second.digest);
  assert.equal(s.switches.length, 1);
  assert.deepEqual(s.actions(), ['reject', 'approve']);
});

test('rows re-copied are counted apart from rows copied once; a run continued from one before they were counted starts them at 0', async () => {
  const s = fakes.scenario('recopied-carried', { ranges: 3 });
  const spec = specOf(s.name);
  // What a run before rowsRecopied handed to the next at continue-as-new: no such field.
  const carried = {
    plans: [{ source: TABLE, target: 'public.t_new', kind: 'size', lo: ['0'], hi: ['30'], size: '10', rangeCount: 3 }],
    tables: [{ next: 0, verified: 0, rowsCopied: 0, failed: [] }],
    startedAt: new Date().toISOString(),
    approvals: [],
    concurrency: 2,
    paused: false,
    rerunQueue: [],
    runs: 1,
  };
  const h = await env.client.workflow.start(backfillMigration, { taskQueue: TASK_QUEUE, workflowId: s.name, args: [spec, carried as never] });
  const gate = await phase(h, 'awaiting_approval');
  assert.deepEqual([gate.tables[0].rowsCopied, gate.tables[0].rowsRecopied], [30, 0]);
  await h.executeUpdate(rerunUpdate, { args: [{ ranges: [1] }] });
  await until('the rerun copied', () => (s.copyCounts()[1] === 2 ? true : undefined));
  const again = await phase(h, 'awaiting_approval');
  assert.deepEqual([again.tables[0].rowsCopied, again.tables[0].rowsRecopied], [40, 10], 'a rerun copies again');
  await h.signal(abortSignal, { reason: 'end of test' });
  await endingOf(h);
});

test('a range that mismatches on every attempt: rangeAttempts attempts, located once, failed, needs_attention; a rerun once it passes makes it green', async () => {
  const s = fakes.scenario('range-fails', { ranges: 3, broken: [1] });
  const h = await start(specOf(s.name, { retries: { rangeAttempts: 3 } }));
  const na = await phase(h, 'needs_attention');
  assert.deepEqual(
    s.copiesOf(1).map((c) => [c.attempt, c.final]),
    [
      [1, false],
      [2, false],
      [3, true],
    ],
    'attempts or the final flag',
  );
  assert.deepEqual(s.copyCounts(), [1, 3, 1]);
  assert.deepEqual(s.locates, [{ i: 1, attempt: 3, final: true }]);
  assert.deepEqual(na.tables[0].ranges, { total: 3, pending: 0, inFlight: 0, verified: 2, failed: 1 });
  assert.match(na.detail ?? '', /1 range\(s\) failed/);
  const red = await h.query(reportQuery);
  assert.equal(red.verdict, 'red');
  const r1 = red.tables[0].ranges.find((r) => r.index === 1)!;
  assert.equal(r1.status, 'failed');
  assert.equal(r1.attempts, 3);
  assert.equal(r1.missing, 1);
  assert.deepEqual(r1.keys.missing, [['15']]);
  assert.deepEqual(r1.failedChecks, ['count', 'checksum']);
  assert.equal(red.tables[0].ranges.filter((r) => r.status === 'failed').length, 1);
  assert.equal(s.switches.length, 0);

  s.broken.delete(1);
  await h.executeUpdate(rerunUpdate, { args: [{ table: TABLE, ranges: [1] }] });
  const gate = await phase(h, 'awaiting_approval');
  assert.deepEqual(s.copyCounts(), [1, 4, 1]);
  assert.deepEqual(s.copiesOf(1).at(-1), { i: 1, attempt: 1, final: false }, 'a rerun starts its attempts again');
  assert.equal(s.locates.length, 1, 'a range that passed was located');
  assert.deepEqual(gate.tables[0].ranges, { total: 3, pending: 0, inFlight: 0, verified: 3, failed: 0 });
  const green = await h.query(reportQuery);
  assert.equal(green.verdict, 'green');
  assert.equal(green.digest, gate.digest);
  assert.ok(green.tables[0].ranges.every((r) => r.status === 'verified'));

  await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'dan', digest: gate.digest! }] });
  assert.equal((await h.result()).phase, 'completed');
  assert.equal(s.switches.length, 1);
});

test('pause stops new ranges from starting, resume goes on to the gate; setConcurrency changes how many run at once', async () => {
  const s = fakes.scenario('pause-resume', { ranges: 8, delayMs: 250 });
  const h = await start(specOf(s.name, { concurrency: 1 }));
  await until('a range copied', () => s.copies.length >= 1 || undefined);
  await h.signal(pauseSignal);
  // The range in flight lands; nothing starts after it.
  const paused = await until('the window drained', async () => {
    const p = await h.query(progressQuery);
    return p.paused && p.tables[0].ranges.inFlight === 0 ? p : undefined;
  });
  const started = s.copies.length;
  assert.ok(started < 8, `all ${started} ranges started before the pause took`);
  assert.equal(paused.phase, 'backfilling');
  assert.equal(paused.concurrency, 1);
  assert.equal(s.maxInFlight, 1, 'more than one range at once with concurrency 1');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(s.copies.length, started, 'ranges started while paused');
  const still = await h.query(progressQuery);
  assert.equal(still.phase, 'backfilling');
  assert.equal(still.tables[0].ranges.verified, started);
  assert.equal(still.tables[0].ranges.pending, 8 - started);

  await h.signal(setConcurrencySignal, { value: 3 });
  await until('concurrency 3', async () => ((await h.query(progressQuery)).concurrency === 3 ? true : undefined));
  assert.equal(s.copies.length, started, 'setConcurrency resumed a paused migration');
  for (const bad of [0, 65, 2.5]) await h.signal(setConcurrencySignal, { value: bad });
  assert.equal((await h.query(progressQuery)).concurrency, 3, 'an out-of-bounds concurrency was taken');

  // The copies wait at a latch after the resume: the window fills to the new concurrency (and no
  // further) whatever the machine's speed, then lets them finish.
  s.maxInFlight = 0;
  const held = latch();
  s.holdCopies = held;
  await h.signal(resumeSignal);
  await until('three ranges in flight at once', () => (s.inFlight === 3 ? true : undefined));
  s.holdCopies = undefined;
  held.release();
  const gate = await phase(h, 'awaiting_approval');
  assert.equal(gate.paused, false);
  assert.deepEqual(s.copyCounts(), Array(8).fill(1));
  assert.ok(8 - started >= 3, 'too few ranges left to see the new concurrency');
  assert.equal(s.maxInFlight, 3, 'the new concurrency was not used');
  await h.signal(abortSignal, { reason: 'done with this test' });
  assert.equal((await endingOf(h)).phase, 'aborted');
});

test('abort in needs_attention ends the migration: result aborted, the abort in the audit, no switch', async () => {
  const s = fakes.scenario('abort-attention', { ranges: 2, broken: [0] });
  const h = await start(specOf(s.name, { retries: { rangeAttempts: 1 } }));
  await phase(h, 'needs_attention');
  assert.deepEqual(
    s.copiesOf(0).map((c) => [c.attempt, c.final]),
    [[1, true]],
  );
  await h.signal(abortSignal, { reason: 'the target is wrong' });
  const result = await endingOf(h);
  assert.equal(result.phase, 'aborted');
  assert.equal(result.verdict, 'red');
  assert.equal(result.reason, 'the target is wrong');
  const abort = s.audit.filter((e) => e.action === 'abort');
  assert.equal(abort.length, 1);
  assert.deepEqual(abort[0].detail, { reason: 'the target is wrong' });
  assert.equal(s.switches.length, 0);
  assert.equal((await h.query(progressQuery)).phase, 'aborted');
  assert.equal((await h.describe()).status.name, 'FAILED', 'an aborted migration is not shown as a green Completed');
});

test('approval auto: a green report switches without a person, once, recorded as approved by auto', async () => {
  const s = fakes.scenario('gate-auto', { ranges: 2 });
  const h = await start(specOf(s.name, { cutover: { approval: 'auto' } }));
  const result = await h.result();
  assert.equal(result.phase, 'completed');
  assert.equal(result.digest, s.reports.at(-1));
  assert.equal(s.switches.length, 1);
  assert.equal(s.switches[0].approver, 'auto');
  assert.deepEqual(
    s.audit.map((e) => [e.action, e.actor, e.digest]),
    [['approve', 'auto', result.digest]],
  );
});

// ---- races at the gate: one decision per presentation of the evidence ----

/** The update's outcome: 'accepted', or the validator's reason. */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (e) {
    return e instanceof WorkflowUpdateFailedError ? (e.cause as Error).message : String(e);
  }
}

test('an approval taken while a rejection is being recorded does not switch the rejected evidence, nor skip the rerun', async () => {
  const s = fakes.scenario('race-reject-then-approve', { ranges: 2 });
  const h = await start(specOf(s.name));
  const p = await phase(h, 'awaiting_approval');
  const held = latch();
  s.holdAudit.set('reject', held);
  await h.executeUpdate(rejectCutoverUpdate, { args: [{ approver: 'carol', reason: 'range 0 looks short' }] });
  const approve = await outcome(h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'dave', digest: p.digest! }] }));
  held.release();
  await phase(h, 'needs_attention');
  await h.executeUpdate(rerunUpdate, { args: [{ ranges: [0] }] });
  const next = await until('the gate or the end', async () => {
    const q = await h.query(progressQuery);
    return ['awaiting_approval', ...TERMINAL_OR_STUCK].includes(q.phase) ? q : undefined;
  });
  assert.match(approve, /this evidence has just been rejected/);
  assert.deepEqual(s.copyCounts(), [2, 1], `the rerun was not run (the approval was ${approve})`);
  assert.equal(s.switches.length, 0, `switched the rejected digest (the approval was ${approve})`);
  assert.equal(next.phase, 'awaiting_approval');
  await h.signal(abortSignal, { reason: 'end of test' });
  await endingOf(h);
});

test('a rejection or an abort accepted after the approval, before the switch, stops the switch', async () => {
  const s = fakes.scenario('race-approve-then-reject', { ranges: 2 });
  const h = await start(specOf(s.name));
  const p = await phase(h, 'awaiting_approval');
  const held = latch();
  s.holdAudit.set('approve', held);
  await h.executeUpdate(approveCutoverUpdate, { args: [{ approver: 'dave', digest: p.digest! }] });
  const reject = await outcome(h.executeUpdate(rejectCutoverUpdate, { args: [{ approver: 'carol', reason: 'wait' }] }));
  await h.signal(abortSignal, { reason: 'stop it' });
  held.release();
  const result = await endingOf(h);
  assert.match(reject, /this evidence is approved and the migration is going on to the switch; abort to stop it/);
  assert.equal(s.switches.length, 0, 'switched after an abort');
  assert.equal(result.phase, 'aborted', `an abort before the switch was ignored (the rejection was ${reject})`);
});

// ---- endings: an abort and Temporal's cancellation end alike, not as a green Completed ----

test('Temporal cancellation means abort: cleaned up and audited, phase aborted, Failed (Aborted), no stack trace', async () => {
  const s = fakes.scenario('cancelled', { ranges: 2, broken: [1] });
  const h = await start(specOf(s.name, { retries: { rangeAttempts: 1 } }));
  await phase(h, 'needs_attention');
  await h.cancel();
  const result = await endingOf(h);
  assert.equal(result.phase, 'aborted');
  assert.equal(result.reason, 'cancelled through Temporal');
  assert.deepEqual(
    s.audit.filter((e) => e.action === 'abort').map((e) => (e.detail as { reason: string }).reason),
    ['cancelled through Temporal'],
  );
  assert.equal((await h.query(progressQuery)).phase, 'aborted');
  const d = await h.describe();
  assert.equal(d.status.name, 'FAILED');
  assert.deepEqual(d.searchAttributes.BackfillPhase, ['aborted'], 'the UI lists it as aborted, not as waiting for a person');
  const last = (await h.fetchHistory()).events!.at(-1)!;
  const failure = last.workflowExecutionFailedEventAttributes!.failure!;
  assert.equal(failure.message, 'aborted: cancelled through Temporal');
  assert.equal(failure.stackTrace, '', 'no stack trace (worker source paths) in what the UI shows');
  assert.equal(failure.applicationFailureInfo?.type, 'Aborted');
  assert.equal(s.switches.length, 0);
});

test('the abort signal ends as Failed (Aborted) too, with its reason and no stack trace', async () => {
  const s = fakes.scenario('aborted-ending', { ranges: 2, broken: [0] });
  const h = await start(specOf(s.name, { retries: { rangeAttempts: 1 } }));
  await phase(h, 'needs_attention');
  await h.signal(abortSignal, { reason: 'wrong target' });
  assert.equal((await endingOf(h)).reason, 'wrong target');
  const failure = (await h.fetchHistory()).events!.at(-1)!.workflowExecutionFailedEventAttributes!.failure!;
  assert.equal(failure.message, 'aborted: wrong target');
  assert.equal(failure.stackTrace, '');
});

// ---- what the Temporal UI shows: current details, and a description on every message ----

test('the UI: current details say the phase, the progress, the digest awaiting approval and how to approve; every message is described', async () => {
  const s = fakes.scenario('ui-details', { ranges: 2, broken: [] });
  const h = await start(specOf(s.name, { cutover: { approval: 'required', approvers: ['alice', 'bob'] } }));
  const p = await phase(h, 'awaiting_approval');
  // The query the Temporal UI itself runs for "Current Details" and the message list.
  type Described = { name: string; description?: string }[];
  const meta = await h.query<{
    currentDetails?: string;
    definition?: { queryDefinitions?: Described; signalDefinitions?: Described; updateDefinitions?: Described };
  }>('__temporal_workflow_metadata');
  const details = meta.currentDetails ?? '';
  assert.match(details, /\*\*Phase:\*\* `awaiting_approval`/);
  assert.match(details, new RegExp(`Awaiting approval\\*\\* of digest \`${p.digest}\`; who may approve: alice, bob`));
  assert.match(details, /backfill approve ui-details --as <you>/);
  assert.match(details, /\| 2 \/ 2 \| 0 \| 0 \|/, 'the per-table progress');
  // Ours (the SDK lists its own built-in queries too, prefixed __).
  const described = (xs: Described | undefined) =>
    Object.fromEntries((xs ?? []).filter((x) => !x.name.startsWith('__')).map((x) => [x.name, Boolean(x.description)]));
  assert.deepEqual(described(meta.definition?.queryDefinitions), { progress: true, report: true });
  assert.deepEqual(described(meta.definition?.signalDefinitions), { pause: true, resume: true, abort: true, setConcurrency: true, auditRecorded: true });
  assert.deepEqual(described(meta.definition?.updateDefinitions), { approveCutover: true, rejectCutover: true, rerun: true, switchBack: true, finish: true });
  await h.signal(abortSignal, { reason: 'end of test' });
  await endingOf(h);
});

test('the UI: a range that is not proven is listed in the current details with its rerun command', async () => {
  const s = fakes.scenario('ui-red', { ranges: 2, broken: [1] });
  const h = await start(specOf(s.name, { retries: { rangeAttempts: 1 } }));
  await phase(h, 'needs_attention');
  const meta = await h.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
  assert.match(meta.currentDetails ?? '', /\*\*Ranges that are not proven\*\* \(1\):/);
  assert.match(meta.currentDetails ?? '', /range 1 .*rerun: `backfill rerun ui-red --table \S+ --range 1`/);
  await h.signal(abortSignal, { reason: 'end of test' });
  await endingOf(h);
});

test('the UI: every range activity names its table, its range by the index the report and rerun use, and its keys; the other steps say what they do', async () => {
  const s = fakes.scenario('ui-summaries', { ranges: 3 });
  const h = await start(specOf(s.name, { cutover: { approval: 'auto' } }));
  await h.result();
  const json = (p: { data?: Uint8Array | null } | null | undefined) => (p?.data ? (JSON.parse(Buffer.from(p.data).toString('utf8')) as unknown) : undefined);
  const scheduled = (await h.fetchHistory())
    .events!.filter((e) => e.activityTaskScheduledEventAttributes)
    .map((e) => {
      const a = e.activityTaskScheduledEventAttributes!;
      return {
        type: a.activityType!.name!,
        summary: (json(e.userMetadata?.summary) as string | undefined) ?? '(none)',
        input: json(a.input?.payloads?.[0]) as { rangeIndex?: number } | undefined,
      };
    });
  const summaries = scheduled.map((x) => x.summary);
  assert.ok(summaries.includes('copy public.t range 0 of 3 [0, 10)'), summaries.join('\n'));
  assert.ok(summaries.includes('copy public.t range 2 of 3 [20, 30)'), summaries.join('\n'));
  assert.ok(
    summaries.some((x) => x.startsWith('plan: check every table')),
    summaries.join('\n'),
  );
  assert.ok(
    summaries.some((x) => x.startsWith('reconcile public.t')),
    summaries.join('\n'),
  );
  assert.ok(
    summaries.some((x) => x.startsWith('switch authority (digest ')),
    summaries.join('\n'),
  );
  const copies = scheduled.filter((x) => x.type === 'copyRange');
  assert.equal(copies.length, 3);
  // The number a person reads on the bar is the range's index: the one `backfill rerun --range` takes.
  for (const c of copies) assert.equal(/^copy public\.t range (\d+) of 3 \[\d+, \d+\)$/.exec(c.summary)?.[1], String(c.input?.rangeIndex), JSON.stringify(c));
  assert.deepEqual(copies.map((c) => c.input?.rangeIndex).sort(), [0, 1, 2]);
});

test('every activity is scheduled with the heartbeat timeout of the spec (retries.heartbeat), 15 s without one', async () => {
  const timeouts = async (spec: MigrationSpecInput) => {
    const h = await start(spec);
    await h.result();
    const scheduled = (await h.fetchHistory()).events!.flatMap((e) => (e.activityTaskScheduledEventAttributes ? [e.activityTaskScheduledEventAttributes] : []));
    assert.ok(scheduled.length > 3, `activities were scheduled: ${scheduled.length}`);
    return new Set(scheduled.map((a) => Number(a.heartbeatTimeout?.seconds ?? 0) * 1000 + Math.round((a.heartbeatTimeout?.nanos ?? 0) / 1e6)));
  };
  fakes.scenario('heartbeat-given', { ranges: 3 });
  const given = await timeouts(specOf('heartbeat-given', { cutover: { approval: 'auto' }, retries: { rangeAttempts: 2, heartbeat: '1 minute 30 seconds' } }));
  assert.deepEqual([...given], [90_000]);
  fakes.scenario('heartbeat-default', { ranges: 3 });
  const byDefault = await timeouts(specOf('heartbeat-default', { cutover: { approval: 'auto' } }));
  assert.deepEqual([...byDefault], [15_000]);
});

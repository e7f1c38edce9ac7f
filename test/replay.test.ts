// Determinism guard: every recorded history in test/histories replays against the current workflow
// code. A change that would break running migrations fails here (then use patched()).
// Record new ones with: BACKFILL_RECORD_HISTORY=1 node --test dist/test/e2e.test.js
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { workflowSource } from '../src/worker';
import { ROOT } from './helpers/cli';

const dir = join(ROOT, 'test', 'histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
const load = (f: string) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as { workflowId: string; history: { events: Record<string, unknown>[] } };

test('replay: there are recorded histories to replay', () => {
  assert.ok(files.length > 0, `no histories in ${dir}`);
});

for (const f of files) {
  test(`replay: ${f}`, async () => {
    const { workflowId, history } = load(f);
    assert.ok(history.events.length > 10, 'a real history has events');
    await Worker.runReplayHistory({ ...workflowSource() }, historyFromJSON(history), workflowId);
  });
}

test('replay: a history that diverges from the code is caught', async () => {
  // Rename the first activity a real history scheduled: the code schedules another one, so the
  // replay must fail with a nondeterminism error. This proves the guard can fail.
  const { workflowId, history } = load(files[0]);
  const scheduled = history.events.find((e) => e.eventType === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED')!;
  (scheduled.activityTaskScheduledEventAttributes as { activityType: { name: string } }).activityType.name = 'somethingElse';
  await assert.rejects(Worker.runReplayHistory({ ...workflowSource() }, historyFromJSON(history), workflowId), /[Nn]ondeterminism/);
});

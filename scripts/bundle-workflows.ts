// Bundles the workflow code once at build time, so a worker starts in a second instead of
// running webpack at every start.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

async function main() {
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../src/workflows'),
    logger: { info() {}, warn() {}, error: console.error, debug() {}, trace() {}, log() {} },
  });
  writeFileSync(join(__dirname, '..', 'workflow-bundle.js'), code);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

// The workflow side: every module the workflow bundle may reach at runtime (src/workflows/index.ts
// and what it imports, types aside). It runs in Temporal's deterministic sandbox: eslint.config.mjs
// keeps Node built-ins and the activity side's packages out of it, and .dependency-cruiser.cjs keeps
// it from importing any other module of ours at runtime (`import type` is erased and allowed).
const WORKFLOW_SIDE = [
  'src/workflows/**/*.ts',
  'src/domain/**/*.ts',
  'src/**/*.workflow.ts',
  'src/metrics/catalog.ts',
  'src/report/render.ts',
  'src/spec/names.ts',
  'src/spec/schema.ts',
  'src/spec/reverse.ts',
];
// The same set as one regular expression over paths relative to the repository.
const WORKFLOW_SIDE_PATH = String.raw`^src/(workflows/|domain/|[^/]+/[^/]+\.workflow\.ts$|metrics/catalog\.ts$|report/render\.ts$|spec/(names|schema|reverse)\.ts$)`;
module.exports = { WORKFLOW_SIDE, WORKFLOW_SIDE_PATH };

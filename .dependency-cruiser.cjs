// dependency-cruiser (`npm run deps`, part of `npm test`): the rules of the module graph.
const { WORKFLOW_SIDE_PATH } = require('./workflow-side.cjs');

module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'An import cycle (type-only imports count too): cut it by moving the shared part down, often into src/domain/.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'domain-is-a-leaf',
      severity: 'error',
      comment: 'src/domain/ is pure and imports nothing of ours outside it.',
      from: { path: '^src/domain/' },
      to: { path: '^src/', pathNot: '^src/domain/' },
    },
    {
      name: 'workflow-side-stays-in-the-sandbox',
      severity: 'error',
      comment:
        'Workflow code (workflow-side.cjs) may import at runtime only other workflow-side modules; a type from the activity side is fine (`import type`).',
      from: { path: WORKFLOW_SIDE_PATH },
      to: { path: '^src/', pathNot: WORKFLOW_SIDE_PATH, dependencyTypesNot: ['type-only'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};

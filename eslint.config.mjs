// ESLint flat config: typescript-eslint's `recommended` set as the baseline, a few type-aware rules
// that catch real bugs (in the spirit of temporalio/samples-typescript's config), and the
// determinism boundary of the workflow code. `recommended-type-checked` is deliberately not used:
// on this code base it is mostly noise (unsafe-any on JSON and pg rows,
// restrict-template-expressions, ...), which buries the findings that matter.
import { builtinModules } from 'node:module';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';
import workflowSide from './workflow-side.cjs';

// Every Node built-in, bare and with the `node:` prefix (`fs`, `fs/promises`, `node:fs`, ...).
const nodeBuiltins = [...new Set(builtinModules.map((m) => m.replace(/^node:/, '')))];

export default defineConfig(
  { ignores: ['dist/', 'node_modules/', 'workflow-bundle.js', '**/workflow-bundle.js'] },
  { files: ['**/*.ts'], extends: [tseslint.configs.recommended] },
  {
    files: ['**/*.ts'],
    plugins: { '@typescript-eslint': tseslint.plugin },
    languageOptions: {
      parser: tseslint.parser,
      // Type information from tsconfig.json (it includes src/, scripts/ and test/).
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A promise nobody awaits loses its rejection (an unhandled rejection kills the process) and
      // its ordering; a deliberate fire-and-forget is written `void promise`. node:test's
      // test()/describe() return a promise that the runner itself tracks, so they are exempt.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite', 'before', 'after'] }],
        },
      ],
      // A promise where a boolean or a void callback is expected: `if (promise)` is always true,
      // and an async listener's rejection is unhandled.
      '@typescript-eslint/no-misused-promises': 'error',
      // `await` of something that is not a thenable is a sign of a wrong type or a missing call.
      '@typescript-eslint/await-thenable': 'error',
      // Dead code and half-finished edits; a deliberately unused name starts with `_`.
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
        },
      ],
      // A cast the compiler already agrees with hides nothing today but hides the next type
      // change (the cast keeps compiling when the type drifts); and `x!` on a non-nullable.
      '@typescript-eslint/no-unnecessary-type-assertion': 'error',
    },
  },
  {
    // The workflow bundle: everything src/workflows/index.ts reaches (workflow-side.cjs). It runs in
    // Temporal's deterministic sandbox: no Node built-ins, and no runtime value from the activity
    // side's packages (pg, ...). Types are erased, so `import type` is fine. Imports of our own
    // activity-side modules are refused by .dependency-cruiser.cjs.
    files: workflowSide.WORKFLOW_SIDE,
    rules: {
      // A plain Error thrown in workflow code fails the workflow *task*, which Temporal retries
      // forever; a migration fails with its reason only through an ApplicationFailure
      // (src/domain/failures.ts).
      'no-restricted-syntax': [
        'error',
        {
          selector: 'ThrowStatement > NewExpression[callee.name=/^(Error|TypeError|RangeError)$/]',
          message: 'Workflow code throws ApplicationFailure (src/domain/failures.ts), never a plain Error.',
        },
      ],
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            ...nodeBuiltins.map((name) => ({
              name,
              message: 'Node built-ins are not available in workflow code (Temporal sandbox).',
            })),
            ...['@temporalio/activity', '@temporalio/client', '@temporalio/worker', 'pg', 'pg-copy-streams'].map((name) => ({
              name,
              message: 'Not for workflow code: it belongs on the activity / client side.',
              allowTypeImports: true,
            })),
          ],
          patterns: [
            {
              // Bare names and subpaths (`fs/promises`) are in `paths` above; this catches every
              // `node:` import, including the prefix-only ones (`node:test`, `node:sqlite`).
              group: ['node:*'],
              message: 'Node built-ins are not available in workflow code (Temporal sandbox).',
            },
          ],
        },
      ],
    },
  },
);

// One lint setup for the workspace. Module boundaries (tools/lint-rules tests
// each one by linting a file that crosses it): apps depend on libs, never on
// each other; generated code depends on nothing of ours; libs/testing
// (type:testing) is for tests and tools, never production code; etcd3 is used
// only inside libs/mesh-schema (and the test harness that starts etcd), Redis
// clients only where they belong.
import js from '@eslint/js';
import nx from '@nx/eslint-plugin';
import tseslint from 'typescript-eslint';

/** Tests: files under a test/ directory, and *.test.ts beside the code. */
const TEST_FILES = ['**/test/**/*.ts', '**/*.test.ts'];

/** Every tag but these may not import etcd3: the store owns the etcd key layout, leases and readiness. */
const ETCD_OWNERS = new Set(['type:data-access', 'type:testing']);
const TYPES = ['type:app', 'type:tool', 'type:sdk', 'type:data-access', 'type:util', 'type:generated', 'type:testing'];

/** Which kinds of library each kind of project may use; tests (and tools) may also use libs/testing. */
function depConstraints({ tests }) {
  const testing = tests ? ['type:testing'] : [];
  return [
    { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:data-access', 'type:util', 'type:generated', 'type:sdk', ...testing] },
    { sourceTag: 'type:tool', onlyDependOnLibsWithTags: ['type:data-access', 'type:util', 'type:generated', 'type:sdk', 'type:testing'] },
    { sourceTag: 'type:sdk', onlyDependOnLibsWithTags: ['type:util', 'type:generated', ...testing] },
    { sourceTag: 'type:data-access', onlyDependOnLibsWithTags: ['type:util', 'type:generated', ...testing] },
    { sourceTag: 'type:util', onlyDependOnLibsWithTags: ['type:util', 'type:generated', ...testing] },
    { sourceTag: 'type:testing', onlyDependOnLibsWithTags: ['type:util', 'type:generated'] },
    { sourceTag: 'type:generated', onlyDependOnLibsWithTags: [] },
    { sourceTag: 'scope:registry', onlyDependOnLibsWithTags: ['scope:registry', 'scope:shared'] },
    { sourceTag: 'scope:xds', onlyDependOnLibsWithTags: ['scope:xds', 'scope:shared'] },
    { sourceTag: 'scope:authz', onlyDependOnLibsWithTags: ['scope:authz', 'scope:shared'] },
    { sourceTag: 'scope:registry', bannedExternalImports: ['ioredis', '@grpc/grpc-js-xds'] },
    { sourceTag: 'scope:xds', bannedExternalImports: ['ioredis', 'express-session'] },
    { sourceTag: 'type:generated', bannedExternalImports: ['ioredis', 'express'] },
    // The CLI and agent reach the mesh through the registry and control plane APIs only.
    { sourceTag: 'scope:cli', onlyDependOnLibsWithTags: ['scope:shared'] },
    { sourceTag: 'scope:cli', bannedExternalImports: ['etcd3', 'ioredis', 'express-session'] },
    ...TYPES.filter((tag) => !ETCD_OWNERS.has(tag)).map((sourceTag) => ({ sourceTag, bannedExternalImports: ['etcd3'] })),
  ];
}

/** An exact import path for the rule's `allow` list (which it reads as a regular expression). */
const exactly = (path) => `^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;

/**
 * Tools that run an app in-process (benchmarks, the deploy checks) import these
 * app modules and nothing else of the apps; each is listed so the crossing is
 * visible here and in review.
 */
const APP_ENTRY_POINTS_FOR_TOOLS = [
  'apps/control-plane/src/control-plane',
  'apps/control-plane/src/config',
  'apps/control-plane/src/bootstrap',
  // xds-change-path: the change path's own modules (model, translation, cache, sessions, metrics), without etcd or gRPC.
  'apps/control-plane/src/envoy',
  'apps/control-plane/src/metrics',
  'apps/control-plane/src/model',
  'apps/control-plane/src/resource',
  'apps/control-plane/src/xds',
  // xds-change-path --rehearse: the control plane's start-up rehearsal, as it runs it.
  'apps/control-plane/src/change-rehearsal',
  'apps/registry/src/config',
  'apps/registry/src/registry',
  'apps/authz/src/authz',
  'apps/authz/src/config',
  'apps/authz/src/grpc/grpc-server',
  // authz-check --floor-streams-by-id: the floors keep streams, and count them for the idle limit, as authz's gRPC server does.
  'apps/authz/src/grpc/session-streams',
  'apps/authz/src/grpc/idle-limit',
  'apps/authz/src/keys/load-signing-keys',
  'apps/authz/test/support/harness',
  'apps/cli/src/program',
].map((path) => exactly(`../../../${path}`));

const boundaries = (options) => ({ '@nx/enforce-module-boundaries': ['error', { enforceBuildableLibDependency: false, ...options }] });

export default tseslint.config(
  {
    ignores: [
      '**/dist/**',
      '**/node_modules/**',
      'libs/envoy-types/src/generated/**',
      'apps/cli/src/generated/**',
      '**/coverage/**',
      '.nx/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    plugins: { '@nx': nx },
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'separate-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // A module path computed at run time hides a dependency from the boundary rule.
      'no-restricted-syntax': [
        'error',
        {
          selector: "CallExpression[callee.name='require'][arguments.0.type!='Literal']",
          message: 'require() with a computed path hides a dependency from lint: import the module statically',
        },
      ],
      ...boundaries({ allow: [], depConstraints: depConstraints({ tests: false }) }),
    },
  },
  { files: TEST_FILES, rules: boundaries({ allow: [], depConstraints: depConstraints({ tests: true }) }) },
  {
    files: ['tools/bench/src/**/*.ts', 'tools/deploy-tests/src/**/*.ts'],
    rules: boundaries({ allow: APP_ENTRY_POINTS_FOR_TOOLS, depConstraints: depConstraints({ tests: true }) }),
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: {
      globals: { require: 'readonly', module: 'writable', __dirname: 'readonly', process: 'readonly', console: 'readonly' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);

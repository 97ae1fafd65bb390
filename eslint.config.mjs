// One lint setup for the workspace. Module boundaries: apps depend on libs,
// never on each other; generated code depends on nothing of ours; etcd and
// Redis clients live only where they belong.
import js from '@eslint/js';
import nx from '@nx/eslint-plugin';
import tseslint from 'typescript-eslint';

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
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: false,
          allow: [],
          depConstraints: [
            { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:data-access', 'type:util', 'type:generated', 'type:sdk'] },
            { sourceTag: 'type:tool', onlyDependOnLibsWithTags: ['type:data-access', 'type:util', 'type:generated', 'type:sdk'] },
            { sourceTag: 'type:sdk', onlyDependOnLibsWithTags: ['type:util', 'type:generated'] },
            { sourceTag: 'type:data-access', onlyDependOnLibsWithTags: ['type:util', 'type:generated'] },
            { sourceTag: 'type:util', onlyDependOnLibsWithTags: ['type:util', 'type:generated', 'type:data-access'] },
            { sourceTag: 'type:generated', onlyDependOnLibsWithTags: [] },
            { sourceTag: 'scope:registry', onlyDependOnLibsWithTags: ['scope:registry', 'scope:shared'] },
            { sourceTag: 'scope:xds', onlyDependOnLibsWithTags: ['scope:xds', 'scope:shared'] },
            { sourceTag: 'scope:authz', onlyDependOnLibsWithTags: ['scope:authz', 'scope:shared'] },
            { sourceTag: 'scope:registry', bannedExternalImports: ['ioredis', '@grpc/grpc-js-xds'] },
            { sourceTag: 'scope:xds', bannedExternalImports: ['ioredis', 'express-session'] },
            { sourceTag: 'type:generated', bannedExternalImports: ['etcd3', 'ioredis', 'express'] },
            // The CLI and agent reach the mesh through the registry and control plane APIs only.
            { sourceTag: 'scope:cli', onlyDependOnLibsWithTags: ['scope:shared'] },
            { sourceTag: 'scope:cli', bannedExternalImports: ['etcd3', 'ioredis', 'express-session'] },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: {
      globals: { require: 'readonly', module: 'writable', __dirname: 'readonly', process: 'readonly', console: 'readonly' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);

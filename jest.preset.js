// Shared jest settings: TypeScript through SWC (fast, no type checking; the
// `typecheck` target does that), @trellis/* resolved like tsconfig.base.json.
const path = require('node:path');

const root = __dirname;

module.exports = function preset(projectDir, displayName) {
  return {
    displayName,
    rootDir: projectDir,
    testEnvironment: 'node',
    testMatch: ['<rootDir>/src/**/*.test.ts', '<rootDir>/test/**/*.test.ts'],
    transform: {
      '^.+\\.(t|j|mj)s$': [
        '@swc/jest',
        {
          jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
          module: { type: 'commonjs' },
          sourceMaps: 'inline',
        },
      ],
    },
    // jose 6 ships ESM only; let SWC turn it into CommonJS for jest's runtime.
    transformIgnorePatterns: ['/node_modules/(?!jose/)'],
    moduleNameMapper: {
      '^@trellis/envoy-types$': path.join(root, 'libs/envoy-types/src/index.ts'),
      '^@trellis/envoy-types/validation$': path.join(root, 'libs/envoy-types/src/validation/index.ts'),
      '^@trellis/envoy-types/(.*)$': path.join(root, 'libs/envoy-types/src/generated/$1'),
      '^@trellis/mesh-schema$': path.join(root, 'libs/mesh-schema/src/index.ts'),
      '^@trellis/mesh-schema/testing$': path.join(root, 'libs/mesh-schema/src/testing/index.ts'),
      '^@trellis/pki$': path.join(root, 'libs/pki/src/index.ts'),
      '^@trellis/mesh-contracts$': path.join(root, 'libs/mesh-contracts/src/index.ts'),
      '^@trellis/runtime$': path.join(root, 'libs/runtime/src/index.ts'),
      '^@trellis/runtime/grpc$': path.join(root, 'libs/runtime/src/grpc/index.ts'),
      '^@trellis/runtime/tls$': path.join(root, 'libs/runtime/src/tls.ts'),
      '^@trellis/sdk-node$': path.join(root, 'libs/sdk-node/src/index.ts'),
      '^@trellis/testing$': path.join(root, 'libs/testing/src/index.ts'),
    },
    // A TLS client that sends an IP address as its server name fails its test file (DEP0123).
    setupFilesAfterEnv: [path.join(root, 'tools/test/no-ip-tls-server-name.js')],
    // Generous: on a loaded machine a correct test is slow, not failing; each wait inside has its own deadline.
    testTimeout: 120_000,
  };
};

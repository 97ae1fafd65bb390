#!/usr/bin/env node
// `npm test`: generate the Envoy types and registry client, type-check, lint and format-check every project, then run
// every jest suite (unit, integration against real etcd/Redis/gRPC, browser, e2e) in
// one jest run. Ends with the totals line CI reads: `N passed, N failed`, where the
// static checks count one each next to the jest tests.
import { spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const env = {
  ...process.env,
  NX_DAEMON: 'false',
  NX_NO_CLOUD: 'true',
  NX_TUI: 'false',
  FORCE_COLOR: process.env.CI ? '0' : process.env.FORCE_COLOR,
};
const bin = (name) => resolve(root, 'node_modules/.bin', name);

function run(label, cmd, args) {
  const started = Date.now();
  console.log(`\n▶ ${label}`);
  const result = spawnSync(cmd, args, { cwd: root, env, stdio: 'inherit' });
  console.log(`◀ ${label}: ${result.status === 0 ? 'ok' : 'FAILED'} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  return result.status === 0;
}

/** What prettier keeps formatted (see .prettierrc.json; .prettierignore leaves out generated code). */
const FORMATTED = ['apps/**/*.{ts,js}', 'libs/**/*.{ts,js}', 'tools/**/*.{ts,mjs,js}', '*.{js,mjs,json}'];

let staticPassed = 0;
let staticFailed = 0;
const count = (ok) => (ok ? staticPassed++ : staticFailed++);

// Generated code first: the Envoy types and the CLI's registry client (from the registry's OpenAPI document).
if (!run('generate Envoy types and the registry client', bin('nx'), ['run-many', '-t', 'generate', '--output-style=stream'])) {
  console.log('\n0 passed, 1 failed');
  process.exit(1);
}
count(run('typecheck', bin('tsc'), ['-p', 'tsconfig.check.json']));
count(run('typecheck (cli)', bin('tsc'), ['-p', 'apps/cli/tsconfig.json']));
count(run('lint', bin('nx'), ['run-many', '-t', 'lint', '--output-style=stream', '--parallel=2']));
count(run('format (prettier --check)', bin('prettier'), ['--check', '--log-level=warn', ...FORMATTED]));

// The jest totals reporter writes its line to this file as well, so the summary can add both.
const totalsFile = resolve(root, 'tmp/jest-totals.json');
const jestArgs = ['--ci', `--maxWorkers=${process.env.TRELLIS_TEST_WORKERS ?? 2}`, ...process.argv.slice(2)];
const jestOk = run('jest (every suite)', bin('jest'), jestArgs);

let jest = { passed: 0, failed: jestOk ? 0 : 1, skipped: 0 };
try {
  const { readFileSync } = await import('node:fs');
  jest = JSON.parse(readFileSync(totalsFile, 'utf8'));
} catch {
  // No totals: jest died before reporting; the failure above already counts.
}
const passed = jest.passed + staticPassed;
const failed = jest.failed + staticFailed + (jestOk || jest.failed > 0 ? 0 : 1);
console.log(`\n${passed} passed, ${failed} failed${jest.skipped ? `, ${jest.skipped} skipped` : ''}`);
process.exit(failed === 0 && jestOk ? 0 : 1);

// The Check worker's script for tests that start authz in-process: jest runs authz from
// TypeScript, and a worker thread runs plain JavaScript, so authz is bundled once per
// test process the way `nx build authz` does, into dist/ (where node_modules resolve).
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const WORKSPACE_ROOT = resolve(__dirname, '../../../..');
let built: Promise<string> | undefined;

/** check.worker.js of the code under test, built on first use. */
export function checkWorkerScript(): Promise<string> {
  built ??= (async () => {
    const outDir = join(WORKSPACE_ROOT, 'tmp/test-bundles', `authz-worker-${process.pid}`);
    await promisify(execFile)(process.execPath, [join(WORKSPACE_ROOT, 'tools/build/bundle.mjs'), 'authz', outDir], { cwd: WORKSPACE_ROOT });
    return join(outDir, 'check.worker.js');
  })();
  return built;
}

// The local-mesh suites' jest globalSetup: builds the apps (dist/apps/<app>) and the local-mesh
// tool (dist/tools/local-mesh) once, before any suite of this project starts. The suites only
// start processes from these files and never build: a suite that rebuilt them while another
// suite's processes started from them made those starts read a half-written file (a
// package.json ending mid-JSON, an empty main.js) when suites ran at once under `npm test`.
// Self-contained (no @trellis/* imports): jest loads this module without the moduleNameMapper.
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const WORKSPACE_ROOT = resolve(__dirname, '../../..');

/** What the local-mesh suites start: the apps built by tools/build/bundle.mjs, run as on a VM. */
export const BUILT_APPS = ['registry', 'control-plane', 'authz', 'cli'] as const;

/** Where tools/local-mesh/bundle.mjs puts the local-mesh tool, its demo service and the suites' fixtures. */
export const LOCAL_MESH_BUNDLES = join(WORKSPACE_ROOT, 'dist/tools/local-mesh');

export default async function buildOnce(): Promise<void> {
  const run = (script: string, ...args: string[]) =>
    promisify(execFile)(process.execPath, [join(WORKSPACE_ROOT, script), ...args], { cwd: WORKSPACE_ROOT }).catch((err: unknown) => {
      const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
      throw new Error(`${script} ${args.join(' ')} failed (local-mesh suites' build):\n${stdout}${stderr}`, { cause: err });
    });
  // Each writes only its own output folder, so they can run at once.
  await Promise.all([...BUILT_APPS.map((app) => run('tools/build/bundle.mjs', app)), run('tools/local-mesh/bundle.mjs')]);
}

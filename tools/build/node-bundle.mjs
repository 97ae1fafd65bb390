// The one set of esbuild settings for everything Trellis runs with `node`: the apps
// (tools/build/bundle.mjs) and the local-mesh tool. npm packages stay external
// (several load .proto files or workers at run time); workspace libs are bundled.
import { build } from 'esbuild';
import { readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFilesAtomically } from './atomic-write.mjs';

export const WORKSPACE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** esbuild options for a Node 20 CommonJS bundle; `extra` names the entry points and output. */
export function nodeBundleOptions(extra) {
  return {
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    sourcemap: true,
    packages: 'external',
    tsconfig: join(WORKSPACE_ROOT, 'tsconfig.base.json'),
    logLevel: 'warning',
    ...extra,
  };
}

/**
 * Builds with `nodeBundleOptions(extra)` and writes the outputs atomically (atomic-write.mjs): esbuild
 * itself rewrites a file in place, so a process starting from it meanwhile could load half a bundle.
 * Returns esbuild's result (its metafile when asked for).
 */
export async function buildNodeBundle(extra) {
  const result = await build({ ...nodeBundleOptions(extra), write: false });
  writeFilesAtomically(result.outputFiles);
  return result;
}

/**
 * The worker-thread scripts of an app (`apps/<app>/src/<name>.worker.ts`) by output name (`<name>.worker`):
 * bundled beside whatever starts them, which finds them next to its own file.
 */
export function appWorkerEntryPoints(app) {
  const srcDir = join(WORKSPACE_ROOT, 'apps', app, 'src');
  const entries = {};
  for (const file of readdirSync(srcDir)) if (file.endsWith('.worker.ts')) entries[file.slice(0, -'.ts'.length)] = join(srcDir, file);
  return entries;
}

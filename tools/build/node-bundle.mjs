// The one set of esbuild settings for everything Trellis runs with `node`: the apps
// (tools/build/bundle.mjs) and the local-mesh tool. npm packages stay external
// (several load .proto files or workers at run time); workspace libs are bundled.
import { build } from 'esbuild';
import { readdirSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
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
    plugins: [sideEffectFreeLibs, ...(extra.plugins ?? [])],
  };
}

// The hand-written workspace libs run nothing at import time that their own exports do not need
// (pki's x509.ts wires @peculiar/x509 for the modules that import it from there), so a module of
// theirs whose exports a bundle does not use may be left out with its imports, as package.json's
// `sideEffects: false` lets esbuild do for npm packages. Without this a barrel import (`@trellis/pki`
// for identityOfPeerCertificate) loads what the barrel's other modules require: authz's Check worker
// loaded @peculiar/x509 and reflect-metadata that way. envoy-types is not one of them: its generated
// files register their message types at import time (the control plane's config dump reads that registry).
const SIDE_EFFECT_FREE_LIB_DIRS = ['runtime', 'pki', 'mesh-contracts', 'mesh-schema'].map(
  (lib) => join(WORKSPACE_ROOT, 'libs', lib, 'src') + sep,
);
const inSideEffectFreeLib = (path) => SIDE_EFFECT_FREE_LIB_DIRS.some((dir) => path.startsWith(dir));

const sideEffectFreeLibs = {
  name: 'side-effect-free-libs',
  setup(build) {
    build.onResolve({ filter: /^(@trellis\/|\.)/ }, async (args) => {
      if (args.pluginData === sideEffectFreeLibs) return undefined; // our own build.resolve below
      const resolved = await build.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: sideEffectFreeLibs,
      });
      return resolved.errors.length === 0 && inSideEffectFreeLib(resolved.path) ? { ...resolved, sideEffects: false } : resolved;
    });
  },
};

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

// The one set of esbuild settings for everything Trellis runs with `node`: the apps
// (tools/build/bundle.mjs) and the local-mesh tool. npm packages stay external
// (several load .proto files or workers at run time); workspace libs are bundled.
import { build } from 'esbuild';
import { readdirSync, readFileSync } from 'node:fs';
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
    plugins: [sideEffectFreeModules, ...(extra.plugins ?? [])],
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

/** `zod/v4` -> `zod`, `@bufbuild/protobuf/wire` -> `@bufbuild/protobuf`. */
const packageNameOf = (specifier) =>
  specifier
    .split('/')
    .slice(0, specifier.startsWith('@') ? 2 : 1)
    .join('/');

const sideEffectsDeclared = new Map();
/** Whether the workspace's copy of an npm package says `"sideEffects": false` in its package.json. */
function declaresNoSideEffects(name) {
  if (!sideEffectsDeclared.has(name)) {
    let declared = false;
    try {
      declared = JSON.parse(readFileSync(join(WORKSPACE_ROOT, 'node_modules', name, 'package.json'), 'utf8')).sideEffects === false;
    } catch {
      // Not installed where we look (a builtin without node:, a nested copy): esbuild's default, side effects assumed.
    }
    sideEffectsDeclared.set(name, declared);
  }
  return sideEffectsDeclared.get(name);
}

const sideEffectFreeModules = {
  name: 'side-effect-free-modules',
  setup(build) {
    // npm packages stay external (packages: 'external'), so esbuild never reads their package.json:
    // one that declares `"sideEffects": false` (jose) is marked so here, and an import of it that the
    // bundle does not use is left out (the Check worker kept jose for constants of modules that import it).
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('node:') || args.path.startsWith('@trellis/')) return undefined;
      return declaresNoSideEffects(packageNameOf(args.path)) ? { path: args.path, external: true, sideEffects: false } : undefined;
    });
    build.onResolve({ filter: /^(@trellis\/|\.)/ }, async (args) => {
      if (args.pluginData === sideEffectFreeModules) return undefined; // our own build.resolve below
      const resolved = await build.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: sideEffectFreeModules,
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

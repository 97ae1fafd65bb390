#!/usr/bin/env node
// `nx build <app>`: bundles apps/<app>/src/main.ts and the workspace libs it uses
// into dist/apps/<app>/main.js, started with `node dist/apps/<app>/main.js`; each
// src/<name>.worker.ts beside it (a worker thread's script) into <name>.worker.js.
// npm packages stay external; a package.json listing exactly the ones the bundle
// imports is written beside it, so an image installs only those
// (`npm install --omit=dev` in dist/apps/<app>).
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomically } from './atomic-write.mjs';
import { appWorkerEntryPoints, buildNodeBundle, WORKSPACE_ROOT as root } from './node-bundle.mjs';
import { pruneLockfile } from './prune-lockfile.mjs';

const [app, outArg] = process.argv.slice(2);
if (!app) {
  console.error('usage: bundle.mjs <app> [out-dir]   (default out-dir: dist/apps/<app>)');
  process.exit(2);
}
const outDir = outArg ? resolve(outArg) : join(root, 'dist/apps', app);
const rootPackage = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const entryPoints = { main: join(root, 'apps', app, 'src/main.ts'), ...appWorkerEntryPoints(app) };
const result = await buildNodeBundle({ entryPoints, outdir: outDir, metafile: true });

// What the emitted bundle requires (after tree-shaking), not every import of every input.
const used = new Set();
for (const output of Object.values(result.metafile.outputs)) {
  for (const imp of output.imports) {
    if (!imp.external || imp.path.startsWith('node:')) continue;
    const parts = imp.path.split('/');
    used.add(imp.path.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]);
  }
}
const dependencies = {};
for (const name of [...used].sort()) {
  const version = rootPackage.dependencies?.[name];
  if (version) dependencies[name] = version;
  else if (!rootPackage.devDependencies?.[name] && !isBuiltin(name))
    throw new Error(`${app} imports ${name}, which package.json does not list`);
}
const bundlePackage = { name: `@trellis/${app}`, version: rootPackage.version, private: true, main: 'main.js', dependencies };
writeFileAtomically(join(outDir, 'package.json'), JSON.stringify(bundlePackage, null, 2) + '\n');
// The image installs with `npm ci` from this: the workspace's pins, only what the bundle needs.
const rootLock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
writeFileAtomically(join(outDir, 'package-lock.json'), JSON.stringify(pruneLockfile(rootLock, bundlePackage), null, 2) + '\n');
console.log(`built ${join(outDir, 'main.js')} (${Object.keys(dependencies).length} runtime dependencies)`);

function isBuiltin(name) {
  return [
    'fs',
    'path',
    'os',
    'http',
    'https',
    'http2',
    'net',
    'tls',
    'crypto',
    'events',
    'stream',
    'url',
    'util',
    'zlib',
    'child_process',
    'dns',
    'assert',
    'buffer',
    'timers',
    'worker_threads',
    'perf_hooks',
    'readline',
    'querystring',
    'string_decoder',
    'async_hooks',
    'v8',
    'vm',
    'module',
    'process',
    'diagnostics_channel',
    'tty',
    'cluster',
    'dgram',
  ].includes(name.split('/')[0]);
}

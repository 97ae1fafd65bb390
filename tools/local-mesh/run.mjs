#!/usr/bin/env node
// `npm start`: build the three apps and the trellis CLI (nx, cached) and the local-mesh tool, then run it.
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleLocalMesh } from './bundle.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const env = { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_TUI: 'false' };
const built = spawnSync(
  join(root, 'node_modules/.bin/nx'),
  ['run-many', '-t', 'build', '-p', 'registry', 'control-plane', 'authz', 'cli', '--output-style=stream'],
  {
    cwd: root,
    env,
    stdio: 'inherit',
  },
);
if (built.status !== 0) process.exit(built.status ?? 1);
const outDir = await bundleLocalMesh();
const mesh = spawn(process.execPath, ['--enable-source-maps', join(outDir, 'main.js')], { cwd: root, env, stdio: 'inherit' });
// A signal to this process alone (a supervisor's SIGTERM) reaches the mesh too, which stops
// everything it started; a second copy (Ctrl-C signals the whole group) is ignored there.
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => mesh.kill(signal));
mesh.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

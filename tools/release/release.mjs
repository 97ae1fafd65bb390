#!/usr/bin/env node
// Builds one Trellis release: every artefact carries the version in package.json.
//
//   node tools/release/release.mjs [--out dist/release] [--image-prefix trellis/] [--no-images]
//
// It refuses to start unless every versioned place agrees (tools/release/versions.mjs) and
// CHANGELOG.md has a section for the version. Then, into <out>/<version>/:
//   - the apps bundled (registry, control-plane, authz, cli), each with its package.json and
//     pruned lockfile: the images' build contexts;
//   - trellis-<version>.tgz and trellis-sidecar-<version>.tgz: the Helm charts (helm package);
//   - trellis-cli-<version>.tgz: the CLI bundle (`node cli/main.js`);
//   - the images <prefix>{registry,control-plane,authz,cli}:<version> (docker build;
//     --no-images skips them where there is no Docker engine);
//   - SHA256SUMS of the files.
// Publishing (docker push, helm push, a Git tag) stays a deliberate step for a person.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureHelm } from '../setup/ensure-helm.mjs';
import { assertSemver, changelogSection, versionMismatches } from './versions.mjs';

const root = resolve(import.meta.dirname, '../..');
const { values } = parseArgs({
  options: {
    out: { type: 'string', default: join(root, 'dist/release') },
    'image-prefix': { type: 'string', default: 'trellis/' },
    'no-images': { type: 'boolean', default: false },
  },
});
const APPS = ['registry', 'control-plane', 'authz'];

function step(what, run) {
  process.stdout.write(`release: ${what}\n`);
  return run();
}

function main() {
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
  assertSemver(version);
  const mismatches = versionMismatches(root, version);
  if (mismatches.length)
    throw new Error(
      `versions disagree with package.json's ${version}:\n  ${mismatches.join('\n  ')}\nrun tools/release/set-version.mjs ${version}`,
    );
  if (!changelogSection(root, version)) throw new Error(`CHANGELOG.md has no "## [${version}]" section with its changes`);
  const docker = !values['no-images'] && spawnSync('docker', ['version'], { stdio: 'ignore' }).status === 0;
  if (!values['no-images'] && !docker)
    throw new Error('no Docker engine answers `docker version`: start one, or pass --no-images to build the rest');

  const out = resolve(values.out, version);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });

  // Each app into <out>/build/<app>/dist/apps/<app>: the same paths its Dockerfile copies.
  const context = (app) => join(out, 'build', app);
  for (const app of [...APPS, 'cli'])
    step(`bundle ${app}`, () =>
      execFileSync(process.execPath, [join(root, 'tools/build/bundle.mjs'), app, join(context(app), 'dist/apps', app)], {
        cwd: root,
        stdio: 'pipe',
      }),
    );
  step('pack the CLI', () =>
    execFileSync('tar', ['-czf', join(out, `trellis-cli-${version}.tgz`), '-C', join(context('cli'), 'dist/apps'), 'cli']),
  );

  const helm = process.env.TRELLIS_HELM || ensureHelm();
  for (const chart of ['deploy/helm/trellis', 'deploy/helm/trellis-sidecar'])
    step(`helm package ${chart}`, () =>
      execFileSync(helm, ['package', join(root, chart), '--destination', out, '--version', version, '--app-version', version], {
        stdio: 'pipe',
      }),
    );

  if (docker) {
    for (const app of [...APPS, 'cli'])
      step(`docker build ${app}`, () =>
        execFileSync(
          'docker',
          ['build', '-f', join(root, 'apps', app, 'Dockerfile'), '-t', `${values['image-prefix']}${app}:${version}`, context(app)],
          {
            stdio: 'inherit',
          },
        ),
      );
  } else process.stdout.write('release: images skipped (--no-images)\n');

  const files = readdirSync(out).filter((f) => statSync(join(out, f)).isFile());
  const sums = files.sort().map(
    (f) =>
      `${createHash('sha256')
        .update(readFileSync(join(out, f)))
        .digest('hex')}  ${f}`,
  );
  writeFileSync(join(out, 'SHA256SUMS'), `${sums.join('\n')}\n`);
  process.stdout.write(`release: ${version} in ${out}\n${sums.map((s) => `  ${s}`).join('\n')}\n`);
}

try {
  main();
} catch (error) {
  process.stderr.write(`release: ${error.message}\n`);
  process.exit(1);
}

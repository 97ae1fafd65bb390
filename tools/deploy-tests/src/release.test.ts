// Releases: one version for the images, the charts and the CLI, and a release script that
// builds them all with it (tools/release). Images need a Docker engine; the rest runs here.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { findHelm } from './helm-charts';
import { WORKSPACE_ROOT, readWorkspaceFile } from './workspace';

const VERSION = (JSON.parse(readWorkspaceFile('package.json')) as { version: string }).version;
const VERSIONS_MODULE = join(WORKSPACE_ROOT, 'tools/release/versions.mjs');

/** Calls an export of tools/release/versions.mjs in a child node (it is an ES module). */
function versions<T>(call: string): T {
  const script = `import * as v from ${JSON.stringify(VERSIONS_MODULE)}; console.log(JSON.stringify(${call}))`;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as T;
}

/** A scratch copy of every versioned file (and the CHANGELOG), to change freely. */
function scratchCheckout(): string {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-versions-'));
  const files = versions<Array<{ file: string }>>('v.VERSIONED');
  for (const file of [...new Set(files.map((f) => f.file)), 'CHANGELOG.md']) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    cpSync(join(WORKSPACE_ROOT, file), join(dir, file));
  }
  return dir;
}

describe('one version for images, charts and CLI', () => {
  it("every versioned place agrees with package.json's version, and the CHANGELOG has its section", () => {
    expect(versions<string[]>(`v.versionMismatches(${JSON.stringify(WORKSPACE_ROOT)}, ${JSON.stringify(VERSION)})`)).toEqual([]);
    expect(
      versions<string | null>(`v.changelogSection(${JSON.stringify(WORKSPACE_ROOT)}, ${JSON.stringify(VERSION)}) ?? null`),
    ).toBeTruthy();
  });

  it('set-version.mjs moves every place to a new version; a place left behind is named', () => {
    const dir = scratchCheckout();
    try {
      const set = spawnSync(process.execPath, [join(WORKSPACE_ROOT, 'tools/release/set-version.mjs'), '1.2.3-rc.1', '--root', dir], {
        encoding: 'utf8',
      });
      expect(set.status === 0 ? 'ok' : set.stderr).toBe('ok');
      expect(versions<string[]>(`v.versionMismatches(${JSON.stringify(dir)}, '1.2.3-rc.1')`)).toEqual([]);
      expect(readFileSync(join(dir, 'deploy/helm/trellis-sidecar/templates/_sidecar.tpl'), 'utf8')).toContain('trellis/cli:1.2.3-rc.1');
      expect(readFileSync(join(dir, 'apps/cli/src/program.ts'), 'utf8')).toContain(".version('1.2.3-rc.1')");

      const chart = join(dir, 'deploy/helm/trellis/charts/authz/Chart.yaml');
      writeFileSync(chart, readFileSync(chart, 'utf8').replace("appVersion: '1.2.3-rc.1'", "appVersion: '1.2.2'"));
      expect(versions<string[]>(`v.versionMismatches(${JSON.stringify(dir)}, '1.2.3-rc.1')`)).toEqual([
        'deploy/helm/trellis/charts/authz/Chart.yaml: 1.2.2, expected 1.2.3-rc.1',
      ]);
      const bad = spawnSync(process.execPath, [join(WORKSPACE_ROOT, 'tools/release/set-version.mjs'), 'v2', '--root', dir], {
        encoding: 'utf8',
      });
      expect(bad.stderr).toContain('"v2" is not a semantic version');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // Helm is needed to package the charts (tools/setup/ensure-helm.mjs provides it).
  (findHelm() ? it : it.skip)(
    'release.mjs --no-images builds the charts and the CLI with that version',
    () => {
      const out = mkdtempSync(join(tmpdir(), 'trellis-release-'));
      try {
        const release = spawnSync(process.execPath, [join(WORKSPACE_ROOT, 'tools/release/release.mjs'), '--no-images', '--out', out], {
          encoding: 'utf8',
        });
        expect(release.status === 0 ? 'ok' : `${release.stdout}${release.stderr}`).toBe('ok');
        const dir = join(out, VERSION);
        const helm = findHelm();
        for (const chart of ['trellis', 'trellis-sidecar']) {
          const shown = execFileSync(helm, ['show', 'chart', join(dir, `${chart}-${VERSION}.tgz`)], { encoding: 'utf8' });
          expect(shown).toContain(`version: ${VERSION}`);
          expect(shown).toContain(`appVersion: ${VERSION}`);
        }
        // The CLI as shipped reports the version (its npm packages resolved from the workspace).
        execFileSync('tar', ['-xzf', join(dir, `trellis-cli-${VERSION}.tgz`), '-C', out]);
        const cli = spawnSync(process.execPath, [join(out, 'cli/main.js'), '--version'], {
          encoding: 'utf8',
          env: { ...process.env, NODE_PATH: join(WORKSPACE_ROOT, 'node_modules') },
        });
        expect(cli.stdout.trim()).toBe(VERSION);
        expect(JSON.parse(readFileSync(join(out, 'cli/package.json'), 'utf8')).version).toBe(VERSION);
        // Each image's build context: the bundle, its package.json and lockfile, at that version.
        for (const app of ['registry', 'control-plane', 'authz'])
          expect(JSON.parse(readFileSync(join(dir, 'build', app, 'dist/apps', app, 'package.json'), 'utf8')).version).toBe(VERSION);
        const sums = readFileSync(join(dir, 'SHA256SUMS'), 'utf8');
        for (const file of [`trellis-${VERSION}.tgz`, `trellis-sidecar-${VERSION}.tgz`, `trellis-cli-${VERSION}.tgz`])
          expect(sums).toContain(`  ${file}\n`);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
    120_000,
  );
});

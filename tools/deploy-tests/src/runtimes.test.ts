// Supported runtimes: what the images and sidecars run, and what the bundles install.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { APPS, WORKSPACE_ROOT, readWorkspaceFile } from './workspace';

/**
 * Envoy supports its four newest minor releases (about a year); a sidecar older than this
 * gets no security fixes. Raise it as Envoy releases.
 */
const OLDEST_SUPPORTED_ENVOY_MINOR = 37;

const envoyMinor = (image: string) => Number(/^envoyproxy\/envoy:distroless-v1\.(\d+)\.\d+$/.exec(image)?.[1] ?? NaN);

describe('supported runtimes', () => {
  it('the compose demo and the Helm sidecar run a supported Envoy release', () => {
    const compose = parse(readWorkspaceFile('deploy/compose/compose.yaml')) as Record<string, Record<string, { image?: string }>>;
    const images = new Set(Object.values(compose['services']!).flatMap((s) => (s.image?.startsWith('envoyproxy/') ? [s.image] : [])));
    const anchors = [...readWorkspaceFile('deploy/compose/compose.yaml').matchAll(/image: (envoyproxy\/\S+)/g)].map((m) => m[1]!);
    const sidecar = /"envoyImage" "([^"]+)"/.exec(readWorkspaceFile('deploy/helm/trellis-sidecar/templates/_sidecar.tpl'))?.[1];
    for (const image of [...images, ...anchors, sidecar!])
      expect({ image, supported: envoyMinor(image) >= OLDEST_SUPPORTED_ENVOY_MINOR }).toEqual({ image, supported: true });
  });

  it('package.json engines and @types/node follow the Node.js LTS the images run', () => {
    const pkg = JSON.parse(readWorkspaceFile('package.json')) as { engines: { node: string }; devDependencies: Record<string, string> };
    expect(pkg.engines.node).toBe('>=24');
    expect(pkg.devDependencies['@types/node']).toMatch(/^\^24\./);
  });

  // The README promises 20.19+ runs everything; `.ci/run` runs `npm ci` and `npm test` on whatever Node the machine has.
  it("CI keeps testing on the machine's Node: engines only advises (npm is not engine-strict), and the floor is 20.19", () => {
    const npmrc = existsSync(join(WORKSPACE_ROOT, '.npmrc')) ? readWorkspaceFile('.npmrc') : '';
    expect(npmrc).not.toMatch(/^\s*engine-strict\s*=\s*true/m);
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    expect({ node: process.versions.node, supported: major > 20 || (major === 20 && minor >= 19) }).toMatchObject({ supported: true });
  });

  it('@grpc/grpc-js-xds is a development dependency: no app bundle imports it', () => {
    const pkg = JSON.parse(readWorkspaceFile('package.json')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    expect(pkg.dependencies['@grpc/grpc-js-xds']).toBeUndefined();
    expect(pkg.devDependencies['@grpc/grpc-js-xds']).toBeDefined();
  });

  // Each app bundled into a scratch folder (not dist/, which other suites build into), then the
  // image's install step checked by npm itself: `npm ci` refuses a lockfile out of sync.
  describe.each([...APPS])('%s bundle', (app) => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), `trellis-bundle-${app}-`));
      execFileSync(process.execPath, [join(WORKSPACE_ROOT, 'tools/build/bundle.mjs'), app, dir], { cwd: WORKSPACE_ROOT, stdio: 'pipe' });
    }, 60_000);
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("writes a lockfile that npm ci accepts, pinning each package as the workspace's does", () => {
      const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as {
        packages: Record<string, { version?: string; integrity?: string; dependencies?: Record<string, string> }>;
      };
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
      expect(lock.packages['']!.dependencies).toEqual(pkg.dependencies);
      expect(Object.keys(pkg.dependencies)).not.toContain('@grpc/grpc-js-xds');
      const workspace = JSON.parse(readWorkspaceFile('package-lock.json')) as {
        packages: Record<string, { version?: string; integrity?: string }>;
      };
      for (const [path, entry] of Object.entries(lock.packages).filter(([p]) => p !== ''))
        expect({ path, version: entry.version, integrity: entry.integrity }).toEqual({
          path,
          version: workspace.packages[path]!.version,
          integrity: workspace.packages[path]!.integrity,
        });
      const ci = spawnSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--dry-run', '--offline'], {
        cwd: dir,
        encoding: 'utf8',
      });
      expect(ci.status === 0 ? 'ok' : `${ci.stdout}${ci.stderr}`).toBe('ok');
    }, 60_000);
  });
});

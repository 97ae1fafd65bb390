// apps/*/Dockerfile: without a Docker engine here, the images are checked by reading
// them: two stages from the nx build output, runtime packages installed against the
// workspace lockfile, a distroless non-root final stage that exposes the app's ports.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { argDefault, parseDockerfile, type Stage } from './dockerfile';
import { APPS, WORKSPACE_ROOT, readWorkspaceFile } from './workspace';

const PORTS: Record<(typeof APPS)[number], string[]> = {
  registry: ['8080'],
  'control-plane': ['18000', '18080'],
  authz: ['9191', '8181', '8443'],
};

/** The Node.js LTS line the images run (deploy/README.md); CI may test on an older Node. */
const SUPPORTED_NODE = 24;

const all = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args);

describe.each([...APPS])('apps/%s/Dockerfile', (app) => {
  const { args, stages } = parseDockerfile(readWorkspaceFile('apps', app, 'Dockerfile'));
  const [deps, runtime] = stages as [Stage, Stage];

  it('has a dependency stage and a final runtime stage', () => {
    expect(stages).toHaveLength(2);
    expect(deps.name).toBe('deps');
  });

  it("installs only the bundle's runtime packages with npm ci, from the lockfile the build writes beside them", () => {
    expect(all(deps, 'COPY')).toEqual([`dist/apps/${app}/package.json dist/apps/${app}/package-lock.json ./`]);
    expect(all(deps, 'RUN')).toEqual([expect.stringMatching(/^npm ci --omit=dev --ignore-scripts\b/)]);
  });

  it(`runs on distroless Node.js ${SUPPORTED_NODE} (LTS) as a numeric non-root user`, () => {
    const image = runtime.from.replace(/^\$\{(\w+)\}$/, (_m, name: string) => argDefault(args, name) ?? '');
    expect(image).toBe(`gcr.io/distroless/nodejs${SUPPORTED_NODE}-debian12:nonroot`);
    expect(argDefault(args, 'NODE_BUILD_IMAGE')).toBe(`node:${SUPPORTED_NODE}-bookworm-slim`);
    const [user] = all(runtime, 'USER');
    expect(user).toMatch(/^[1-9][0-9]*:[1-9][0-9]*$/);
  });

  it('copies the build output and the installed packages, and starts main.js', () => {
    expect(all(runtime, 'COPY')).toEqual([`--from=deps --chown=0:0 /app/node_modules ./node_modules`, `--chown=0:0 dist/apps/${app}/ ./`]);
    expect(all(runtime, 'CMD')).toEqual(['["main.js"]']);
    expect(all(runtime, 'WORKDIR')).toEqual(['/app']);
  });

  it(`exposes ${PORTS[app].join(' and ')}`, () => {
    expect(all(runtime, 'EXPOSE').flatMap((e) => e.split(/\s+/))).toEqual(PORTS[app]);
  });

  it('keeps the build context to the build output and the lockfile', () => {
    const ignore = join(WORKSPACE_ROOT, 'apps', app, 'Dockerfile.dockerignore');
    expect(existsSync(ignore)).toBe(true);
    const rules = readWorkspaceFile('apps', app, 'Dockerfile.dockerignore')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'));
    expect(rules).toEqual(['*', `!dist/apps/${app}/`]);
  });

  it('builds from what tools/build/bundle.mjs writes (main.js and package.json in dist/apps/<app>)', () => {
    const bundler = readWorkspaceFile('tools/build/bundle.mjs');
    expect(bundler).toContain("join(root, 'dist/apps', app)");
    expect(bundler).toMatch(/writeFileAtomically\(join\(outDir, 'package\.json'\)/);
    expect(bundler).toMatch(/writeFileAtomically\(join\(outDir, 'package-lock\.json'\), JSON\.stringify\(pruneLockfile\(/);
  });
});

// The CLI image: the Helm sidecar's agent container and bootstrap init container pass
// the CLI's arguments as the container's args, so the entrypoint is the CLI.
describe('apps/cli/Dockerfile', () => {
  const { args, stages } = parseDockerfile(readWorkspaceFile('apps/cli/Dockerfile'));
  const [deps, runtime] = stages as [Stage, Stage];
  const sidecarTemplate = readWorkspaceFile('deploy/helm/trellis-sidecar/templates/_sidecar.tpl');

  it("installs only the bundle's runtime packages with npm ci, from the lockfile the build writes", () => {
    expect(stages).toHaveLength(2);
    expect(all(deps, 'COPY')).toEqual(['dist/apps/cli/package.json dist/apps/cli/package-lock.json ./']);
    expect(all(deps, 'RUN')).toEqual([expect.stringMatching(/^npm ci --omit=dev --ignore-scripts\b/)]);
  });

  it(`runs the CLI as its entrypoint on distroless Node.js ${SUPPORTED_NODE}, as a numeric non-root user`, () => {
    const image = runtime.from.replace(/^\$\{(\w+)\}$/, (_m, name: string) => argDefault(args, name) ?? '');
    expect(image).toBe(`gcr.io/distroless/nodejs${SUPPORTED_NODE}-debian12:nonroot`);
    expect(all(runtime, 'COPY')).toEqual([`--from=deps --chown=0:0 /app/node_modules ./node_modules`, `--chown=0:0 dist/apps/cli/ ./`]);
    expect(all(runtime, 'ENTRYPOINT')).toEqual(['["/nodejs/bin/node", "/app/main.js"]']);
    expect(all(runtime, 'USER')).toEqual(['65532:65532']);
    expect(all(runtime, 'EXPOSE')).toEqual(['15020']);
  });

  it("is the chart's default image for both the bootstrap init container and the agent, which pass CLI arguments", () => {
    const [, tag] = /-t (trellis\/cli:\S+)/.exec(readWorkspaceFile('apps/cli/Dockerfile')) ?? [];
    expect(sidecarTemplate).toContain(`"bootstrapImage" "${tag}"`);
    expect(sidecarTemplate).toContain(`"image" "${tag}"`);
    expect(sidecarTemplate).toMatch(/args:\n\s+- bootstrap\n/);
    expect(sidecarTemplate).toContain('args: [agent]');
    expect(sidecarTemplate).not.toMatch(/^\s*command:/m);
  });

  it('keeps the build context to the build output', () => {
    const rules = readWorkspaceFile('apps/cli/Dockerfile.dockerignore')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'));
    expect(rules).toEqual(['*', '!dist/apps/cli/']);
  });
});

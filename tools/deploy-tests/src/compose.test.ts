// deploy/compose: the real-Envoy demo. Nothing about Envoy is static but the
// bootstrap each sidecar fetches from the control plane; every mesh service in the
// demo topology has its app, bootstrap fetch and sidecar; the apps get only
// variables they accept; the demo scripts parse.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { appVariables, loadAppConfig } from './app-env';
import { APPS, DEPLOY_DIR, WORKSPACE_ROOT, readWorkspaceFile } from './workspace';

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  network_mode?: string;
  depends_on?: Record<string, { condition: string }>;
  user?: string;
}

const COMPOSE_DIR = join(DEPLOY_DIR, 'compose');
const compose = parse(readWorkspaceFile('deploy/compose/compose.yaml'), { merge: true }) as { services: Record<string, ComposeService> };
const services = compose.services;
const topology = JSON.parse(readWorkspaceFile('deploy/compose/demo/topology.json')) as {
  services: Array<{ name: string; dependencies?: Array<{ service: string }> }>;
};
const meshServices = topology.services.map((s) => s.name);

describe('docker compose demo', () => {
  it('builds the three apps from their Dockerfiles at the repository root', () => {
    for (const app of APPS) {
      expect(services[app]?.build).toEqual({ context: '../..', dockerfile: `apps/${app}/Dockerfile` });
      expect(existsSync(join(COMPOSE_DIR, '../..', `apps/${app}/Dockerfile`))).toBe(true);
    }
  });

  it.each([...APPS])('%s gets only variables it accepts, with values its config schema accepts', (app) => {
    const known = appVariables(app);
    const env = services[app]!.environment ?? {};
    expect(Object.keys(env).filter((v) => !known.has(v))).toEqual([]);
    expect(() => loadAppConfig(app, env)).not.toThrow();
  });

  it('has a front Envoy and sidecars for three more services', () => {
    expect(meshServices).toEqual(['front', 'service-a', 'service-b', 'service-c']);
    const sidecars = Object.entries(services).filter(([, s]) => s.image?.startsWith('envoyproxy/envoy'));
    expect(sidecars.map(([name]) => name).sort()).toEqual(meshServices.map((s) => `${s}-envoy`).sort());
  });

  describe.each(meshServices)('%s', (service) => {
    const app = services[service]!;
    const fetcher = services[`${service}-bootstrap`]!;
    const envoy = services[`${service}-envoy`]!;

    it("sidecar shares the app's network namespace and starts only from the fetched bootstrap", () => {
      expect(envoy.network_mode).toBe(`service:${service}`);
      expect(envoy.command).toEqual(['--config-path', '/etc/trellis-envoy/bootstrap.yaml', '--log-level', 'info', '--disable-hot-restart']);
      expect(envoy.volumes).toEqual([`${service}-bootstrap:/etc/trellis-envoy:ro`]);
      expect(envoy.depends_on?.[`${service}-bootstrap`]).toEqual({ condition: 'service_completed_successfully' });
    });

    it('bootstrap comes from the control plane, naming the service and the instance the app registers', () => {
      const url = fetcher.command!.at(-1)!;
      expect(new URL(url).pathname).toBe(`/bootstrap/${service}`);
      expect(new URL(url).host).toBe('control-plane:18080');
      expect(new URL(url).searchParams.get('node')).toBe(app.environment!['INSTANCE_ID']);
      // The app listens on 127.0.0.1:9000 (its default); the sidecar's inbound listener owns 8080.
      expect(new URL(url).searchParams.get('app_port')).toBe('9000');
      expect(fetcher.volumes).toEqual([`${service}-bootstrap:/etc/trellis-envoy`]);
    });

    it('bootstrap is fetched only after the seed step registered the service, retrying any error (a 404 too)', () => {
      expect(fetcher.depends_on?.['seed']).toEqual({ condition: 'service_completed_successfully' });
      expect(fetcher.command).toEqual(expect.arrayContaining(['--fail', '--retry', '--retry-all-errors']));
    });

    it('app calls what the topology declares (service-c also tries one undeclared call)', () => {
      const declared = topology.services.find((s) => s.name === service)!.dependencies?.map((d) => d.service) ?? [];
      const calls = (app.environment!['DEPENDENCIES'] ?? '').split(',').filter(Boolean);
      if (service === 'service-c') expect(calls.filter((c) => !declared.includes(c))).toEqual(['service-b']);
      else expect(calls).toEqual(declared);
    });
  });

  it('mounts no Envoy configuration files: listeners, clusters and routes all come over xDS', () => {
    const files = readdirSync(COMPOSE_DIR, { recursive: true }).map(String);
    expect(files.filter((f) => /envoy.*\.(ya?ml|json)$/.test(f))).toEqual([]);
  });

  it.each(['service.mjs', 'seed.mjs'])('demo/%s is valid JavaScript', (file) => {
    const check = spawnSync(process.execPath, ['--check', join(COMPOSE_DIR, 'demo', file)], { encoding: 'utf8', cwd: WORKSPACE_ROOT });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });
});

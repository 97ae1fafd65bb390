// deploy/compose: the real-Envoy demo, wired as production runs: authz is the mesh CA and
// admits no caller without a workload certificate, the control plane admits no xDS client
// without its service's xDS token, each demo service has a trellis agent holding its
// certificate, and each bootstrap fetch asks authz's mTLS port for the token with it.
// Nothing about Envoy is static but the bootstrap each sidecar fetches from the control
// plane; every mesh service in the demo topology has its app, agent, bootstrap fetch and
// sidecar; the apps get only variables they accept; the demo scripts parse. These are
// static checks: Docker is not needed (nor run) here.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { SIDECAR_CERTIFICATE_DIR } from '@trellis/mesh-contracts';
import { ServiceCredentials, ServiceSpec } from '@trellis/mesh-schema';
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
  read_only?: boolean;
  healthcheck?: { test: string[] };
}

const COMPOSE_DIR = join(DEPLOY_DIR, 'compose');
const compose = parse(readWorkspaceFile('deploy/compose/compose.yaml'), { merge: true }) as {
  services: Record<string, ComposeService>;
  volumes: Record<string, unknown>;
};
const services = compose.services;
const topology = JSON.parse(readWorkspaceFile('deploy/compose/demo/topology.json')) as {
  services: Array<{ name: string; mtls?: string; ingress?: object; dependencies?: Array<{ service: string }> }>;
};
const meshServices = topology.services.map((s) => s.name);
const env = (name: string) => services[name]!.environment ?? {};
/** "source:target[:ro]" of a service's volume at `target`. */
const mountAt = (name: string, target: string) => {
  const found = (services[name]!.volumes ?? []).map((v) => v.split(':')).find((parts) => parts[1] === target);
  return found && { source: found[0]!, readOnly: found[2] === 'ro' };
};
const authzConfig = loadAppConfig('authz', env('authz')) as Record<string, unknown>;
/**
 * Whether compose starts `name` only after `step` has completed: some chain of depends_on
 * leads there and ends in service_completed_successfully (every condition orders the start).
 */
const startsAfterCompletionOf = (name: string, step: string, seen = new Set<string>()): boolean => {
  if (seen.has(name)) return false;
  seen.add(name);
  return Object.entries(services[name]?.depends_on ?? {}).some(([dep, { condition }]) =>
    dep === step ? condition === 'service_completed_successfully' : startsAfterCompletionOf(dep, step, seen),
  );
};

describe('docker compose demo', () => {
  it('builds the three apps and the CLI (agents, bootstrap fetches) from their Dockerfiles at the repository root', () => {
    for (const app of [...APPS, 'cli']) {
      const built = Object.values(services).filter((s) => s.build?.dockerfile === `apps/${app}/Dockerfile`);
      expect(built.length).toBeGreaterThan(0);
      for (const s of built) expect(s.build).toEqual({ context: '../..', dockerfile: `apps/${app}/Dockerfile` });
      expect(existsSync(join(COMPOSE_DIR, '../..', `apps/${app}/Dockerfile`))).toBe(true);
    }
  });

  it.each([...APPS])('%s gets only variables it accepts, with values its config schema accepts', (app) => {
    const known = appVariables(app);
    expect(Object.keys(env(app)).filter((v) => !known.has(v))).toEqual([]);
    expect(() => loadAppConfig(app, env(app))).not.toThrow();
  });

  describe('runs as production does', () => {
    it('authz admits no caller without a workload certificate, and is the mesh CA with a dev root kept in a volume', () => {
      expect(env('authz')['TRELLIS_ALLOW_INSECURE_CALLERS']).toBeUndefined();
      expect(authzConfig['TRELLIS_ALLOW_INSECURE_CALLERS']).toBe(false);
      const devRoot = env('authz')['TRELLIS_CA_DEV_ROOT_DIR']!;
      expect(mountAt('authz', devRoot)).toEqual({ source: 'mesh-ca', readOnly: false });
    });

    it('the control plane refuses insecure xDS clients and gives sidecars an mTLS ext_authz cluster (both defaults)', () => {
      const config = loadAppConfig('control-plane', env('control-plane')) as Record<string, unknown>;
      expect(env('control-plane')['TRELLIS_XDS_ALLOW_INSECURE_CLIENTS']).toBeUndefined();
      expect(config['TRELLIS_XDS_ALLOW_INSECURE_CLIENTS']).toBe(false);
      expect(env('control-plane')['TRELLIS_AUTHZ_TLS']).toBeUndefined();
      expect(config['TRELLIS_AUTHZ_TLS']).toBe(true);
    });

    it('every mesh service has a credential, the one authz (certificates) and the registry (its agent) know', () => {
      const dir = env('authz')['TRELLIS_TOKEN_ENDPOINT_CREDENTIALS']!;
      expect(mountAt('authz', dir)).toEqual({ source: './credentials', readOnly: true });
      expect(mountAt('registry', env('registry')['TRELLIS_SERVICE_CREDENTIALS']!)).toEqual({ source: './credentials', readOnly: true });
      expect(readdirSync(join(COMPOSE_DIR, 'credentials')).sort()).toEqual([...meshServices].sort());
      return expect(ServiceCredentials.load(join(COMPOSE_DIR, 'credentials')).then((c) => c.size)).resolves.toBe(meshServices.length);
    });

    it('the seed step registers specs the registry accepts (its own schema)', () => {
      for (const spec of topology.services) {
        const parsed = ServiceSpec.safeParse(spec);
        expect(parsed.success ? spec.name : `${spec.name}: ${JSON.stringify(parsed.error.issues)}`).toBe(spec.name);
      }
    });

    it('the services behind sidecars are strict; front, which takes curl in plaintext, is permissive', () => {
      expect(Object.fromEntries(topology.services.map((s) => [s.name, s.mtls]))).toEqual({
        front: 'permissive',
        'service-a': 'strict',
        'service-b': 'strict',
        'service-c': 'strict',
      });
    });

    it('every named volume a uid-65532 container writes is handed to it first', () => {
      const owner = services['volume-owner']!;
      const owned = (owner.volumes ?? []).map((v) => v.split(':')[0]);
      expect(owner.command?.slice(0, 2)).toEqual(['chown', '65532:65532']);
      expect(owner.command?.slice(2)).toEqual((owner.volumes ?? []).map((v) => v.split(':')[1]));
      expect([...owned].sort()).toEqual(
        Object.keys(compose.volumes)
          .filter((v) => v !== 'etcd-data')
          .sort(),
      );
      expect(services['authz']!.depends_on?.['volume-owner']).toEqual({ condition: 'service_completed_successfully' });
    });
  });

  it('has a front Envoy and sidecars for three more services', () => {
    expect(meshServices).toEqual(['front', 'service-a', 'service-b', 'service-c']);
    const sidecars = Object.entries(services).filter(([, s]) => s.image?.startsWith('envoyproxy/envoy'));
    expect(sidecars.map(([name]) => name).sort()).toEqual(meshServices.map((s) => `${s}-envoy`).sort());
  });

  describe.each(meshServices)('%s', (service) => {
    const app = services[service]!;
    const agent = services[`${service}-agent`]!;
    const fetcher = services[`${service}-bootstrap`]!;
    const envoy = services[`${service}-envoy`]!;
    const instance = app.environment!['INSTANCE_ID']!;

    it("agent shares the app's network namespace, registers its instance and keeps the workload certificate", () => {
      expect(agent.network_mode).toBe(`service:${service}`);
      expect(agent.command).toEqual(['agent']);
      expect(agent.user).toBe('65532:65532');
      expect(agent.environment).toMatchObject({
        TRELLIS_SERVICE: service,
        TRELLIS_INSTANCE_ID: instance,
        // The sidecar's inbound listener; the agent checks the app itself on 127.0.0.1:9000.
        TRELLIS_PORT: '8080',
        TRELLIS_HEALTH_CHECK: 'tcp://127.0.0.1:9000',
        TRELLIS_REGISTRY_URL: 'http://registry:8080',
        // The mesh CA on authz's HTTP port; the certificate proven with the service's own credential.
        TRELLIS_AUTHZ_URL: `http://authz:${authzConfig['TRELLIS_HTTP_PORT']}`,
      });
      expect(mountAt(`${service}-agent`, agent.environment!['TRELLIS_SERVICE_SECRET_FILE']!)).toEqual({
        source: `./credentials/${service}`,
        readOnly: true,
      });
      expect(mountAt(`${service}-agent`, agent.environment!['TRELLIS_CERTIFICATE_DIR']!)).toEqual({
        source: `${service}-workload`,
        readOnly: false,
      });
      // Ready only once registered with a valid certificate: what the bootstrap fetch waits for.
      expect(agent.healthcheck?.test.join(' ')).toContain('http://127.0.0.1:15020/readyz');
    });

    it("bootstrap asks authz's mTLS port for the xDS token with the agent's certificate, then the control plane", () => {
      expect(fetcher.command).toEqual(['bootstrap', service, '--out', '/etc/trellis-envoy/bootstrap.yaml']);
      expect(fetcher.environment).toMatchObject({
        TRELLIS_CONTROL_PLANE_URL: 'http://control-plane:18080',
        TRELLIS_NODE_ID: instance,
        // The app listens on 127.0.0.1:9000 (its default); the sidecar's inbound listener owns 8080.
        TRELLIS_APP_PORT: '9000',
        TRELLIS_AUTHZ_URL: `https://authz:${authzConfig['TRELLIS_MTLS_PORT']}`,
      });
      expect(fetcher.environment!['TRELLIS_SERVICE_SECRET_FILE']).toBeUndefined();
      expect(mountAt(`${service}-bootstrap`, fetcher.environment!['TRELLIS_CERTIFICATE_DIR']!)).toEqual({
        source: `${service}-workload`,
        readOnly: false,
      });
      expect(mountAt(`${service}-bootstrap`, '/etc/trellis-envoy')).toEqual({ source: `${service}-bootstrap`, readOnly: false });
      expect(fetcher.depends_on).toMatchObject({
        [`${service}-agent`]: { condition: 'service_healthy' },
        'control-plane': { condition: 'service_healthy' },
      });
    });

    it('fetches its bootstrap only once the seed step has declared the services (the control plane 404s a service it does not know)', () => {
      expect(startsAfterCompletionOf(`${service}-bootstrap`, 'seed')).toBe(true);
      expect(startsAfterCompletionOf('seed', `${service}-bootstrap`)).toBe(false);
    });

    it("sidecar shares the app's network namespace, starts only from the fetched bootstrap, reads the certificate read-only", () => {
      expect(envoy.network_mode).toBe(`service:${service}`);
      expect(envoy.command).toEqual(['--config-path', '/etc/trellis-envoy/bootstrap.yaml', '--log-level', 'info', '--disable-hot-restart']);
      expect(envoy.volumes).toEqual([`${service}-bootstrap:/etc/trellis-envoy:ro`, `${service}-workload:${SIDECAR_CERTIFICATE_DIR}:ro`]);
      expect(envoy.depends_on?.[`${service}-bootstrap`]).toEqual({ condition: 'service_completed_successfully' });
    });

    it('app calls what the topology declares (service-c also tries one undeclared call), holding no credential', () => {
      const declared = topology.services.find((s) => s.name === service)!.dependencies?.map((d) => d.service) ?? [];
      const calls = (app.environment!['DEPENDENCIES'] ?? '').split(',').filter(Boolean);
      if (service === 'service-c') expect(calls.filter((c) => !declared.includes(c))).toEqual(['service-b']);
      else expect(calls).toEqual(declared);
      expect(Object.keys(app.environment!).filter((k) => /TOKEN|SECRET/.test(k))).toEqual([]);
    });
  });

  it('mounts no Envoy configuration files: listeners, clusters and routes all come over xDS', () => {
    const files = readdirSync(COMPOSE_DIR, { recursive: true }).map(String);
    expect(files.filter((f) => /envoy.*\.(ya?ml|json)$/.test(f))).toEqual([]);
  });

  it('the demo apps see no credential: they are mounted into the agents only', () => {
    expect(existsSync(join(COMPOSE_DIR, 'demo/credentials'))).toBe(false);
    expect(readFileSync(join(COMPOSE_DIR, 'demo/service.mjs'), 'utf8')).not.toMatch(/REGISTRY_TOKEN|authorization/);
  });

  it.each(['service.mjs', 'seed.mjs'])('demo/%s is valid JavaScript', (file) => {
    const check = spawnSync(process.execPath, ['--check', join(COMPOSE_DIR, 'demo', file)], { encoding: 'utf8', cwd: WORKSPACE_ROOT });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });
});

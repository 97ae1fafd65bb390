// The compose demo's settings, run: every container of deploy/compose/compose.yaml that
// Trellis provides — authz, control plane, registry, the seed step, and per demo service its
// app, agent and bootstrap fetch — started as a local process with exactly the environment
// and command compose gives it. Only what Docker provides is replaced: service names by
// 127.0.0.1 and free ports, volumes by directories, and etcd and Redis by the suite's own.
// Envoy (and Docker) are not part of it; compose.test.ts checks the rest of the file.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { parse } from 'yaml';
import { freePort, startEtcd, startRedis, type TestEtcd, type TestRedis } from '@trellis/testing';
import { answersOk, bundleApp, eventually, Proc, removeBundles } from './processes';
import { DEPLOY_DIR, readWorkspaceFile } from './workspace';

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
}

const COMPOSE_DIR = join(DEPLOY_DIR, 'compose');
const services = (parse(readWorkspaceFile('deploy/compose/compose.yaml'), { merge: true }) as { services: Record<string, ComposeService> })
  .services;
const meshServices = (
  JSON.parse(readWorkspaceFile('deploy/compose/demo/topology.json')) as { services: Array<{ name: string }> }
).services.map((s) => s.name);

describe('the compose demo, its containers run as processes', () => {
  let etcd: TestEtcd;
  let redis: TestRedis;
  let dir: string;
  const bundles: Record<string, string> = {};
  /** host:port as compose's containers reach each other → this host's. */
  const addresses = new Map<string, string>();
  const ports: Record<string, number> = {};

  /** The container's view of the file system (its volumes) and network (service names), on this host. */
  function onThisHost(name: string, value: string): string {
    let out = value;
    for (const [from, to] of addresses) out = out.split(from).join(to);
    for (const volume of services[name]!.volumes ?? []) {
      const [source, target] = volume.split(':') as [string, string];
      const local = source.startsWith('./') ? join(COMPOSE_DIR, source) : join(dir, 'volumes', source);
      if (out === target || out.startsWith(`${target}/`)) out = local + out.slice(target.length);
    }
    return out;
  }
  const envOf = (name: string, extra: Record<string, string> = {}) => ({
    ...Object.fromEntries(Object.entries(services[name]!.environment ?? {}).map(([k, v]) => [k, onThisHost(name, String(v))])),
    ...extra,
  });

  beforeAll(async () => {
    [etcd, redis] = await Promise.all([startEtcd(), startRedis()]);
    dir = mkdtempSync(join(tmpdir(), 'compose-processes-'));
    for (const app of ['authz', 'control-plane', 'registry', 'cli']) bundles[app] = bundleApp(app);
    for (const name of ['authzHttp', 'authzMtls', 'authzGrpc', 'cpHttp', 'xds', 'registry']) ports[name] = await freePort();
    addresses.set('http://etcd:2379', etcd.endpoints.join(','));
    addresses.set('redis://redis:6379', redis.url);
    addresses.set('http://authz:8181', `http://127.0.0.1:${ports['authzHttp']}`);
    addresses.set('https://authz:8443', `https://127.0.0.1:${ports['authzMtls']}`);
    addresses.set('authz:9191', `127.0.0.1:${ports['authzGrpc']}`);
    addresses.set('control-plane:18000', `127.0.0.1:${ports['xds']}`);
    addresses.set('http://control-plane:18080', `http://127.0.0.1:${ports['cpHttp']}`);
    addresses.set('http://registry:8080', `http://127.0.0.1:${ports['registry']}`);
    // Named volumes start empty (volume-owner hands them over; here they are ours already).
    for (const service of Object.values(services))
      for (const volume of service.volumes ?? [])
        if (!volume.startsWith('./')) mkdirSync(join(dir, 'volumes', volume.split(':')[0]!), { recursive: true });
    // Each app in its own container listens on its default port on every address: here, distinct ports on loopback.
    const local = { TRELLIS_HOST: '127.0.0.1', TRELLIS_ETCD_PREFIX: etcd.prefix };
    const authz = Proc.start(
      'authz',
      bundles['authz']!,
      [],
      envOf('authz', {
        ...local,
        TRELLIS_HTTP_PORT: String(ports['authzHttp']),
        TRELLIS_MTLS_PORT: String(ports['authzMtls']),
        TRELLIS_GRPC_PORT: String(ports['authzGrpc']),
      }),
    );
    await eventually('authz ready', () => answersOk(`http://127.0.0.1:${ports['authzHttp']}/readyz`), [authz]);
    const controlPlane = Proc.start(
      'control-plane',
      bundles['control-plane']!,
      [],
      envOf('control-plane', { ...local, TRELLIS_HTTP_PORT: String(ports['cpHttp']), TRELLIS_XDS_PORT: String(ports['xds']) }),
    );
    const registry = Proc.start(
      'registry',
      bundles['registry']!,
      [],
      envOf('registry', { ...local, TRELLIS_HTTP_PORT: String(ports['registry']) }),
    );
    await eventually(
      'control plane and registry ready',
      async () =>
        (await answersOk(`http://127.0.0.1:${ports['cpHttp']}/readyz`)) && answersOk(`http://127.0.0.1:${ports['registry']}/readyz`),
      [controlPlane, registry],
    );
  }, 300_000);

  afterAll(async () => {
    await Proc.stopAll();
    await Promise.all([etcd?.stop(), redis?.stop()]);
    removeBundles();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('seeds the topology, then every service: agent ready with its certificate, bootstrap with an xDS token from the mTLS port', async () => {
    const [seedScript] = services['seed']!.command!.slice(1).map((a) => onThisHost('seed', a));
    execFileSync(process.execPath, [seedScript!], { env: { PATH: process.env['PATH'], ...envOf('seed') }, stdio: 'pipe' });

    for (const service of meshServices) {
      // In compose each service has its own network namespace; here its app and agent need ports of their own.
      const appPort = await freePort();
      const agentPort = await freePort();
      Proc.start(`${service} app`, onThisHost(service, services[service]!.command![1]!), [], envOf(service, { APP_PORT: String(appPort) }));
      const agent = Proc.start(
        `${service}-agent`,
        bundles['cli']!,
        services[`${service}-agent`]!.command!,
        envOf(`${service}-agent`, {
          TRELLIS_HEALTH_CHECK: `tcp://127.0.0.1:${appPort}`,
          TRELLIS_ADDRESS: '127.0.0.1',
          TRELLIS_AGENT_HTTP_HOST: '127.0.0.1',
          TRELLIS_AGENT_HTTP_PORT: String(agentPort),
        }),
      );
      // What the bootstrap's depends_on waits for: the agent's healthcheck, GET /readyz.
      await eventually(`${service}'s agent ready`, () => answersOk(`http://127.0.0.1:${agentPort}/readyz`), [agent]);

      const fetcher = services[`${service}-bootstrap`]!;
      const run = Proc.start(
        `${service}-bootstrap`,
        bundles['cli']!,
        fetcher.command!.map((a) => onThisHost(`${service}-bootstrap`, a)),
        envOf(`${service}-bootstrap`),
      );
      expect((await run.exited) === 0 ? 'ok' : run.output).toBe('ok');
      const bootstrap = readFileSync(join(dir, 'volumes', `${service}-bootstrap`, 'bootstrap.yaml'), 'utf8');
      expect(bootstrap).toContain(`id: ${services[service]!.environment!['INSTANCE_ID']}`);
      expect(bootstrap).toContain(`cluster: ${service}`);
      expect(bootstrap).toMatch(/Bearer ey[\w-]+\.[\w-]+\.[\w-]+/);
      const workload = join(dir, 'volumes', `${service}-workload`);
      expect(new X509Certificate(readFileSync(join(workload, 'cert.pem'), 'utf8')).subjectAltName).toBe(
        `URI:spiffe://trellis.local/svc/${service}`,
      );
      expect(readdirSync(workload).filter((f) => f.endsWith('.sds.json'))).toHaveLength(2);
    }
    const registered = await Promise.all(
      meshServices.map(async (service) => {
        const res = await fetch(`http://127.0.0.1:${ports['registry']}/api/v1/services/${service}/instances`);
        return ((await res.json()) as { items: Array<{ id: string }> }).items.map((i) => i.id);
      }),
    );
    expect(registered).toEqual(meshServices.map((s) => [services[s]!.environment!['INSTANCE_ID']]));
  }, 240_000);
});

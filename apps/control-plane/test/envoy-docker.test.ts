// Docker only: the real envoyproxy/envoy image, started via testcontainers with
// the bootstrap /bootstrap/{service} renders, against the control plane on this
// host. Checks that Envoy accepts everything (config_dump, no rejected updates)
// and that traffic takes the configured path. Skipped where no Docker engine is.
// Strict mTLS between two sidecars: envoy-docker-mtls.test.ts.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StartedTestContainer } from 'testcontainers';
import { generateRootCa, MeshCa } from '@trellis/pki';
import { freePort } from '@trellis/testing';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';
import { dockerConfigured, requireDocker, startEnvoy, writeSidecarCertificates } from './support/envoy-docker';

if (!dockerConfigured) {
  console.warn(
    'envoy-docker.test.ts skipped: no Docker engine (no DOCKER_HOST, no /var/run/docker.sock). It runs envoyproxy/envoy against the control plane where Docker exists.',
  );
}

(dockerConfigured ? describe : describe.skip)('Envoy (docker) against the control plane', () => {
  jest.setTimeout(180_000);
  let h: ControlPlaneHarness;
  let envoy: StartedTestContainer;
  let upstream: Server;
  let adminPort: number;
  let certificates: string;

  const admin = async (path: string) => (await fetch(`http://127.0.0.1:${adminPort}${path}`)).text();

  beforeAll(async () => {
    const testcontainers = await requireDocker();
    // Host networking: Envoy reaches the control plane and the upstream on 127.0.0.1.
    h = await startControlPlaneHarness({ TRELLIS_HOST: '0.0.0.0' });
    upstream = createServer((_req, res) => res.end('b-1'));
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    // Host networking: the sidecar's inbound port is a real host port, so pick a free one.
    await h.store.createService({ name: 'b', team: 'core', protocol: 'http', port: await freePort() }, 'test');
    await h.store.createService(
      { name: 'a', team: 'core', protocol: 'http', port: await freePort(), dependencies: [{ service: 'b' }] },
      'test',
    );
    await h.store.registerInstance(
      { service: 'b', id: 'b-1', address: '127.0.0.1', port: (upstream.address() as AddressInfo).port, platform: 'vm' },
      60,
    );
    await eventually('model with a and b', () => (h.cp.model()?.services.get('a')?.dependencies.length ? true : undefined));

    adminPort = await freePort();
    const appPort = await freePort();
    const bootstrap = await (
      await fetch(`${h.httpUrl}/bootstrap/a?node=a-envoy-docker&app_port=${appPort}&admin_port=${adminPort}&zone=z1`)
    ).text();
    // The sidecar calls authz over mTLS (TRELLIS_AUTHZ_TLS): it needs its workload certificate, as every sidecar does.
    certificates = join(await mkdtemp(join(tmpdir(), 'trellis-envoy-docker-')), 'a');
    const ca = await MeshCa.load(await generateRootCa({ commonName: 'envoy-docker root' }), {
      trustDomain: 'trellis.local',
      lifetimeSeconds: 3_600,
    });
    await writeSidecarCertificates(certificates, ca, 'a');
    envoy = await startEnvoy(testcontainers, { bootstrap, bootstrapFormat: 'yaml', certificateDir: certificates, network: { host: true } });
  });

  afterAll(async () => {
    await envoy?.stop();
    await h?.stop();
    await new Promise((resolve) => upstream?.close(resolve));
    if (certificates) await rm(join(certificates, '..'), { recursive: true, force: true });
  });

  it('accepts every resource the control plane sends', async () => {
    await eventually(
      'Envoy to ACK listeners and clusters',
      async () => {
        const dump = await admin('/config_dump');
        return dump.includes('outbound|b') && dump.includes('dynamic_listeners') ? dump : undefined;
      },
      60_000,
    );
    const stats = await admin('/stats?filter=update_rejected');
    for (const line of stats.trim().split('\n')) expect(line).toMatch(/: 0$/);
    const status = await eventually('the proxy status in etcd', async () => {
      const [s] = await h.store.listProxyStatuses('a');
      return s?.types.lds?.lastAckedVersion && s.types.cds?.lastAckedVersion ? s : undefined;
    });
    expect(status.types.lds?.lastNack).toBeUndefined();
  });

  it('sends outbound traffic through ext_authz and fails closed while authz is unreachable', async () => {
    // No authz runs in this suite: the outbound route must refuse, never pass the call through.
    const res = await fetch('http://127.0.0.1:15001/', { headers: { host: 'b' } });
    expect(res.status).toBe(403);
    const stats = await admin('/stats?filter=ext_authz');
    expect(stats).toMatch(/ext_authz\.(error|denied): [1-9]/);
  });
});

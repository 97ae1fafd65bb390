// Docker only: strict mTLS between two real Envoy sidecars, configured by the
// control plane, with certificates from the mesh CA (@trellis/pki's MeshCa) in the
// directory layout the agent writes, read over path-based SDS. Skipped where no
// Docker engine is (it runs in CI where one is).
//
//   test ─▶ a's sidecar (host network, outbound TCP 127.0.0.1:<b port>)
//              ══ mTLS: a presents spiffe://trellis.local/svc/a, checks …/svc/b ══▶
//           b's sidecar (own network namespace, strict, network RBAC) ─▶ b's app (this process)
//
// TCP services keep authz out of the path (raw TCP carries no token): what is under
// test is the TLS between the sidecars and RBAC by certificate. The attacks: plaintext,
// no client certificate, a mesh certificate of an undeclared service, and a callee
// presenting another service's certificate.
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as connectTcp, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as connectTls, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { StartedTestContainer } from 'testcontainers';
import { generateRootCa, MeshCa } from '@trellis/pki';
import { freePort } from '@trellis/testing';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';
import { dockerConfigured, hostAddressForContainers, requireDocker, startEnvoy, writeSidecarCertificates } from './support/envoy-docker';

if (!dockerConfigured) {
  console.warn('envoy-docker-mtls.test.ts skipped: no Docker engine (no DOCKER_HOST, no /var/run/docker.sock).');
}

const TRUST_DOMAIN = 'trellis.local';

/** Sends `payload` and collects what comes back until `expected` arrives, the peer closes, or `ms` pass. */
function exchange(socket: Socket | TLSSocket, payload: string, expected: string, ms = 5_000): Promise<string> {
  return new Promise((resolve) => {
    let received = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received);
    };
    const timer = setTimeout(done, ms);
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
      if (received.includes(expected)) done();
    });
    socket.once('close', done);
    socket.once('error', done);
    socket.write(payload);
  });
}

const plainExchange = (port: number, payload: string, expected: string) =>
  new Promise<string>((resolve) => {
    const socket = connectTcp({ host: '127.0.0.1', port }, () => void exchange(socket, payload, expected).then(resolve));
    socket.once('error', () => resolve(''));
  });

/** A TLS client straight to b's sidecar; resolves with what came back (empty: refused). */
const tlsExchange = (
  port: number,
  identity: { certPem: string; keyPem: string } | undefined,
  ca: string,
  payload: string,
  expected: string,
) =>
  new Promise<string>((resolve) => {
    const socket = connectTls(
      {
        host: '127.0.0.1',
        port,
        ca,
        ...(identity ? { cert: identity.certPem, key: identity.keyPem } : {}),
        // The mesh names peers by URI SAN, not by host name: accept b's SPIFFE ID only.
        checkServerIdentity: (_host, cert) =>
          cert.subjectaltname === `URI:spiffe://${TRUST_DOMAIN}/svc/b` ? undefined : new Error(`not b: ${cert.subjectaltname}`),
      },
      () => void exchange(socket, payload, expected).then(resolve),
    );
    socket.once('error', () => resolve(''));
  });

(dockerConfigured ? describe : describe.skip)('strict mTLS between two Envoy sidecars (docker)', () => {
  jest.setTimeout(240_000);
  let h: ControlPlaneHarness;
  let ca: MeshCa;
  let workdir: string;
  let app: Server;
  let impostor: Server | undefined;
  let sidecarA: StartedTestContainer | undefined;
  let sidecarB: StartedTestContainer | undefined;
  let bPort: number; // b's service port: b's sidecar binds it in its namespace, a's binds 127.0.0.1:<it> for the app
  let bPublished: number; // b's sidecar as this host reaches it
  let aAdmin: number;
  let bAdmin: number;
  let impostorBytes = 0;

  const adminOf = (port: number) => async (path: string) => (await fetch(`http://127.0.0.1:${port}${path}`)).text();
  const adminA = (path: string) => adminOf(aAdmin)(path);
  const adminB = (path: string) => adminOf(bAdmin)(path);
  const stat = async (admin: (path: string) => Promise<string>, filter: RegExp): Promise<number> =>
    (await admin('/stats'))
      .split('\n')
      .filter((line) => filter.test(line))
      .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(':') + 1).trim() || 0), 0);

  beforeAll(async () => {
    const testcontainers = await requireDocker();
    const hostSide = hostAddressForContainers();
    workdir = await mkdtemp(join(tmpdir(), 'trellis-envoy-mtls-'));
    ca = await MeshCa.load(await generateRootCa({ commonName: 'envoy mTLS root' }), { trustDomain: TRUST_DOMAIN, lifetimeSeconds: 3_600 });

    // Both sidecars reach xDS at an address valid in their namespaces.
    const xdsPort = await freePort();
    h = await startControlPlaneHarness({
      TRELLIS_HOST: '0.0.0.0',
      TRELLIS_XDS_PORT: xdsPort,
      TRELLIS_XDS_ADVERTISE_ADDRESS: [{ host: hostSide.host, port: xdsPort }],
    });

    // b's app, here: it answers each chunk with "b:" + the chunk.
    app = createServer((socket) => socket.on('data', (chunk) => socket.write(`b:${chunk.toString('utf8')}`)));
    await new Promise<void>((resolve) => app.listen(0, '0.0.0.0', resolve));
    const appPort = (app.address() as AddressInfo).port;

    bPort = await freePort();
    await h.store.createService({ name: 'b', team: 'core', protocol: 'tcp', port: bPort, mtls: 'strict' }, 'test');
    await h.store.createService(
      { name: 'a', team: 'core', protocol: 'tcp', port: await freePort(), dependencies: [{ service: 'b' }] },
      'test',
    );
    await h.store.createService({ name: 'c', team: 'core', protocol: 'tcp', port: await freePort() }, 'test');
    await eventually('model with a → b', () => (h.cp.model()?.services.get('a')?.dependencies.length ? true : undefined));

    const dirA = join(workdir, 'a');
    const dirB = join(workdir, 'b');
    await writeSidecarCertificates(dirA, ca, 'a');
    await writeSidecarCertificates(dirB, ca, 'b');

    // b's sidecar in its own network namespace: its admin interface and its app are on this host, so
    // the test moves admin to 0.0.0.0 (published) and points local-app at the host; nothing else changes.
    bAdmin = 15_000;
    const bBootstrap = JSON.parse(
      await (await fetch(`${h.httpUrl}/bootstrap/b?node=b-1&app_port=${appPort}&admin_port=${bAdmin}&format=json`)).text(),
    ) as {
      admin: { address: { socket_address: { address: string } } };
      static_resources: { clusters: Array<Record<string, unknown> & { name: string }> };
    };
    bBootstrap.admin.address.socket_address.address = '0.0.0.0';
    const localApp = bBootstrap.static_resources.clusters.find((c) => c.name === 'local-app')!;
    localApp['type'] = hostSide.extraHosts.length > 0 ? 'STRICT_DNS' : 'STATIC';
    localApp['load_assignment'] = {
      cluster_name: 'local-app',
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: hostSide.host, port_value: appPort } } } }] }],
    };
    sidecarB = await startEnvoy(testcontainers, {
      bootstrap: JSON.stringify(bBootstrap),
      bootstrapFormat: 'json',
      certificateDir: dirB,
      network: { host: false, exposedPorts: [bPort, bAdmin], extraHosts: hostSide.extraHosts },
    });
    bPublished = sidecarB.getMappedPort(bPort);
    bAdmin = sidecarB.getMappedPort(bAdmin);
    await h.store.registerInstance({ service: 'b', id: 'b-1', address: '127.0.0.1', port: bPublished, platform: 'vm' }, 600);

    aAdmin = await freePort();
    const aBootstrap = await (await fetch(`${h.httpUrl}/bootstrap/a?node=a-1&app_port=${await freePort()}&admin_port=${aAdmin}`)).text();
    sidecarA = await startEnvoy(testcontainers, {
      bootstrap: aBootstrap,
      bootstrapFormat: 'yaml',
      certificateDir: dirA,
      network: { host: true },
    });

    await eventually(
      "b's inbound listener and a's cluster toward it",
      async () => {
        const listeners = await adminB('/listeners');
        const clusters = await adminA('/clusters');
        return listeners.includes('inbound|b') && clusters.includes(`outbound|b::127.0.0.1:${bPublished}`) ? true : undefined;
      },
      90_000,
    );
  });

  afterAll(async () => {
    await sidecarA?.stop();
    await sidecarB?.stop();
    await h?.stop();
    await new Promise((resolve) => app?.close(resolve));
    await new Promise((resolve) => (impostor ? impostor.close(resolve) : resolve(undefined)));
    if (workdir) await rm(workdir, { recursive: true, force: true });
  });

  it('both sidecars accept every resource, TLS contexts and SDS secrets included', async () => {
    for (const admin of [adminA, adminB]) {
      expect(await stat(admin, /update_rejected:/)).toBe(0);
      // Both secrets were read from the files (an SDS secret that failed would leave the context empty).
      expect(await admin('/certs')).toContain(`spiffe://${TRUST_DOMAIN}/svc/`);
    }
    for (const service of ['a', 'b']) {
      const [status] = await h.store.listProxyStatuses(service);
      expect(status?.types.lds?.lastNack).toBeUndefined();
      expect(status?.types.cds?.lastNack).toBeUndefined();
    }
  });

  it("carries a's calls to b over mTLS: b's certificate is checked against b's SPIFFE ID, a's admitted by network RBAC", async () => {
    const reply = await eventually(
      'a reply from b through both sidecars',
      async () => ((await plainExchange(bPort, 'ping\n', 'b:ping')).includes('b:ping') ? true : undefined),
      60_000,
    );
    expect(reply).toBe(true);
    expect(await stat(adminA, /^cluster\.outbound\|b\.ssl\.handshake:/)).toBeGreaterThan(0);
    expect(await stat(adminB, /\.ssl\.handshake:/)).toBeGreaterThan(0);
    expect(await stat(adminB, /inbound_b_rbac\.?rbac\.allowed:/)).toBeGreaterThan(0);
  });

  it('attack: plaintext straight to b’s sidecar gets nothing', async () => {
    expect(await plainExchange(bPublished, 'ping\n', 'b:ping')).not.toContain('b:');
  });

  it('attack: TLS without a client certificate gets nothing', async () => {
    expect(await tlsExchange(bPublished, undefined, ca.trustBundlePem, 'ping\n', 'b:ping')).not.toContain('b:');
  });

  it('attack: a valid mesh certificate of a service that did not declare b is refused by RBAC', async () => {
    const deniedBefore = await stat(adminB, /inbound_b_rbac\.?rbac\.denied:/);
    const c = await writeSidecarCertificates(join(workdir, 'c'), ca, 'c');
    expect(await tlsExchange(bPublished, c, ca.trustBundlePem, 'ping\n', 'b:ping')).not.toContain('b:');
    // The handshake passed (c's certificate is from the mesh CA): RBAC is what refused it.
    await eventually('the RBAC denial counted', async () =>
      (await stat(adminB, /inbound_b_rbac\.?rbac\.denied:/)) > deniedBefore ? true : undefined,
    );
    // The declared caller's own certificate, presented directly, is admitted: the refusal above is about who c is.
    const a = await writeSidecarCertificates(join(workdir, 'a-direct'), ca, 'a');
    expect(await tlsExchange(bPublished, a, ca.trustBundlePem, 'ping\n', 'b:ping')).toContain('b:ping');
  });

  it("attack: an endpoint of b presenting another service's certificate gets nothing from a's sidecar", async () => {
    const c = await writeSidecarCertificates(join(workdir, 'c-server'), ca, 'c');
    impostor = createTlsServer({ cert: c.certPem, key: c.keyPem }, (socket) =>
      socket.on('data', (chunk: Buffer) => {
        impostorBytes += chunk.length;
        socket.write(`b:${chunk.toString('utf8')}`);
      }),
    );
    await new Promise<void>((resolve) => impostor!.listen(0, '127.0.0.1', resolve));
    const impostorPort = (impostor.address() as AddressInfo).port;
    await h.store.deregisterInstance('b', 'b-1');
    await h.store.registerInstance({ service: 'b', id: 'b-evil', address: '127.0.0.1', port: impostorPort, platform: 'vm' }, 600);
    await eventually(
      "a's cluster to list only the impostor",
      async () => {
        const clusters = await adminA('/clusters');
        return clusters.includes(`outbound|b::127.0.0.1:${impostorPort}`) && !clusters.includes(`outbound|b::127.0.0.1:${bPublished}`)
          ? true
          : undefined;
      },
      60_000,
    );
    expect(await plainExchange(bPort, 'secret\n', 'b:secret')).not.toContain('b:');
    expect(impostorBytes).toBe(0);
    await eventually('the SAN mismatch counted', async () =>
      (await stat(adminA, /^cluster\.outbound\|b\.ssl\.fail_verify_san:/)) > 0 ? true : undefined,
    );
  });
});

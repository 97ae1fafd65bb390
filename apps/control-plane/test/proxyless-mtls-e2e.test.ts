// End to end: mTLS between proxyless gRPC services (grpc-js-xds, each in its own
// process) configured by the real control plane, with SPIFFE certificates from
// the mesh CA (@trellis/pki's MeshCa) written as the agent writes them. A calls B
// all along; nothing A sends may fail while B moves from permissive to strict,
// while both renew their certificates, and while the CA rotates to a new root.
import { spawn, type ChildProcess } from 'node:child_process';
import { connect as connectTcp, createServer, type AddressInfo, type Socket } from 'node:net';
import { connect, type PeerCertificate } from 'node:tls';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, status, type ServiceError } from '@grpc/grpc-js';
import { generateRootCa, generateWorkloadKey, MeshCa, type RootCa } from '@trellis/pki';
import { certificateFilesIn, proxylessBootstrap, writeCertificateFiles, type CertificateFiles } from '@trellis/sdk-node';
import { socketClosed } from '@trellis/testing';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';
import { WhoService } from './support/who-service';
import { bundle, XdsClientProcess, type CallResult } from './support/xds-client-process';

jest.setTimeout(240_000);

const TRUST_DOMAIN = 'trellis.local'; // the harness's mesh/settings has none: the default

const ROOT_DIR = join(__dirname, '../../..');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Short TLS deadlines for b (the SDK's TRELLIS_TLS_* settings), so the attack below ends in seconds. */
const B_TLS_LIMITS = { TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS: '5000', TRELLIS_HTTP2_PREFACE_TIMEOUT_MS: '5000' };

interface WhoServer {
  child: ChildProcess;
  /** Each connection b's TLS limits closed, by reason, as b reports them. */
  tlsRefused: string[];
}

/** The proxyless Who server for service b in its own process; resolves once its control-plane listener is in force. */
async function startWhoServer(xdsAddress: string, instanceId: string, port: number, certificates: CertificateFiles): Promise<WhoServer> {
  const script = await bundle('xds-who-server');
  const bootstrap = proxylessBootstrap({
    xdsServer: xdsAddress,
    service: 'b',
    nodeId: instanceId,
    certificates,
    refreshIntervalSeconds: 1,
  });
  const child = spawn(process.execPath, [script, instanceId, `127.0.0.1:${port}`], {
    cwd: ROOT_DIR,
    env: { ...process.env, ...B_TLS_LIMITS, GRPC_XDS_BOOTSTRAP_CONFIG: JSON.stringify(bootstrap), GRPC_XDS_EXPERIMENTAL_RBAC: 'true' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const tlsRefused: string[] = [];
  let serving = false;
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      const event = JSON.parse(line) as { serving?: number; tlsRefused?: string };
      if (event.serving !== undefined) serving = true;
      if (event.tlsRefused) tlsRefused.push(event.tlsRefused);
    }
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`b's XdsServer did not start serving: ${stderr}`)), 60_000);
    const poll = setInterval(() => {
      if (!serving) return;
      clearTimeout(timer);
      clearInterval(poll);
      resolve();
    }, 50);
    child.once('exit', (code) => {
      clearTimeout(timer);
      clearInterval(poll);
      reject(new Error(`b's XdsServer exited (${code}): ${stderr}`));
    });
  });
  return { child, tlsRefused };
}

type Who = { who(req: Buffer, opts: { deadline: number }, cb: (err: ServiceError | null, res?: Buffer) => void): void; close(): void };
const WhoClient = makeGenericClientConstructor(WhoService, 'Who');

/** One call straight to b's address (no xDS): what an outsider on the network can do. */
async function callDirect(
  port: number,
  tls: { ca: string; key?: string; cert?: string } | 'plaintext',
): Promise<{ ok: true; answer: string } | { ok: false; code: number }> {
  const creds =
    tls === 'plaintext'
      ? credentials.createInsecure()
      : credentials.createSsl(
          Buffer.from(tls.ca),
          tls.key ? Buffer.from(tls.key) : null,
          tls.cert ? Buffer.from(tls.cert) : null,
          // Any mesh certificate will do for this probe; the identity check is the server's side here.
          { checkServerIdentity: () => undefined },
        );
  // No server identity is checked; over TLS the name is SNI only, and an IP there is deprecated (DEP0123).
  const client = new WhoClient(`127.0.0.1:${port}`, creds, { 'grpc.ssl_target_name_override': 'localhost' }) as unknown as Who;
  try {
    return await new Promise((resolve) =>
      client.who(Buffer.alloc(0), { deadline: Date.now() + 5_000 }, (err, res) =>
        resolve(err ? { ok: false, code: err.code } : { ok: true, answer: res!.toString() }),
      ),
    );
  } finally {
    client.close();
  }
}

/** The serial of the certificate b's server presents right now (undefined while it does not verify against `ca`). */
async function servedSerial(port: number, ca: string): Promise<string | undefined> {
  return (await servedCertificate(port, ca).catch(() => undefined))?.serialNumber;
}

function servedCertificate(port: number, ca: string): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }, () => {
      resolve(socket.getPeerCertificate());
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/** A TCP connection to b that sends nothing. */
function tcpConnection(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectTcp(port, '127.0.0.1');
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** A connection through its TLS handshake with b (ALPN h2, no client certificate) that then sends nothing. */
function handshakenConnection(port: number, ca: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }, () =>
      resolve(socket),
    );
    socket.once('error', reject);
  });
}

describe('proxyless mTLS (grpc-js-xds) with mesh CA certificates', () => {
  let h: ControlPlaneHarness;
  let dir: string;
  let rootA: RootCa;
  let caA: MeshCa;
  let port: number;
  let b: WhoServer | undefined;
  let a: XdsClientProcess | undefined;
  const files = (name: string) => certificateFilesIn(join(dir, name));

  /** What the agent does: a fresh key, a CSR, the CA's certificate and bundle, written atomically. */
  async function issue(
    name: string,
    service: string,
    ca: MeshCa,
    bundle = ca.trustBundlePem,
  ): Promise<{ key: string; cert: string; serial: string }> {
    const key = await generateWorkloadKey(service);
    const issued = await ca.issue(key.csrPem, service);
    await writeCertificateFiles(join(dir, name), {
      certificateChainPem: issued.chainPem,
      privateKeyPem: key.keyPem,
      trustBundlePem: bundle,
    });
    return { key: key.keyPem, cert: issued.chainPem, serial: issued.serialNumber.toUpperCase() };
  }

  const setMode = async (mtls: 'off' | 'permissive' | 'strict') => {
    const current = (await h.store.getService('b'))!.value.spec;
    await h.store.updateService({ ...current, mtls }, 'test');
  };
  const failuresSince = (t: number): CallResult[] => a!.results.filter((r) => r.t >= t && !r.ok);

  beforeAll(async () => {
    h = await startControlPlaneHarness();
    dir = await mkdtemp(join(tmpdir(), 'trellis-mtls-e2e-'));
    rootA = await generateRootCa({ commonName: 'root A' });
    caA = await MeshCa.load(rootA, { trustDomain: TRUST_DOMAIN, lifetimeSeconds: 3_600 });
    port = await freePort();
    await h.store.createService({ name: 'b', team: 'core', protocol: 'grpc', port, mtls: 'permissive' }, 'test');
    await h.store.createService({ name: 'a', team: 'core', protocol: 'grpc', port: 50052, dependencies: [{ service: 'b' }] }, 'test');
    await h.store.createService({ name: 'c', team: 'core', protocol: 'grpc', port: 50053 }, 'test');
    await issue('b', 'b', caA);
    await issue('a', 'a', caA);
    b = await startWhoServer(h.xdsAddress, 'b-1', port, files('b'));
    await h.store.registerInstance({ service: 'b', id: 'b-1', address: '127.0.0.1', port, platform: 'vm' }, 60);
    a = await XdsClientProcess.start({
      xdsAddress: h.xdsAddress,
      service: 'a',
      nodeId: 'a-1',
      target: 'b',
      certificates: files('a'),
      intervalMs: 20,
    });
  });
  afterAll(async () => {
    await a?.stop();
    if (b && b.child.exitCode === null) {
      const exited = new Promise((resolve) => b!.child.once('exit', resolve));
      b.child.kill('SIGTERM');
      await exited;
    }
    await h?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('A calls B over mTLS and B sees A by its certificate', async () => {
    await a!.waitFor(
      '20 calls answered by b-1 naming caller a',
      0,
      (rs) => {
        const good = rs.filter((r) => r.ok && r.instance === 'b-1' && r.caller === 'a');
        return good.length >= 20 ? good[0] : undefined;
      },
      60_000,
    );
  });

  it("attack: silent connections to B's TLS port are closed after its deadlines, while A and a new mTLS call are served", async () => {
    const t0 = Date.now();
    const ca = rootA.certificatePem;
    const refusedBefore = b!.tlsRefused.length;
    // Three TCP connections that never start a TLS handshake, one through it that never sends the HTTP/2 preface.
    const silent = await Promise.all([1, 2, 3].map(() => tcpConnection(port)));
    const quiet = await handshakenConnection(port, ca);
    const gone = Promise.all([...silent, quiet].map((socket) => socketClosed(socket, 60_000)));
    // While they hold their sockets, a new connection is served (permissive: TLS without a client certificate).
    expect(await callDirect(port, { ca })).toEqual({ ok: true, answer: 'b-1|' });
    await gone;
    await eventually(
      'b to report the four connections its TLS limits closed',
      () => (b!.tlsRefused.length - refusedBefore >= 4 ? true : undefined),
      60_000,
    );
    expect(b!.tlsRefused.slice(refusedBefore).sort()).toEqual([
      'handshake_timeout',
      'handshake_timeout',
      'handshake_timeout',
      'preface_timeout',
    ]);
    expect(failuresSince(t0)).toEqual([]);
  });

  it('permissive admits a client without a certificate; strict refuses it — and A loses no call over the switch', async () => {
    const ca = rootA.certificatePem;
    // Permissive: TLS without a client certificate is admitted (it has no verified caller).
    expect(await callDirect(port, { ca })).toEqual({ ok: true, answer: 'b-1|' });
    // Plaintext is not: a proxyless server cannot sniff TLS (grpc-js-xds has no tls_inspector).
    expect((await callDirect(port, 'plaintext')).ok).toBe(false);

    const switched = Date.now();
    await setMode('strict');
    await eventually(
      'a client without a certificate to be refused',
      async () => ((await callDirect(port, { ca })).ok ? undefined : true),
      60_000,
    );
    // c holds a valid mesh certificate but never declared b: RBAC refuses it by principal.
    const c = await issue('c', 'c', caA);
    const asC = await callDirect(port, { ca, key: c.key, cert: c.cert });
    expect(asC).toEqual({ ok: false, code: status.PERMISSION_DENIED });
    // A keeps going: 50 more good calls after strict is in force, and not one failure since the switch.
    const afterStrict = Date.now();
    await a!.waitFor('50 calls after strict', afterStrict, (rs) => (rs.filter((r) => r.ok).length >= 50 ? rs[0] : undefined), 60_000);
    expect(failuresSince(switched)).toEqual([]);
  });

  it('renewing both certificates mid-traffic fails no call', async () => {
    const t0 = Date.now();
    const renewedB = await issue('b', 'b', caA);
    await issue('a', 'a', caA);
    await eventually(
      'b to serve its renewed certificate',
      async () => ((await servedSerial(port, rootA.certificatePem)) === renewedB.serial ? true : undefined),
      60_000,
    );
    const after = Date.now();
    await a!.waitFor(
      '50 calls after renewal',
      after,
      (rs) => (rs.filter((r) => r.ok && r.caller === 'a').length >= 50 ? rs[0] : undefined),
      60_000,
    );
    expect(failuresSince(t0)).toEqual([]);
  });

  it('rotating the CA through a two-root bundle fails no call', async () => {
    const t0 = Date.now();
    const rootB = await generateRootCa({ commonName: 'root B' });
    const both = `${rootA.certificatePem}${rootB.certificatePem}`;
    const caAboth = await MeshCa.load({ ...rootA, trustBundlePem: both }, { trustDomain: TRUST_DOMAIN, lifetimeSeconds: 3_600 });
    const caB = await MeshCa.load({ ...rootB, trustBundlePem: both }, { trustDomain: TRUST_DOMAIN, lifetimeSeconds: 3_600 });
    const settle = async (what: string) => {
      const since = Date.now();
      await a!.waitFor(`30 calls after ${what}`, since, (rs) => (rs.filter((r) => r.ok).length >= 30 ? rs[0] : undefined), 60_000);
    };
    // 1. Everyone trusts both roots (certificates still from root A).
    await issue('a', 'a', caAboth);
    const bBoth = await issue('b', 'b', caAboth);
    await eventually(
      'b to serve with the two-root bundle',
      async () => ((await servedSerial(port, rootA.certificatePem)) === bBoth.serial ? true : undefined),
      60_000,
    );
    await settle('both roots trusted');
    // 2. b moves to a root-B certificate while a still holds a root-A one, then a moves too.
    const bNew = await issue('b', 'b', caB);
    await eventually(
      'b to serve a root-B certificate',
      async () => ((await servedSerial(port, both)) === bNew.serial ? true : undefined),
      60_000,
    );
    await settle('b on root B');
    await issue('a', 'a', caB);
    await settle('a on root B');
    // 3. Root A leaves the bundle.
    const caBonly = await MeshCa.load(rootB, { trustDomain: TRUST_DOMAIN, lifetimeSeconds: 3_600 });
    await issue('a', 'a', caBonly);
    const bFinal = await issue('b', 'b', caBonly);
    await eventually(
      'b to serve with root B only',
      async () => ((await servedSerial(port, both)) === bFinal.serial ? true : undefined),
      60_000,
    );
    await settle('root A retired');
    expect(failuresSince(t0)).toEqual([]);
    // A client holding a root-A certificate no longer gets in.
    const stale = await issue('stale', 'a', caA);
    await eventually(
      'a root-A certificate to be refused',
      async () => ((await callDirect(port, { ca: rootB.certificatePem, key: stale.key, cert: stale.cert })).ok ? undefined : true),
      60_000,
    );
  });

  it('sent only resources that decode with the generated types and satisfy validate.rules', () => {
    expect(h.emitted.checked).toBeGreaterThan(5);
    expect(h.emitted.problems).toEqual([]);
  });
});

// Attacks on authz's TLS ports before any request is read, against a real authz (etcd, Redis,
// the mesh CA, the Check worker owning the ext_authz port, production defaults): sockets that
// never finish the handshake (silent, or trickling a ClientHello), that finish it and never
// send the HTTP/2 preface, and floods over the cap of pending connections. Each is closed well
// before Node's default 120 s and counted; a sidecar's Checks are answered meanwhile. After them, on
// an authz with a small idle limit (gRFC A9): a connection through its handshake and preface that
// makes no call is closed, where keepalive (which it answers) kept it before; a sidecar whose
// connection idled out gets its next Check answered on a new one.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectivityState, credentials, Metadata } from '@grpc/grpc-js';
import { AuthorizationClient, type CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { componentSpiffeIdOf, KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { generateRootCa, generateWorkloadKey, spiffeServerIdentityCheck, type RootCa } from '@trellis/pki';
import {
  eventually,
  openHttp2Session,
  socketClosed,
  startEtcd,
  startRedis,
  startSlowLoris,
  type TestEtcd,
  type TestRedis,
} from '@trellis/testing';
import {
  checkRequest,
  counterValue,
  KeyDir,
  okHeaders,
  operatorCaEnv,
  outbound,
  startTestAuthz,
  type StartedAuthz,
} from './support/harness';

jest.setTimeout(180_000);

const TRUST_DOMAIN = 'shop.example';
const SECRET = 'service-a-secret-0123456789';
const MAX_PENDING = 20;

describe('authz: TLS ports under attacks before any request', () => {
  let etcd: TestEtcd;
  let redis: TestRedis;
  let keys: KeyDir;
  let dir: string;
  let root: RootCa;
  let a: StartedAuthz;
  let certificate: { keyPem: string; chainPem: string };
  const clients: AuthorizationClient[] = [];
  const sockets: Socket[] = [];

  /** A sidecar of service-a: its own connection (a fresh channel) to the ext_authz port with its workload certificate. */
  function sidecar(port = a.authz.grpcPort): AuthorizationClient {
    const client = new AuthorizationClient(
      `127.0.0.1:${port}`,
      credentials.createSsl(Buffer.from(root.certificatePem), Buffer.from(certificate.keyPem), Buffer.from(certificate.chainPem), {
        checkServerIdentity: spiffeServerIdentityCheck(componentSpiffeIdOf(TRUST_DOMAIN, 'authz')),
      }),
      // The SPIFFE pin checks the server; the name is only SNI, and an IP there is deprecated (DEP0123).
      { 'grpc.use_local_subchannel_pool': 1, 'grpc.ssl_target_name_override': 'localhost' },
    );
    clients.push(client);
    return client;
  }
  const check = (client: AuthorizationClient) =>
    new Promise<CheckResponse>((resolve, reject) =>
      client.check(checkRequest(outbound('service-a', 'service-b')), new Metadata(), { deadline: Date.now() + 30_000 }, (err, response) =>
        err ? reject(err) : resolve(response!),
      ),
    );
  const refused = (port: string, reason: string) => counterValue(a.authz, 'trellis_authz_tls_connections_refused_total', { port, reason });
  /** Resolves once `port` has refused at least `count` connections for `reason` (the server accepts after the client connects). */
  async function refusedAtLeast(port: string, reason: string, count: number): Promise<void> {
    let seen = 0;
    await eventually(
      `${port} to refuse ${count} connections for ${reason}`,
      async () => (seen = await refused(port, reason)) >= count,
      60_000,
      {
        diagnose: () => `it refused ${seen}`,
      },
    );
  }
  const closed = (socket: Socket) => socketClosed(socket);
  const silent = (port: number) =>
    new Promise<Socket>((resolve, reject) => {
      const socket = connectTcp(port, '127.0.0.1', () => resolve(socket));
      sockets.push(socket);
      socket.once('error', reject);
    });
  /** Through the mTLS handshake with service-a's certificate (ALPN h2 on the gRPC port), then not a byte. */
  const handshaken = (port = a.authz.grpcPort) =>
    new Promise<Socket>((resolve, reject) => {
      const socket = connectTls(
        {
          host: '127.0.0.1',
          port,
          ca: root.certificatePem,
          key: certificate.keyPem,
          cert: certificate.chainPem,
          ...(port === a.authz.grpcPort ? { ALPNProtocols: ['h2'] } : {}),
          checkServerIdentity: spiffeServerIdentityCheck(componentSpiffeIdOf(TRUST_DOMAIN, 'authz')),
        },
        () => resolve(socket),
      );
      sockets.push(socket);
      socket.once('error', reject);
    });

  beforeAll(async () => {
    [etcd, redis, keys] = await Promise.all([startEtcd(), startRedis(), KeyDir.create()]);
    await keys.addKey('first');
    dir = await mkdtemp(join(tmpdir(), 'authz-tls-limits-'));
    root = await generateRootCa({ commonName: 'operator root' });
    await writeFile(join(dir, 'ca.crt'), root.certificatePem);
    await writeFile(join(dir, 'ca.key'), root.keyPem, { mode: 0o600 });
    await writeFile(join(dir, 'bundle.crt'), root.certificatePem);
    await writeFile(join(dir, 'callers'), `service-a:${SECRET}\n`);
    const store = new MeshStore(etcd.client(), new KeyLayout(etcd.prefix));
    const base = { team: 'shop', protocol: 'http' as const, port: 8080 };
    await store.createService({ ...base, name: 'service-a', dependencies: [{ service: 'service-b' }] }, 'test');
    await store.createService({ ...base, name: 'service-b' }, 'test');
    a = await startTestAuthz(etcd, redis, keys, {
      ...operatorCaEnv(dir, TRUST_DOMAIN),
      TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS: '5000',
      TRELLIS_HTTP2_PREFACE_TIMEOUT_MS: '5000',
      TRELLIS_TLS_MAX_PENDING_CONNECTIONS: String(MAX_PENDING),
      TRELLIS_HTTP_HEADERS_TIMEOUT_MS: '5000',
    });
    const key = await generateWorkloadKey('service-a');
    const res = await fetch(`http://127.0.0.1:${a.authz.httpPort}/v1/certificate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`service-a:${SECRET}`).toString('base64')}` },
      body: JSON.stringify({ csr: key.csrPem }),
    });
    expect(res.status).toBe(200);
    certificate = { keyPem: key.keyPem, chainPem: ((await res.json()) as { certificateChain: string }).certificateChain };
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    for (const socket of sockets) socket.destroy();
    await a?.stop();
    await Promise.all([etcd?.stop(), redis?.stop(), keys?.remove(), dir && rm(dir, { recursive: true, force: true })]);
  });

  it('the ext_authz port closes silent, trickling and preface-less connections, and answers Checks meanwhile', async () => {
    const quiet = await Promise.all([silent(a.authz.grpcPort), silent(a.authz.grpcPort), handshaken(), handshaken()]);
    const loris = await startSlowLoris({ port: a.authz.grpcPort, sockets: 4, mode: 'tls-handshake', intervalMs: 200 });
    try {
      expect(okHeaders(await check(sidecar()))['authorization']).toMatch(/^Bearer /);
      await Promise.all(quiet.map(closed));
      await loris.allClosed(60_000);
    } finally {
      loris.stop();
    }
    expect(await refused('grpc', 'handshake_timeout')).toBeGreaterThanOrEqual(6);
    expect(await refused('grpc', 'preface_timeout')).toBeGreaterThanOrEqual(2);
  });

  it('the ext_authz port closes connections over the cap at accept; a sidecar connected before keeps its Checks answered', async () => {
    const before = sidecar();
    expect(okHeaders(await check(before))['authorization']).toMatch(/^Bearer /);
    const loris = await startSlowLoris({ port: a.authz.grpcPort, sockets: MAX_PENDING * 3, mode: 'tls-handshake' });
    try {
      await refusedAtLeast('grpc', 'too_many_pending', MAX_PENDING);
      expect(okHeaders(await check(before))['authorization']).toMatch(/^Bearer /);
      await loris.allClosed(60_000);
    } finally {
      loris.stop();
    }
    expect(okHeaders(await check(sidecar()))['authorization']).toMatch(/^Bearer /); // the flood is over: a new sidecar connects
  });

  it('the mTLS token port closes a flood over the cap at accept, and the rest at the handshake deadline', async () => {
    const loris = await startSlowLoris({ port: a.authz.mtlsPort!, sockets: MAX_PENDING * 3, mode: 'tls-handshake' });
    try {
      await refusedAtLeast('mtls', 'too_many_pending', MAX_PENDING);
      await loris.allClosed(60_000);
    } finally {
      loris.stop();
    }
    expect(await refused('mtls', 'handshake_timeout')).toBeGreaterThanOrEqual(1);
  });

  it('the mTLS token port closes a connection that finishes its handshake and never sends a request', async () => {
    await closed(await handshaken(a.authz.mtlsPort!));
  });
  describe('with an idle limit on the ext_authz port', () => {
    const IDLE_MS = 1_000;
    let idle: StartedAuthz;
    beforeAll(async () => {
      // A second replica on the same etcd, Redis and CA, with the limit small.
      idle = await startTestAuthz(etcd, redis, keys, {
        ...operatorCaEnv(dir, TRUST_DOMAIN),
        TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS: String(IDLE_MS),
      });
    });
    afterAll(() => idle?.stop());

    it('closes a connection through its handshake and HTTP/2 preface that makes no call (GOAWAY NO_ERROR)', async () => {
      const { session, goaways } = await openHttp2Session(`https://127.0.0.1:${idle.authz.grpcPort}`, {
        ca: root.certificatePem,
        key: certificate.keyPem,
        cert: certificate.chainPem,
        checkServerIdentity: spiffeServerIdentityCheck(componentSpiffeIdOf(TRUST_DOMAIN, 'authz')),
      });
      try {
        await eventually('the idle connection to be closed', () => session.closed || session.destroyed, 60_000);
        expect(goaways[0]).toMatchObject({ code: 0 });
      } finally {
        session.destroy();
      }
    });

    it("answers a sidecar's Check on a new connection once its last one idled out", async () => {
      const client = sidecar(idle.authz.grpcPort);
      expect(okHeaders(await check(client))['authorization']).toMatch(/^Bearer /);
      await eventually(
        'the idle connection to be closed',
        () => client.getChannel().getConnectivityState(false) !== connectivityState.READY,
        60_000,
      );
      expect(okHeaders(await check(client))['authorization']).toMatch(/^Bearer /);
    });
  });
});

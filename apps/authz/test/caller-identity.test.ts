// Who may ask authz for a token, in the production defaults (no
// TRELLIS_ALLOW_INSECURE_CALLERS), against a real etcd and Redis and authz's
// real gRPC port: the caller's identity is the client certificate of the mTLS
// connection, never what the request says. Attacks performed: a process with
// no certificate, with a plaintext connection, with a certificate of another
// CA, and with service-c's certificate claiming trellis.source=service-a.
import { X509Certificate } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { decodeJwt } from 'jose';
import { AuthorizationClient, type CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { componentSpiffeIdOf, KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { generateRootCa, generateWorkloadKey, MeshCa, spiffeServerIdentityCheck, type RootCa } from '@trellis/pki';
import { startEtcd, startRedis, startSlowLoris, type TestEtcd, type TestRedis } from '@trellis/testing';
import {
  checkRequest,
  counterValue,
  deniedReason,
  KeyDir,
  okHeaders,
  operatorCaEnv,
  outbound,
  startTestAuthz,
  type DeepCheck,
  type StartedAuthz,
} from './support/harness';

const TRUST_DOMAIN = 'shop.example';
const SECRETS = { 'service-a': 'service-a-secret-0123456789', 'service-c': 'service-c-secret-0123456789' } as const;

interface ClientCertificate {
  keyPem: string;
  chainPem: string;
}

describe('authz: the caller is the client certificate (production defaults)', () => {
  let etcd: TestEtcd;
  let redis: TestRedis;
  let keys: KeyDir;
  let dir: string;
  let root: RootCa;
  let a: StartedAuthz;
  const clients: AuthorizationClient[] = [];

  /** A certificate from authz's mesh CA, obtained the way an agent does: a CSR and the service credential. */
  async function workloadCertificate(service: keyof typeof SECRETS): Promise<ClientCertificate> {
    const key = await generateWorkloadKey(service);
    const res = await fetch(`http://127.0.0.1:${a.authz.httpPort}/v1/certificate`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from(`${service}:${SECRETS[service]}`).toString('base64')}`,
      },
      body: JSON.stringify({ csr: key.csrPem }),
    });
    expect(res.status).toBe(200);
    return { keyPem: key.keyPem, chainPem: ((await res.json()) as { certificateChain: string }).certificateChain };
  }

  /** An ext_authz client over TLS that trusts `bundle` and pins authz's SPIFFE ID; with a client certificate when given. */
  function tlsClient(bundle: string, certificate?: ClientCertificate): AuthorizationClient {
    const channel = credentials.createSsl(
      Buffer.from(bundle),
      certificate ? Buffer.from(certificate.keyPem) : null,
      certificate ? Buffer.from(certificate.chainPem) : null,
      { checkServerIdentity: spiffeServerIdentityCheck(componentSpiffeIdOf(TRUST_DOMAIN, 'authz')) },
    );
    // The SPIFFE pin checks the server; the name is only SNI, and an IP there is deprecated (DEP0123).
    const client = new AuthorizationClient(`127.0.0.1:${a.authz.grpcPort}`, channel, { 'grpc.ssl_target_name_override': 'localhost' });
    clients.push(client);
    return client;
  }

  function check(client: AuthorizationClient, request: DeepCheck): Promise<CheckResponse> {
    return new Promise((resolve, reject) =>
      client.check(checkRequest(request), new Metadata(), { deadline: Date.now() + 30_000 }, (err, response) =>
        err ? reject(err) : resolve(response!),
      ),
    );
  }

  /** POST /v1/token on authz's mTLS port, with a client certificate when given. */
  function tokenOverMtls(
    audience: string,
    certificate?: ClientCertificate,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: a.authz.mtlsPort,
          path: '/v1/token',
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          ca: root.certificatePem,
          ...(certificate ? { key: certificate.keyPem, cert: certificate.chainPem } : {}),
          checkServerIdentity: spiffeServerIdentityCheck(componentSpiffeIdOf(TRUST_DOMAIN, 'authz')),
          agent: false,
          timeout: 30_000,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ audience }));
    });
  }

  /** POST /v1/token on the plain HTTP port with the service credential alone. */
  const tokenWithCredential = (service: keyof typeof SECRETS, audience: string) =>
    fetch(`http://127.0.0.1:${a.authz.httpPort}/v1/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from(`${service}:${SECRETS[service]}`).toString('base64')}`,
      },
      body: JSON.stringify({ audience }),
    });

  beforeAll(async () => {
    [etcd, redis, keys] = await Promise.all([startEtcd(), startRedis(), KeyDir.create()]);
    await keys.addKey('first');
    dir = await mkdtemp(join(tmpdir(), 'authz-callers-'));
    root = await generateRootCa({ commonName: 'operator root' });
    await writeFile(join(dir, 'ca.crt'), root.certificatePem);
    await writeFile(join(dir, 'ca.key'), root.keyPem, { mode: 0o600 });
    await writeFile(join(dir, 'bundle.crt'), root.certificatePem);
    await writeFile(
      join(dir, 'callers'),
      Object.entries(SECRETS)
        .map(([s, secret]) => `${s}:${secret}\n`)
        .join(''),
    );
    const store = new MeshStore(etcd.client(), new KeyLayout(etcd.prefix));
    const base = { team: 'shop', protocol: 'http' as const, port: 8080 };
    await store.createService({ ...base, name: 'service-a', dependencies: [{ service: 'service-b' }] }, 'test');
    await store.createService({ ...base, name: 'service-b' }, 'test');
    await store.createService({ ...base, name: 'service-c' }, 'test');
    await store.createService({ ...base, name: 'shop', ingress: { host: 'shop.example.com', pathPrefix: '/' } }, 'test');
    // The production default: no insecure callers.
    a = await startTestAuthz(etcd, redis, keys, operatorCaEnv(dir, TRUST_DOMAIN));
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await a?.stop();
    await Promise.all([etcd?.stop(), redis?.stop(), keys?.remove(), dir && rm(dir, { recursive: true, force: true })]);
  });

  it("serves a certificate of authz's own identity, from the mesh CA", () => {
    const served = new X509Certificate(a.authz.tls!.material.certificateChainPem);
    expect(served.subjectAltName).toBe(`URI:spiffe://${TRUST_DOMAIN}/trellis/authz`);
    expect(served.checkIssued(new X509Certificate(root.certificatePem))).toBe(true);
  });

  it('attack: a process with no client certificate gets no token (the handshake is refused)', async () => {
    const before = await counterValue(a.authz, 'trellis_authz_tokens_minted_total');
    const err = (await check(tlsClient(root.certificatePem), outbound('service-a', 'service-b')).catch((e: unknown) => e)) as ServiceError;
    expect(err.code).toBe(status.UNAVAILABLE);
    // Plaintext does not even reach the Check.
    const plain = new AuthorizationClient(`127.0.0.1:${a.authz.grpcPort}`, credentials.createInsecure());
    clients.push(plain);
    expect(((await check(plain, outbound('service-a', 'service-b')).catch((e: unknown) => e)) as ServiceError).code).toBe(
      status.UNAVAILABLE,
    );
    expect(await counterValue(a.authz, 'trellis_authz_tokens_minted_total')).toBe(before);
  });

  it("attack: a certificate for service-a from another CA is refused (it does not chain to the mesh's roots)", async () => {
    const other = await generateRootCa({ commonName: 'attacker root' });
    const otherCa = await MeshCa.load(
      { certificatePem: other.certificatePem, keyPem: other.keyPem },
      { trustDomain: TRUST_DOMAIN, lifetimeSeconds: 3600 },
    );
    const key = await generateWorkloadKey('service-a');
    const forged = { keyPem: key.keyPem, chainPem: (await otherCa.issue(key.csrPem, 'service-a')).chainPem };
    const err = (await check(tlsClient(root.certificatePem, forged), outbound('service-a', 'service-b')).catch(
      (e: unknown) => e,
    )) as ServiceError;
    expect(err.code).toBe(status.UNAVAILABLE);
  });

  it("attack: service-c's certificate claiming trellis.source=service-a is denied and counted", async () => {
    const client = tlsClient(root.certificatePem, await workloadCertificate('service-c'));
    const response = await check(client, outbound('service-a', 'service-b'));
    expect(deniedReason(response)).toEqual({ code: status.PERMISSION_DENIED, http: 403, reason: 'source-mismatch' });
    expect(
      await counterValue(a.authz, 'trellis_authz_caller_identity_denials_total', { direction: 'outbound', reason: 'source-mismatch' }),
    ).toBe(1);
    expect(await counterValue(a.authz, 'trellis_authz_checks_total', { direction: 'outbound', reason: 'source-mismatch' })).toBe(1);
    // As itself, service-c has declared nothing: still no service-b token.
    expect(deniedReason(await check(client, outbound('service-c', 'service-b'))).reason).toBe('undeclared');
  });

  it("service-a's certificate gets the service-a→service-b token", async () => {
    const response = await check(
      tlsClient(root.certificatePem, await workloadCertificate('service-a')),
      outbound('service-a', 'service-b'),
    );
    const token = okHeaders(response)['authorization']!.replace(/^Bearer /, '');
    expect(decodeJwt(token)).toMatchObject({ sub: 'service-a', aud: 'service-b' });
  });

  describe('POST /v1/token', () => {
    it('attack: a process with no client certificate gets no token on the mTLS port (the handshake is refused)', async () => {
      await expect(tokenOverMtls('service-b')).rejects.toThrow();
      await expect(tokenOverMtls('trellis-xds')).rejects.toThrow();
    });

    it('attack: the service credential alone buys no token, of any audience, on the plain port', async () => {
      for (const audience of ['service-b', 'trellis-xds']) {
        const res = await tokenWithCredential('service-a', audience);
        expect(res.status).toBe(401);
        expect(res.headers.get('content-type')).toContain('application/problem+json');
        expect(await res.json()).toMatchObject({ type: 'https://trellis.dev/problems/certificate-required' });
      }
      expect(
        await counterValue(a.authz, 'trellis_authz_caller_identity_denials_total', { direction: 'token', reason: 'credential-only' }),
      ).toBe(2);
    });

    it("attack: service-c's certificate with service-a's credential gets only what service-c may have", async () => {
      const serviceC = await workloadCertificate('service-c');
      const basic = `Basic ${Buffer.from(`service-a:${SECRETS['service-a']}`).toString('base64')}`;
      const res = await tokenOverMtls('service-b', serviceC, { authorization: basic });
      expect(res.status).toBe(403);
      expect(res.body).toMatchObject({ reason: 'undeclared' });
      // Its own xDS token says service-c, whatever else the request carries.
      const xds = await tokenOverMtls('trellis-xds', serviceC, { authorization: basic });
      expect(decodeJwt(String(xds.body['token']))).toMatchObject({ sub: 'service-c', aud: 'trellis-xds' });
    });

    it("service-a's certificate gets its tokens", async () => {
      const res = await tokenOverMtls('service-b', await workloadCertificate('service-a'));
      expect(res.status).toBe(200);
      expect(decodeJwt(String(res.body['token']))).toMatchObject({ sub: 'service-a', aud: 'service-b' });
    });
  });

  it('attack (#12 point 9): 400 sockets trickling a TLS ClientHello at the mTLS token port are closed; tokens are still issued', async () => {
    // Before any HTTP is read, so only the TLS handshake timeout applies (Node's own default is 120 s).
    const loris = await startSlowLoris({ port: a.authz.mtlsPort!, sockets: 400, mode: 'tls-handshake' });
    try {
      await loris.allClosed(60_000);
    } finally {
      loris.stop();
    }
    expect((await tokenOverMtls('service-b', await workloadCertificate('service-a'))).status).toBe(200);
  }, 90_000);

  it("edge Checks come from the edge proxy's certificate, or from the destination's own sidecar", async () => {
    const ca = a.authz.ca!.ca;
    const key = await generateWorkloadKey('edge');
    const edgeProxy = tlsClient(root.certificatePem, {
      keyPem: key.keyPem,
      chainPem: (await ca.issueComponent(key.csrPem, 'edge')).chainPem,
    });
    const edgeCheck: DeepCheck = {
      context: { 'trellis.direction': 'edge', 'trellis.destination': 'shop' },
      host: 'shop.example.com',
      path: '/',
    };
    expect(okHeaders(await check(edgeProxy, edgeCheck))).toBeDefined();
    const serviceC = tlsClient(root.certificatePem, await workloadCertificate('service-c'));
    expect(deniedReason(await check(serviceC, edgeCheck)).reason).toBe('edge-peer-not-allowed');
  });

  it('follows a CA rotation: a second root in the trust bundle admits certificates it signed, after a reload', async () => {
    const next = await generateRootCa({ commonName: 'next root' });
    const nextCa = await MeshCa.load(
      { certificatePem: next.certificatePem, keyPem: next.keyPem },
      { trustDomain: TRUST_DOMAIN, lifetimeSeconds: 3600 },
    );
    const key = await generateWorkloadKey('service-a');
    const fromNext = { keyPem: key.keyPem, chainPem: (await nextCa.issue(key.csrPem, 'service-a')).chainPem };
    const bundle = `${root.certificatePem}${next.certificatePem}`;
    await writeFile(join(dir, 'bundle.crt'), bundle);
    await a.authz.ca!.reload();
    await a.authz.tls!.refresh();
    expect(a.authz.tls!.material.clientCaPem).toBe(a.authz.ca!.ca.trustBundlePem);
    const response = await check(tlsClient(bundle, fromNext), outbound('service-a', 'service-b'));
    expect(decodeJwt(okHeaders(response)['authorization']!.replace(/^Bearer /, ''))).toMatchObject({ sub: 'service-a' });
  });
});

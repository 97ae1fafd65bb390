// The mesh CA end to end against a real etcd and Redis: a VM proves its service
// with its credential, a pod with a projected ServiceAccount token checked
// against a (local) cluster JWKS; every issued certificate is checked with
// Node's X509Certificate. Attacks: a wrong secret, another service's name, a
// token for another audience or signed by another key, a ServiceAccount the
// record does not name.
import { createServer, type Server } from 'node:http';
import { generateKeyPairSync, webcrypto, X509Certificate } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { generateRootCa, generateWorkloadKey, type RootCa } from '@trellis/pki';
// After @trellis/pki, which loads the reflect-metadata runtime @peculiar/x509 needs and sets its crypto provider.
import * as x509 from '@peculiar/x509';
import { eventually, startEtcd, startRedis, type TestEtcd, type TestRedis } from '@trellis/testing';
import { counterValue, KeyDir, startTestAuthz, type StartedAuthz } from './support/harness';

const K8S_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/** A cluster's service-account issuer: its JWKS over HTTP and ServiceAccount-shaped tokens. */
class LocalCluster {
  private constructor(
    private readonly server: Server,
    private readonly key: CryptoKey,
    readonly jwksUrl: string,
  ) {}

  static async start(): Promise<LocalCluster> {
    const { privateKey, publicKey } = await generateKeyPair('RS256');
    const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'cluster-1', alg: 'RS256', use: 'sig' };
    const server = createServer((_req, res) => res.setHeader('content-type', 'application/json').end(JSON.stringify({ keys: [jwk] })));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new LocalCluster(server, privateKey, `http://127.0.0.1:${(server.address() as { port: number }).port}/openid/v1/jwks`);
  }

  /** What the kubelet projects into a pod (`serviceAccountToken` volume source). */
  static async token(
    key: CryptoKey,
    namespace: string,
    name: string,
    audience = 'trellis-ca',
    times: { issuedAt?: number; lifetimeSeconds?: number } = {},
  ): Promise<string> {
    const iat = times.issuedAt ?? Math.floor(Date.now() / 1000);
    return new SignJWT({ 'kubernetes.io': { namespace, serviceaccount: { name, uid: '6d1b…' }, pod: { name: `${name}-0` } } })
      .setProtectedHeader({ alg: 'RS256', kid: 'cluster-1' })
      .setIssuer(K8S_ISSUER)
      .setSubject(`system:serviceaccount:${namespace}:${name}`)
      .setAudience(audience)
      .setIssuedAt(iat)
      .setExpirationTime(iat + (times.lifetimeSeconds ?? 600))
      .sign(key);
  }

  tokenFor(namespace: string, name: string, audience?: string, times?: { issuedAt?: number; lifetimeSeconds?: number }): Promise<string> {
    return LocalCluster.token(this.key, namespace, name, audience, times);
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('authz mesh CA: POST /v1/certificate', () => {
  let etcd: TestEtcd;
  let redis: TestRedis;
  let keys: KeyDir;
  let dir: string;
  let root: RootCa;
  let cluster: LocalCluster;
  let a: StartedAuthz;

  const post = (body: unknown, authorization?: string) =>
    fetch(`http://127.0.0.1:${a.authz.httpPort}/v1/certificate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
      body: JSON.stringify(body),
    });
  const basic = (service: string, secret: string) => `Basic ${Buffer.from(`${service}:${secret}`).toString('base64')}`;

  beforeAll(async () => {
    [etcd, redis, keys, cluster] = await Promise.all([startEtcd(), startRedis(), KeyDir.create(), LocalCluster.start()]);
    await keys.addKey('first');
    dir = await mkdtemp(join(tmpdir(), 'authz-ca-'));
    root = await generateRootCa({ commonName: 'operator root' });
    await writeFile(join(dir, 'ca.crt'), root.certificatePem);
    await writeFile(join(dir, 'ca.key'), root.keyPem, { mode: 0o600 });
    await writeFile(join(dir, 'bundle.crt'), root.certificatePem);
    await writeFile(join(dir, 'callers'), 'orders:orders-secret-0123456789\nstock:stock-secret-0123456789\n');
    const store = new MeshStore(etcd.client(), new KeyLayout(etcd.prefix));
    await store.createService(
      {
        name: 'orders',
        team: 'shop',
        protocol: 'grpc',
        port: 8080,
        workloadIdentity: { kubernetes: [{ namespace: 'shop', serviceAccount: 'orders' }] },
      },
      'test',
    );
    await store.createService({ name: 'stock', team: 'shop', protocol: 'grpc', port: 8081 }, 'test');
    a = await startTestAuthz(etcd, redis, keys, {
      TRELLIS_TRUST_DOMAIN: 'shop.example',
      TRELLIS_CA_CERT_FILE: join(dir, 'ca.crt'),
      TRELLIS_CA_KEY_FILE: join(dir, 'ca.key'),
      TRELLIS_CA_TRUST_BUNDLE_FILE: join(dir, 'bundle.crt'),
      TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: join(dir, 'callers'),
      TRELLIS_TOKEN_ENDPOINT_CREDENTIALS_RELOAD_SECONDS: '1',
      TRELLIS_K8S_TOKEN_ISSUER: K8S_ISSUER,
      TRELLIS_K8S_JWKS_URL: cluster.jwksUrl,
    });
  });
  afterAll(async () => {
    await a?.stop();
    await Promise.all([etcd?.stop(), redis?.stop(), keys?.remove(), cluster?.stop(), dir && rm(dir, { recursive: true, force: true })]);
  });

  async function expectCertificateFor(res: Response, service: string): Promise<X509Certificate> {
    expect(res.status).toBe(200);
    const body = (await res.json()) as { spiffeId: string; certificateChain: string; trustBundle: string; expiresAt: string };
    const cert = new X509Certificate(body.certificateChain);
    const caCert = new X509Certificate(root.certificatePem);
    expect(body.spiffeId).toBe(`spiffe://shop.example/svc/${service}`);
    expect(cert.subjectAltName).toBe(`URI:spiffe://shop.example/svc/${service}`);
    expect(cert.checkIssued(caCert) && cert.verify(caCert.publicKey)).toBe(true);
    expect(new X509Certificate(body.trustBundle).fingerprint256).toBe(caCert.fingerprint256);
    const lifetimeHours = (new Date(cert.validTo).getTime() - new Date(cert.validFrom).getTime()) / 3_600_000;
    expect(Math.round(lifetimeHours)).toBe(24);
    expect(new Date(body.expiresAt).getTime()).toBe(new Date(cert.validTo).getTime());
    return cert;
  }

  it('issues a VM its service certificate for the service credential', async () => {
    const { csrPem } = await generateWorkloadKey('orders');
    await expectCertificateFor(await post({ csr: csrPem }, basic('orders', 'orders-secret-0123456789')), 'orders');
    expect(await counterValue(a.authz, 'trellis_authz_certificates_issued_total', { method: 'credential' })).toBe(1);
  });

  it('refuses a wrong secret, another service, no proof and a bad CSR', async () => {
    const { csrPem } = await generateWorkloadKey('orders');
    expect((await post({ csr: csrPem }, basic('orders', 'guessed-secret-0123456789'))).status).toBe(401);
    expect((await post({ csr: csrPem })).status).toBe(401);
    // stock's own credential cannot buy a certificate that says orders.
    const other = await post({ csr: csrPem, service: 'orders' }, basic('stock', 'stock-secret-0123456789'));
    expect(other.status).toBe(403);
    const bad = await post({ csr: 'garbage' }, basic('orders', 'orders-secret-0123456789'));
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toContain('application/problem+json');
    expect(await bad.json()).toMatchObject({ type: 'https://trellis.dev/problems/validation', errors: [{ field: 'csr' }] });
    const missing = await post({}, basic('orders', 'orders-secret-0123456789'));
    expect(await missing.json()).toMatchObject({ errors: [{ field: 'csr' }] });
  });

  // A certificate for an RSA key with e = 1 could be "signed" by anyone (s^1 = s), one with a small
  // exponent is weak: the CA certifies only keys every verifier in the mesh would trust.
  it.each([
    ['an RSA key with e = 3', { modulusLength: 2048, publicExponent: 3 }],
    ['a 1024-bit RSA key', { modulusLength: 1024 }],
  ])('attack: a CSR for %s gets no certificate', async (_what, rsa) => {
    const pair = generateKeyPairSync('rsa', rsa);
    const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    const keys = {
      privateKey: await webcrypto.subtle.importKey('pkcs8', pair.privateKey.export({ type: 'pkcs8', format: 'der' }), alg, true, ['sign']),
      publicKey: await webcrypto.subtle.importKey('spki', pair.publicKey.export({ type: 'spki', format: 'der' }), alg, true, ['verify']),
    };
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=orders', keys, signingAlgorithm: alg });
    const issuedBefore = await counterValue(a.authz, 'trellis_authz_certificates_issued_total', { method: 'credential' });
    const res = await post({ csr: csr.toString('pem') }, basic('orders', 'orders-secret-0123456789'));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ errors: [{ field: 'csr' }] });
    expect(await counterValue(a.authz, 'trellis_authz_certificates_issued_total', { method: 'credential' })).toBe(issuedBefore);
  });

  it('issues a pod its certificate for a ServiceAccount token the service record names', async () => {
    const { csrPem } = await generateWorkloadKey('orders');
    const token = await cluster.tokenFor('shop', 'orders');
    await expectCertificateFor(await post({ csr: csrPem, service: 'orders' }, `Bearer ${token}`), 'orders');
    expect(await counterValue(a.authz, 'trellis_authz_certificates_issued_total', { method: 'kubernetes' })).toBe(1);
  });

  it('refuses ServiceAccounts the record does not name, tokens for another audience and tokens of another signer', async () => {
    const { csrPem } = await generateWorkloadKey('orders');
    // A real token of a ServiceAccount that may not act as orders (nor as stock, whose record names none).
    const intruder = await cluster.tokenFor('shop', 'stock');
    expect((await post({ csr: csrPem, service: 'orders' }, `Bearer ${intruder}`)).status).toBe(403);
    expect((await post({ csr: csrPem, service: 'stock' }, `Bearer ${intruder}`)).status).toBe(403);
    // The right ServiceAccount, but a token meant for the API server.
    const apiToken = await cluster.tokenFor('shop', 'orders', 'https://kubernetes.default.svc');
    expect((await post({ csr: csrPem, service: 'orders' }, `Bearer ${apiToken}`)).status).toBe(401);
    // Right claims, signed by a key that is not the cluster's.
    const { privateKey } = await generateKeyPair('RS256');
    const forged = await LocalCluster.token(privateKey, 'shop', 'orders');
    expect((await post({ csr: csrPem, service: 'orders' }, `Bearer ${forged}`)).status).toBe(401);
    // A token without the service to act as.
    expect((await post({ csr: csrPem }, `Bearer ${await cluster.tokenFor('shop', 'orders')}`)).status).toBe(403);
  });

  // A projected token authz checks offline: one claiming years would outlive its pod and any leak of it.
  it.each([
    ['issued 10 years in the future', { issuedAt: Math.floor(Date.now() / 1000) + 10 * 365 * 86_400 }],
    ['valid for 100 years', { lifetimeSeconds: 100 * 365 * 86_400 }],
    ['valid for a day and an hour', { lifetimeSeconds: 90_000 }],
  ])('attack (#12 point 5): a ServiceAccount token %s, otherwise right, gets no certificate', async (_what, times) => {
    const { csrPem } = await generateWorkloadKey('orders');
    const token = await cluster.tokenFor('shop', 'orders', undefined, times);
    expect((await post({ csr: csrPem, service: 'orders' }, `Bearer ${token}`)).status).toBe(401);
  });

  it('hands out both roots once the operator adds the next one to the bundle (CA rotation)', async () => {
    const next = await generateRootCa({ commonName: 'next operator root' });
    await writeFile(join(dir, 'bundle.crt'), `${root.certificatePem}${next.certificatePem}`);
    await a.authz.ca!.reload();
    const bundle = await (await fetch(`http://127.0.0.1:${a.authz.httpPort}/v1/trust-bundle`)).text();
    expect(bundle.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    const { csrPem } = await generateWorkloadKey('orders');
    const res = await post({ csr: csrPem }, basic('orders', 'orders-secret-0123456789'));
    const body = (await res.json()) as { trustBundle: string };
    expect(body.trustBundle.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
  });

  // SIGHUP's path (main.ts): with every poll an hour away, a rotation applies as soon as reloadFiles() returns.
  it('reloadFiles (SIGHUP) applies a credentials rotation and a new trust bundle at once, without waiting for a poll', async () => {
    const own = await mkdtemp(join(tmpdir(), 'authz-hup-'));
    await writeFile(join(own, 'callers'), 'orders:orders-secret-0123456789\nstock:stock-secret-0123456789\n');
    await writeFile(join(own, 'bundle.crt'), root.certificatePem);
    const b = await startTestAuthz(etcd, redis, keys, {
      TRELLIS_TRUST_DOMAIN: 'shop.example',
      TRELLIS_CA_CERT_FILE: join(dir, 'ca.crt'),
      TRELLIS_CA_KEY_FILE: join(dir, 'ca.key'),
      TRELLIS_CA_TRUST_BUNDLE_FILE: join(own, 'bundle.crt'),
      TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: join(own, 'callers'),
      TRELLIS_TOKEN_ENDPOINT_CREDENTIALS_RELOAD_SECONDS: '3600',
      TRELLIS_KEY_RELOAD_SECONDS: '3600',
    });
    try {
      const { csrPem } = await generateWorkloadKey('stock');
      const stockAsks = () =>
        fetch(`http://127.0.0.1:${b.authz.httpPort}/v1/certificate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: basic('stock', 'stock-secret-0123456789') },
          body: JSON.stringify({ csr: csrPem }),
        });
      expect((await stockAsks()).status).toBe(200);
      const next = await generateRootCa({ commonName: 'next root for SIGHUP' });
      await writeFile(join(own, 'callers.next'), 'orders:orders-secret-0123456789\n');
      await rename(join(own, 'callers.next'), join(own, 'callers'));
      await writeFile(join(own, 'bundle.crt'), `${root.certificatePem}${next.certificatePem}`);

      await b.authz.reloadFiles();
      expect((await stockAsks()).status).toBe(401);
      const bundle = await (await fetch(`http://127.0.0.1:${b.authz.httpPort}/v1/trust-bundle`)).text();
      expect(bundle.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    } finally {
      await b.stop();
      await rm(own, { recursive: true, force: true });
    }
  });

  // Last: it takes stock's credential away. The file is replaced by a rename (a new inode), as an editor or a
  // Secret update does; authz follows it without a restart.
  it('attack: a credential removed from the file buys no certificate; a broken file does not bring it back', async () => {
    const replaceCallers = async (content: string) => {
      await writeFile(join(dir, 'callers.next'), content);
      await rename(join(dir, 'callers.next'), join(dir, 'callers'));
    };
    const { csrPem } = await generateWorkloadKey('stock');
    const stockAsks = () => post({ csr: csrPem }, basic('stock', 'stock-secret-0123456789'));
    expect((await stockAsks()).status).toBe(200);

    await replaceCallers('orders:orders-secret-0123456789\n');
    await eventually('the revoked stock credential to be refused', async () => (await stockAsks()).status === 401);

    await replaceCallers('orders:orders-secret-0123456789\nstock:stock-secret-0123456789\nnot an entry\n');
    await eventually(
      'the broken file to be counted invalid',
      async () => (await counterValue(a.authz, 'trellis_authz_service_credentials_reloads_total', { result: 'invalid' })) === 1,
    );
    expect((await stockAsks()).status).toBe(401);
    const { csrPem: ordersCsr } = await generateWorkloadKey('orders');
    expect((await post({ csr: ordersCsr }, basic('orders', 'orders-secret-0123456789'))).status).toBe(200);
  });
});

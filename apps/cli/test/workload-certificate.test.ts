// `trellis agent --certificate-dir` against the real authz (its mesh CA, as a
// process over a real etcd and Redis): the agent generates the key, sends a CSR
// with the service credential, and writes key.pem / cert.pem / ca.pem; each
// certificate is checked with Node's X509Certificate. A second root added to
// authz's trust bundle reaches ca.pem without a new certificate; with authz
// stopped across the half-life the agent keeps the valid certificate it holds,
// retries, and renews once authz is back.
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateRootCa, pemCertificates, type RootCa } from '@trellis/pki';
import { freePort, startEtcd, startRedis, type TestEtcd, type TestRedis } from '@trellis/testing';
import { AppProcess, bundle, eventually, removeBundles, unregisteredOrdersAgentArgs } from './support/built-apps';

jest.setTimeout(420_000);

const TRUST_DOMAIN = 'shop.example';
const TTL_SECONDS = 300; // authz's minimum: renewal comes at about 150 s

describe('trellis agent: the workload certificate from the mesh CA', () => {
  let etcd: TestEtcd;
  let redis: TestRedis;
  let dir: string;
  let rootA: RootCa;
  let rootB: RootCa;
  let authz: AppProcess;
  let agent: AppProcess;
  let authzEnv: NodeJS.ProcessEnv;
  let authzUrl: string;
  let metricsUrl: string;
  const certDir = () => join(dir, 'certs');
  const read = (name: string) => readFile(join(certDir(), name), 'utf8');

  const startAuthz = async () => {
    authz = AppProcess.start('authz', bundle('authz'), [], authzEnv);
    await eventually('authz ready', async () => (await fetch(`${authzUrl}/readyz`)).ok || undefined, 60_000, [authz]);
  };
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(metricsUrl)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line ? Number(line.split(' ').pop()) : 0;
  };

  beforeAll(async () => {
    [etcd, redis] = await Promise.all([startEtcd(), startRedis()]);
    dir = await mkdtemp(join(tmpdir(), 'agent-cert-'));
    [rootA, rootB] = await Promise.all([generateRootCa({ commonName: 'root A' }), generateRootCa({ commonName: 'root B' })]);
    await writeFile(join(dir, 'ca.crt'), rootA.certificatePem);
    await writeFile(join(dir, 'ca.key'), rootA.keyPem, { mode: 0o600 });
    await writeFile(join(dir, 'bundle.crt'), rootA.certificatePem);
    await writeFile(join(dir, 'credentials'), 'orders:orders-secret-0123456789\n');
    await writeFile(join(dir, 'orders.secret'), 'orders-secret-0123456789\n');
    const keys = join(dir, 'keys');
    await mkdir(keys);
    await writeFile(
      join(keys, 'k1.pem'),
      generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    const httpPort = await freePort();
    authzUrl = `http://127.0.0.1:${httpPort}`;
    authzEnv = {
      TRELLIS_HOST: '127.0.0.1',
      TRELLIS_GRPC_PORT: '0',
      TRELLIS_HTTP_PORT: String(httpPort),
      TRELLIS_MTLS_PORT: '0',
      TRELLIS_ETCD_ENDPOINTS: etcd.endpoints.join(','),
      TRELLIS_ETCD_PREFIX: etcd.prefix,
      TRELLIS_REDIS_URL: redis.url,
      TRELLIS_SIGNING_KEYS_DIR: keys,
      TRELLIS_TRUST_DOMAIN: TRUST_DOMAIN,
      TRELLIS_CA_CERT_FILE: join(dir, 'ca.crt'),
      TRELLIS_CA_KEY_FILE: join(dir, 'ca.key'),
      TRELLIS_CA_TRUST_BUNDLE_FILE: join(dir, 'bundle.crt'),
      TRELLIS_WORKLOAD_CERT_TTL_SECONDS: String(TTL_SECONDS),
      TRELLIS_KEY_RELOAD_SECONDS: '1',
      TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: join(dir, 'credentials'),
    };
    await startAuthz();
    // No registry: registering is retried in the background and has nothing to do with the certificate.
    agent = AppProcess.start(
      'agent',
      bundle('cli'),
      [
        ...unregisteredOrdersAgentArgs(50051),
        `--credential-file=${join(dir, 'orders.secret')}`,
        `--authz=${authzUrl}`,
        `--certificate-dir=${certDir()}`,
        '--trust-bundle-refresh=1s',
        '--http-host=127.0.0.1',
        '--http-port=0',
      ],
      {},
    );
    const listening = await agent.waitForLine(/agent health and metrics listening/);
    metricsUrl = `http://127.0.0.1:${(JSON.parse(listening) as { port: number }).port}/metrics`;
  });
  afterAll(async () => {
    await agent?.stop();
    await authz?.stop();
    await Promise.all([etcd?.stop(), redis?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
    removeBundles();
  });

  it('writes a key that never left the node and a certificate for spiffe://…/svc/orders chaining to the root', async () => {
    await agent.waitForLine(/workload certificate written/);
    const cert = new X509Certificate(await read('cert.pem'));
    const root = new X509Certificate(rootA.certificatePem);
    expect(cert.subjectAltName).toBe(`URI:spiffe://${TRUST_DOMAIN}/svc/orders`);
    expect(cert.checkIssued(root) && cert.verify(root.publicKey)).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'])); // serverAuth, clientAuth
    const validFrom = new Date(cert.validFrom).getTime();
    const validTo = new Date(cert.validTo).getTime();
    expect(validFrom).toBeLessThanOrEqual(Date.now());
    expect(validTo).toBeGreaterThan(Date.now());
    expect(Math.round((validTo - validFrom) / 1000)).toBeGreaterThanOrEqual(TTL_SECONDS);
    expect(Math.round((validTo - validFrom) / 1000)).toBeLessThanOrEqual(TTL_SECONDS + 120); // backdated for clock skew
    // The key is the one the certificate certifies, private to the agent's user, and only in the agent's directory.
    const key = await read('key.pem');
    expect(cert.checkPrivateKey(createPrivateKey(key))).toBe(true);
    expect((await stat(join(certDir(), 'key.pem'))).mode & 0o777).toBe(0o600);
    expect(pemCertificates(await read('ca.pem')).map((pem) => new X509Certificate(pem).fingerprint256)).toEqual([root.fingerprint256]);
    expect(await metric('trellis_agent_certificates_issued_total')).toBeGreaterThanOrEqual(1);
  });

  it('a second root in the bundle (CA rotation) reaches ca.pem without a new certificate', async () => {
    const serial = new X509Certificate(await read('cert.pem')).serialNumber;
    await writeFile(join(dir, 'bundle.crt'), rootA.certificatePem + rootB.certificatePem);
    await eventually('two roots in ca.pem', async () => pemCertificates(await read('ca.pem')).length === 2, 60_000, [agent, authz]);
    expect(new X509Certificate(await read('cert.pem')).serialNumber).toBe(serial);
    expect(await metric('trellis_agent_trust_bundle_roots')).toBe(2);
  });

  it('keeps its valid certificate while authz is down across the half-life, retries, and renews once authz is back', async () => {
    const held = new X509Certificate(await read('cert.pem'));
    const halfLife = (new Date(held.validFrom).getTime() + new Date(held.validTo).getTime()) / 2;
    await authz.stop();
    // Past the half-life (± 10 % jitter), renewal is attempted and fails.
    await eventually(
      'a failed renewal attempt',
      async () => (await metric('trellis_agent_certificate_errors_total{attempt="certificate"}')) > 0 || undefined,
      (halfLife - Date.now()) * 1.2 + 60_000,
      [agent],
    );
    expect(Date.now()).toBeGreaterThan(halfLife - 0.1 * (halfLife - new Date(held.validFrom).getTime()) - 1_000);
    // Still the held certificate, still valid, still served to the app.
    expect(new X509Certificate(await read('cert.pem')).serialNumber).toBe(held.serialNumber);
    expect(new Date(held.validTo).getTime()).toBeGreaterThan(Date.now());
    expect(agent.running).toBe(true);

    await startAuthz();
    const renewed = await eventually(
      'a renewed certificate',
      async () => {
        const cert = new X509Certificate(await read('cert.pem'));
        return cert.serialNumber !== held.serialNumber ? cert : undefined;
      },
      120_000,
      [agent, authz],
    );
    expect(renewed.subjectAltName).toBe(`URI:spiffe://${TRUST_DOMAIN}/svc/orders`);
    expect(renewed.checkPrivateKey(createPrivateKey(await read('key.pem')))).toBe(true);
    expect(renewed.publicKey.export({ format: 'pem', type: 'spki' })).not.toEqual(held.publicKey.export({ format: 'pem', type: 'spki' }));
  });
});

// WorkloadCertificate against a stand-in for authz's two CA endpoints that signs
// with the real MeshCa (the real authz is in apps/cli/test/workload-certificate.test.ts):
// what it writes, its retries while the CA is away, and trust bundle changes.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { lstat, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateRootCa, MeshCa, pemCertificates, type RootCa } from '@trellis/pki';
import { eventually } from '@trellis/testing';
import { chainsToBundle, renewalDelay, WorkloadCertificate } from './workload-certificate';

/** POST /v1/certificate and GET /v1/trust-bundle, as authz answers them; `down` answers 503. */
class CaEndpoint {
  down = false;
  certificateRequests = 0;
  authorizations: string[] = [];
  private constructor(
    private readonly server: Server,
    public ca: MeshCa,
    public bundle: string,
  ) {}

  static async start(ca: MeshCa): Promise<CaEndpoint> {
    const server = createServer();
    const endpoint = new CaEndpoint(server, ca, ca.trustBundlePem);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (endpoint.down) return res.writeHead(503).end('{"title":"unavailable"}');
        if (req.url === '/v1/trust-bundle') return res.end(endpoint.bundle);
        endpoint.certificateRequests++;
        endpoint.authorizations.push(req.headers.authorization ?? '');
        const { csr, service } = JSON.parse(Buffer.concat(chunks).toString()) as { csr: string; service: string };
        void endpoint.ca.issue(csr, service).then((issued) =>
          res.setHeader('content-type', 'application/json').end(
            JSON.stringify({
              spiffeId: issued.spiffeId,
              certificateChain: issued.chainPem,
              trustBundle: endpoint.bundle,
              notBefore: issued.notBefore.toISOString(),
              expiresAt: issued.notAfter.toISOString(),
            }),
          ),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return endpoint;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('WorkloadCertificate', () => {
  let rootA: RootCa;
  let rootB: RootCa;
  let endpoint: CaEndpoint;
  let dir: string;
  const running: WorkloadCertificate[] = [];
  const keeper = (extra: Partial<ConstructorParameters<typeof WorkloadCertificate>[0]> = {}) => {
    const w = new WorkloadCertificate({
      authzUrl: endpoint.url,
      service: 'orders',
      proof: { kind: 'credential', secret: 's3cret' },
      dir,
      retry: { baseMs: 50, maxMs: 200 },
      ...extra,
    });
    running.push(w);
    return w;
  };

  beforeAll(async () => {
    [rootA, rootB] = await Promise.all([generateRootCa({ commonName: 'root A' }), generateRootCa({ commonName: 'root B' })]);
  });
  beforeEach(async () => {
    endpoint = await CaEndpoint.start(await MeshCa.load(rootA, { trustDomain: 'shop.example', lifetimeSeconds: 3600 }));
    dir = await mkdtemp(join(tmpdir(), 'workload-cert-'));
  });
  afterEach(async () => {
    for (const w of running.splice(0)) w.stop();
    await endpoint.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a fresh key (0600), its certificate and the bundle, and sends the credential', async () => {
    const issued = await keeper().start();
    const key = await readFile(join(dir, 'key.pem'), 'utf8');
    const cert = new X509Certificate(await readFile(join(dir, 'cert.pem')));
    expect(cert.checkPrivateKey(createPrivateKey(key))).toBe(true);
    expect(cert.subjectAltName).toBe('URI:spiffe://shop.example/svc/orders');
    expect(issued.serialNumber).toBe(cert.serialNumber);
    expect((await stat(join(dir, 'key.pem'))).mode & 0o777).toBe(0o600);
    expect((await lstat(join(dir, 'key.pem'))).isSymbolicLink()).toBe(true); // through ..data, swapped atomically
    expect(await readFile(join(dir, 'ca.pem'), 'utf8')).toBe(rootA.certificatePem);
    expect(endpoint.authorizations).toEqual([`Basic ${Buffer.from('orders:s3cret').toString('base64')}`]);
  });

  it('keeps retrying with backoff while the CA is down, then gets its first certificate', async () => {
    endpoint.down = true;
    const errors: number[] = [];
    const w = keeper({ onError: (_err, { retryInMs }) => errors.push(retryInMs) });
    const first = w.keepRenewed();
    await eventually('three failed attempts', () => errors.length >= 3);
    endpoint.down = false;
    const issued = await first;
    expect(issued.spiffeId).toBe('spiffe://shop.example/svc/orders');
    expect(errors.every((ms) => ms >= 5 && ms <= 200)).toBe(true);
  });

  it('a Kubernetes proof sends the projected token, read afresh each time', async () => {
    let n = 0;
    const w = keeper({ proof: { kind: 'kubernetes', token: async () => `token-${++n}\n` } });
    await w.start();
    await w.renew();
    expect(endpoint.authorizations).toEqual(['Bearer token-1', 'Bearer token-2']);
  });

  it('rewrites only the bundle when a second root is added, and renews at once when its own root is removed', async () => {
    const changes: number[] = [];
    const w = keeper({ trustBundleRefreshMs: 100, onTrustBundleChanged: (roots) => changes.push(roots) });
    const first = await w.start();
    const keyBefore = await readFile(join(dir, 'key.pem'), 'utf8');

    endpoint.bundle = rootA.certificatePem + rootB.certificatePem;
    await eventually('the two-root bundle on disk', async () => pemCertificates(await readFile(join(dir, 'ca.pem'), 'utf8')).length === 2);
    expect(await readFile(join(dir, 'key.pem'), 'utf8')).toBe(keyBefore);
    expect(new X509Certificate(await readFile(join(dir, 'cert.pem'))).serialNumber).toBe(first.serialNumber);

    // The CA now signs from root B and root A leaves the bundle: the held certificate no longer chains.
    endpoint.ca = await MeshCa.load(
      { ...rootB, trustBundlePem: rootB.certificatePem },
      { trustDomain: 'shop.example', lifetimeSeconds: 3600 },
    );
    endpoint.bundle = rootB.certificatePem;
    await eventually('a root-B certificate', async () =>
      chainsToBundle(await readFile(join(dir, 'cert.pem'), 'utf8'), rootB.certificatePem),
    );
    expect(await readFile(join(dir, 'ca.pem'), 'utf8')).toBe(rootB.certificatePem);
    expect(await readFile(join(dir, 'key.pem'), 'utf8')).not.toBe(keyBefore);
    // The files are swapped before the old version's directory is removed and the change
    // is reported, so a reader can see the new certificate a few turns before the callback.
    await eventually('the one-root bundle reported', () => changes.length >= 2);
    expect(changes).toEqual([2, 1]);
  });

  it('renews at half-life, give or take the jitter', () => {
    const notBefore = new Date(0);
    const expiresAt = new Date(24 * 3_600_000);
    for (let i = 0; i < 200; i++) {
      const delay = renewalDelay({ notBefore, expiresAt }, 0.1, 0);
      expect(delay).toBeGreaterThanOrEqual(0.9 * 12 * 3_600_000);
      expect(delay).toBeLessThanOrEqual(1.1 * 12 * 3_600_000);
    }
  });
});

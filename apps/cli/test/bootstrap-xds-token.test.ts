// `trellis bootstrap --authz https://… --certificate-dir` against the real authz in
// its production defaults (a mesh CA, no insecure callers): the xDS token is asked
// on authz's mTLS port with the workload certificate the agent keeps (sdk-node's
// certificate-files layout), and authz takes the service from the certificate.
// The plain HTTP port with the service credential alone is refused
// (certificate-required), and so is a certificate from another CA. The control
// plane's side is a bootstrap template holding the token placeholder, as
// GET /bootstrap/{service} answers when it requires xDS tokens.
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { XDS_TOKEN_AUDIENCE } from '@trellis/mesh-schema';
import { generateRootCa, generateWorkloadKey, MeshCa } from '@trellis/pki';
import { certificateFilesIn, writeCertificateFiles } from '@trellis/sdk-node';
import { freePort, startEtcd, startRedis, type TestEtcd, type TestRedis } from '@trellis/testing';
import { AppProcess, bundle, eventually, removeBundles, unregisteredOrdersAgentArgs } from './support/built-apps';

const TRUST_DOMAIN = 'bootstrap.example';
const SECRET = 'orders-secret-0123456789';

describe('trellis bootstrap: the xDS token from authz over mTLS with the workload certificate', () => {
  let etcd: TestEtcd;
  let redis: TestRedis;
  let dir: string;
  let authz: AppProcess;
  let httpUrl: string;
  let mtlsUrl: string;
  let controlPlane: Server;
  let controlPlaneUrl: string;

  /** The agent's certificate directory, filled the way the agent fills it: a CSR proven with the service credential. */
  async function agentCertificateDir(name: string): Promise<string> {
    const key = await generateWorkloadKey('orders');
    const res = await fetch(`${httpUrl}/v1/certificate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`orders:${SECRET}`).toString('base64')}` },
      body: JSON.stringify({ csr: key.csrPem }),
    });
    expect(res.status).toBe(200);
    const issued = (await res.json()) as { certificateChain: string; trustBundle: string };
    const certDir = join(dir, name);
    await writeCertificateFiles(certDir, {
      certificateChainPem: issued.certificateChain,
      privateKeyPem: key.keyPem,
      trustBundlePem: issued.trustBundle,
    });
    return certDir;
  }

  async function bootstrap(
    args: string[],
    env: Record<string, string> = {},
  ): Promise<{ code: number | null; output: string; bootstrap?: string }> {
    const out = join(dir, `bootstrap-${Math.random().toString(36).slice(2)}.yaml`);
    const run = AppProcess.start(
      'bootstrap',
      bundle('cli'),
      ['--control-plane', controlPlaneUrl, 'bootstrap', 'orders', '--app-port', '8080', '--retry-for', '0', '--out', out, ...args],
      env,
    );
    const code = await run.exited;
    return { code, output: run.recentOutput(50), bootstrap: await readFile(out, 'utf8').catch(() => undefined) };
  }

  beforeAll(async () => {
    [etcd, redis] = await Promise.all([startEtcd(), startRedis()]);
    dir = await mkdtemp(join(tmpdir(), 'bootstrap-xds-token-'));
    const root = await generateRootCa({ commonName: 'mesh root' });
    await writeFile(join(dir, 'ca.crt'), root.certificatePem);
    await writeFile(join(dir, 'ca.key'), root.keyPem, { mode: 0o600 });
    await writeFile(join(dir, 'credentials'), `orders:${SECRET}\n`);
    await writeFile(join(dir, 'orders.secret'), `${SECRET}\n`);
    const keys = join(dir, 'keys');
    await mkdir(keys);
    await writeFile(
      join(keys, 'k1.pem'),
      generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    const [httpPort, mtlsPort] = [await freePort(), await freePort()];
    httpUrl = `http://127.0.0.1:${httpPort}`;
    mtlsUrl = `https://127.0.0.1:${mtlsPort}`;
    authz = AppProcess.start('authz', bundle('authz'), [], {
      TRELLIS_HOST: '127.0.0.1',
      TRELLIS_GRPC_PORT: '0',
      TRELLIS_HTTP_PORT: String(httpPort),
      TRELLIS_MTLS_PORT: String(mtlsPort),
      TRELLIS_ETCD_ENDPOINTS: etcd.endpoints.join(','),
      TRELLIS_ETCD_PREFIX: etcd.prefix,
      TRELLIS_REDIS_URL: redis.url,
      TRELLIS_SIGNING_KEYS_DIR: keys,
      TRELLIS_TRUST_DOMAIN: TRUST_DOMAIN,
      TRELLIS_CA_CERT_FILE: join(dir, 'ca.crt'),
      TRELLIS_CA_KEY_FILE: join(dir, 'ca.key'),
      TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: join(dir, 'credentials'),
    });
    await eventually('authz ready', async () => (await fetch(`${httpUrl}/readyz`)).ok || undefined, 60_000, [authz]);
    controlPlane = createServer((req, res) => {
      if (req.url?.startsWith('/bootstrap/orders')) {
        res.setHeader('content-type', 'application/yaml');
        res.end('node:\n  cluster: orders\n# x-trellis-xds-token: ${TRELLIS_XDS_TOKEN}\n');
      } else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => controlPlane.listen(0, '127.0.0.1', resolve));
    controlPlaneUrl = `http://127.0.0.1:${(controlPlane.address() as { port: number }).port}`;
  }, 180_000);
  afterAll(async () => {
    await authz?.stop();
    await new Promise((resolve) => controlPlane?.close(resolve));
    await Promise.all([etcd?.stop(), redis?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
    removeBundles();
  });

  it('fills in a token for the certificate’s service, signed by authz, for the xDS audience', async () => {
    const certDir = await agentCertificateDir('certs');
    const result = await bootstrap(['--authz', mtlsUrl, '--certificate-dir', certDir]);
    expect(result.code === 0 ? 'ok' : result.output).toBe('ok');
    const token = /x-trellis-xds-token: (\S+)/.exec(result.bootstrap ?? '')?.[1];
    expect(token).toBeDefined();
    const { payload } = await jwtVerify(token!, createRemoteJWKSet(new URL(`${httpUrl}/.well-known/jwks.json`)), {
      audience: XDS_TOKEN_AUDIENCE,
    });
    expect(payload.sub).toBe('orders');
  }, 120_000);

  it('trellis agent --envoy-bootstrap: obtains the certificate, then the xDS token on the mTLS port with it', async () => {
    const certDir = join(dir, 'agent-certs');
    const out = join(dir, 'agent-bootstrap.yaml');
    // No registry: registering is retried in the background; the bootstrap comes first.
    const agent = AppProcess.start(
      'agent',
      bundle('cli'),
      [
        ...unregisteredOrdersAgentArgs(50051),
        `--credential-file=${join(dir, 'orders.secret')}`,
        `--authz=${httpUrl}`,
        `--authz-mtls=${mtlsUrl}`,
        `--certificate-dir=${certDir}`,
        `--envoy-bootstrap=${out}`,
        '--app-port=8080',
        `--control-plane=${controlPlaneUrl}`,
        '--http-host=127.0.0.1',
        '--http-port=0',
      ],
      {},
    );
    try {
      const token = await eventually(
        'the agent wrote the bootstrap with a token',
        async () => /x-trellis-xds-token: (\S+)/.exec(await readFile(out, 'utf8').catch(() => ''))?.[1],
        60_000,
        [agent, authz],
      );
      const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${httpUrl}/.well-known/jwks.json`)), {
        audience: XDS_TOKEN_AUDIENCE,
      });
      expect(payload.sub).toBe('orders');
    } finally {
      await agent.stop();
    }
  }, 120_000);

  describe('as the Helm sidecar init container, before any agent: --mesh-ca obtains the certificate first', () => {
    /**
     * The init container's environment as trellis-sidecar renders it (tools/deploy-tests/src/helm.test.ts checks the
     * chart renders these names), with the pod's paths and Service URLs replaced by this test's.
     */
    const initContainerEnv = (certDir: string, credentials: string): Record<string, string> => ({
      TRELLIS_MESH_CA_URL: httpUrl,
      TRELLIS_AUTHZ_URL: mtlsUrl,
      TRELLIS_CERTIFICATE_DIR: certDir,
      CREDENTIALS_DIRECTORY: credentials,
      TRELLIS_SERVICE_SECRET_FILE: join(credentials, 'authz-secret'),
    });
    /** The projected authzSecret: its key mounted as the file authz-secret. */
    async function credentialsDirectory(name: string, secret: string): Promise<string> {
      const credentials = join(dir, name);
      await mkdir(credentials, { recursive: true });
      await writeFile(join(credentials, 'authz-secret'), `${secret}\n`);
      return credentials;
    }

    it('an empty volume: certificate from the mesh CA, xDS token over mTLS with it, SDS files; then the agent renews in that volume', async () => {
      const certDir = join(dir, 'pod-volume');
      const result = await bootstrap([], initContainerEnv(certDir, await credentialsDirectory('pod-credentials', SECRET)));
      expect(result.code === 0 ? 'ok' : result.output).toBe('ok');
      const token = /x-trellis-xds-token: (\S+)/.exec(result.bootstrap ?? '')?.[1];
      const { payload } = await jwtVerify(token!, createRemoteJWKSet(new URL(`${httpUrl}/.well-known/jwks.json`)), {
        audience: XDS_TOKEN_AUDIENCE,
      });
      expect(payload.sub).toBe('orders');
      // What the agent renews later and Envoy reads: the certificate for orders, chaining to the mesh root, and its key.
      const files = certificateFilesIn(certDir);
      const leaf = new X509Certificate(await readFile(files.certificateFile, 'utf8'));
      expect(leaf.subjectAltName).toContain(`URI:spiffe://${TRUST_DOMAIN}/svc/orders`);
      expect(leaf.verify(new X509Certificate(await readFile(join(dir, 'ca.crt'), 'utf8')).publicKey)).toBe(true);
      expect(leaf.checkPrivateKey(createPrivateKey(await readFile(files.privateKeyFile, 'utf8')))).toBe(true);
      expect((await stat(files.privateKeyFile)).mode & 0o077).toBe(0);
      expect((await readdir(certDir)).filter((f) => f.endsWith('.sds.json')).sort()).toEqual([
        'trellis-trust-bundle.sds.json',
        'trellis-workload-certificate.sds.json',
      ]);

      // Then the pod's agent container starts on the same volume and takes the certificate over.
      const agent = AppProcess.start(
        'agent',
        bundle('cli'),
        ['agent', '--port=8080', '--health-check=none', '--registry=http://127.0.0.1:9', '--http-host=127.0.0.1', '--http-port=0'],
        {
          TRELLIS_SERVICE: 'orders',
          TRELLIS_INSTANCE_ID: 'orders-7d9f-abcde',
          TRELLIS_ADDRESS: '127.0.0.1',
          TRELLIS_AUTHZ_URL: httpUrl,
          TRELLIS_CERTIFICATE_DIR: certDir,
          TRELLIS_SERVICE_SECRET_FILE: join(dir, 'pod-credentials', 'authz-secret'),
        },
      );
      try {
        const renewed = await eventually(
          "the agent's own certificate in the volume",
          async () => {
            const pem = await readFile(files.certificateFile, 'utf8').catch(() => '');
            return pem && new X509Certificate(pem).serialNumber !== leaf.serialNumber ? new X509Certificate(pem) : undefined;
          },
          60_000,
          [agent, authz],
        );
        expect(renewed.subjectAltName).toContain(`URI:spiffe://${TRUST_DOMAIN}/svc/orders`);
        expect(renewed.checkPrivateKey(createPrivateKey(await readFile(files.privateKeyFile, 'utf8')))).toBe(true);
        // The SDS files Envoy watches still name the files, now the agent's.
        expect((await readdir(certDir)).filter((f) => f.endsWith('.sds.json')).length).toBe(2);
      } finally {
        await agent.stop();
      }
    }, 120_000);

    it('attack: a wrong service secret gets no certificate, hence no token and no bootstrap, and is not retried', async () => {
      const certDir = join(dir, 'wrong-volume');
      const credentials = await credentialsDirectory('wrong-credentials', 'not-the-orders-secret-0000');
      const result = await bootstrap(['--retry-for', '2m'], initContainerEnv(certDir, credentials));
      expect(result.code).toBe(1);
      expect(result.output).toMatch(/workload certificate of orders: the mesh CA refused a certificate for orders: 401/);
      expect(result.output).not.toMatch(/retrying in/);
      expect(result.bootstrap).toBeUndefined();
      await expect(stat(certificateFilesIn(certDir).certificateFile)).rejects.toThrow();
    }, 120_000);

    it('--mesh-ca without the certificate directory is refused before asking anyone', async () => {
      const result = await bootstrap(['--mesh-ca', httpUrl, '--credential-file', join(dir, 'orders.secret'), '--authz', mtlsUrl]);
      expect(result.code).toBe(2);
      expect(result.output).toContain('--mesh-ca needs --certificate-dir');
    }, 120_000);
  });

  it('an https authz URL without the certificate directory is refused before asking anyone', async () => {
    const result = await bootstrap(['--authz', mtlsUrl]);
    expect(result.code).toBe(2);
    expect(result.output).toContain('--authz https://… needs --certificate-dir');
  }, 120_000);

  it('attack: the service credential alone on the plain port gets no token (certificate required)', async () => {
    const result = await bootstrap(['--authz', httpUrl, '--credential-file', join(dir, 'orders.secret')]);
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/authz issued none \(POST \/v1\/token: .*401/);
    expect(result.bootstrap).toBeUndefined();
  }, 120_000);

  it('attack: a certificate for orders from another CA is refused by the TLS handshake', async () => {
    const other = await MeshCa.load(
      await generateRootCa({ commonName: 'impostor root' }).then((r) => ({ certificatePem: r.certificatePem, keyPem: r.keyPem })),
      {
        trustDomain: TRUST_DOMAIN,
        lifetimeSeconds: 3600,
      },
    );
    const key = await generateWorkloadKey('orders');
    const issued = await other.issue(key.csrPem, 'orders');
    const certDir = join(dir, 'impostor');
    // The impostor trusts authz's real roots, so only authz's verification of the client can stop it.
    await writeCertificateFiles(certDir, {
      certificateChainPem: issued.chainPem,
      privateKeyPem: key.keyPem,
      trustBundlePem: await readFile(join(dir, 'ca.crt'), 'utf8'),
    });
    const result = await bootstrap(['--authz', mtlsUrl, '--certificate-dir', certDir]);
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/authz issued none/);
    expect(result.bootstrap).toBeUndefined();
  }, 120_000);
});

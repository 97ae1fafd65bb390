// startAuthz failing part way: a port taken (gRPC, served by the Check worker or by the main thread; HTTP; mTLS), a
// file that does not load (the mesh CA's key, authz's own certificate, the token endpoint's credentials), or no way to
// verify callers. It rejects with that failure and stops what it had started before (the signing keys' timers, the etcd
// watch, the Redis client and its probes, the credentials' poll, the Check worker), so that nothing it started keeps
// the process alive.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyLayout, MeshStore, type EtcdClient } from '@trellis/mesh-schema';
import { generateRootCa } from '@trellis/pki';
import { createLogger } from '@trellis/runtime';
import { activeResources, nothingLeftOpenSince, startEtcd, startRedis, type TestEtcd, type TestRedis } from '@trellis/testing';
import { startAuthz } from '../src/authz';
import { loadAuthzConfig } from '../src/config';
import { checkWorkerScript } from './support/check-worker-script';
import { authzTestEnv, KeyDir, operatorCaEnv } from './support/harness';

const TRUST_DOMAIN = 'shop.example';
const PORT_TAKEN = /EADDRINUSE|in use|No address added/;

let etcd: TestEtcd;
let redis: TestRedis;
let keys: KeyDir;
let client: EtcdClient;
let dir: string;
let taken: Server;
let workerScript: string;

beforeAll(async () => {
  [etcd, redis, keys] = await Promise.all([startEtcd(), startRedis(), KeyDir.create()]);
  await keys.addKey('first');
  dir = await mkdtemp(join(tmpdir(), 'authz-start-failure-'));
  const root = await generateRootCa({ commonName: 'operator root' });
  await writeFile(join(dir, 'ca.crt'), root.certificatePem);
  await writeFile(join(dir, 'ca.key'), root.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'bundle.crt'), root.certificatePem);
  await writeFile(join(dir, 'callers'), 'service-a:service-a-secret-0123456789\n');
  await writeFile(join(dir, 'not-a-key.pem'), '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n');
  await writeFile(join(dir, 'callers-broken'), 'service-a:service-a-secret-0123456789\nno colon on this line\n');
  taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  workerScript = await checkWorkerScript();
  client = etcd.client();
  // The client connected before any count: its channel is the test's, not authz's.
  await new MeshStore(client, new KeyLayout(etcd.prefix)).ensureMeshSettings({ tokenIssuer: 'trellis', clockSkewSeconds: 30 });
}, 180_000);
afterAll(async () => {
  client?.close();
  taken?.close();
  await Promise.all([etcd?.close(), redis?.close(), keys?.remove(), dir && rm(dir, { recursive: true, force: true })]);
});

const takenPort = () => String((taken.address() as AddressInfo).port);
const withTls = () => operatorCaEnv(dir, TRUST_DOMAIN);

describe.each<[string, () => Record<string, string>, RegExp]>([
  ['its gRPC port taken (the Check worker serves it)', () => ({ TRELLIS_GRPC_PORT: takenPort() }), PORT_TAKEN],
  [
    'its gRPC port taken (the main thread serves it)',
    () => ({ TRELLIS_CHECK_WORKER: 'false', TRELLIS_GRPC_PORT: takenPort() }),
    PORT_TAKEN,
  ],
  ['its HTTP port taken', () => ({ TRELLIS_HTTP_PORT: takenPort() }), PORT_TAKEN],
  ['its mTLS port taken', () => ({ ...withTls(), TRELLIS_MTLS_PORT: takenPort() }), PORT_TAKEN],
  [
    'a mesh CA key that is not a key',
    () => ({ ...withTls(), TRELLIS_CA_KEY_FILE: join(dir, 'not-a-key.pem') }),
    /the CA key is not a readable PEM private key/,
  ],
  [
    'a TLS certificate file that does not exist',
    () => ({
      TRELLIS_ALLOW_INSECURE_CALLERS: 'false',
      TRELLIS_TLS_CERT_FILE: join(dir, 'missing.crt'),
      TRELLIS_TLS_KEY_FILE: join(dir, 'ca.key'),
      TRELLIS_TLS_CLIENT_CA_FILE: join(dir, 'bundle.crt'),
    }),
    /ENOENT.*missing\.crt/,
  ],
  [
    'a TRELLIS_TOKEN_ENDPOINT_CREDENTIALS file that does not parse',
    () => ({ ...withTls(), TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: join(dir, 'callers-broken') }),
    /line 2/,
  ],
  [
    'no way to verify callers (no TLS, insecure callers not allowed)',
    () => ({ TRELLIS_ALLOW_INSECURE_CALLERS: 'false' }),
    /cannot verify who calls it/,
  ],
])('startAuthz with %s', (_name, env, failure) => {
  it('rejects with that failure and leaves nothing it started open', async () => {
    const config = loadAuthzConfig({ ...authzTestEnv(etcd, redis, keys), ...env() });
    const before = activeResources();
    await expect(
      startAuthz({
        config,
        logger: createLogger('authz', process.env['TRELLIS_LOG_LEVEL'] ?? 'silent'),
        etcd: client,
        checkWorker: { script: workerScript },
      }),
    ).rejects.toThrow(failure);
    await nothingLeftOpenSince(before, 'nothing authz started left open');
  }, 120_000);
});

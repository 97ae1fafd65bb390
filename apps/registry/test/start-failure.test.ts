// startRegistry failing part way: on an HTTP port already in use, or with a TRELLIS_SERVICE_CREDENTIALS file that
// does not load, it rejects with that failure and stops what it had started before (the view's etcd watch, the lease
// pool, the secret files' polls), so that nothing it started keeps the process alive.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyLayout, MeshStore, type EtcdClient } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { activeResources, nothingLeftOpenSince, startEtcd, type TestEtcd } from '@trellis/testing';
import { startRegistry, type RegistryOptions } from '../src/registry';

let etcd: TestEtcd;
let client: EtcdClient;
let layout: KeyLayout;
beforeAll(async () => {
  etcd = await startEtcd();
  client = etcd.client();
  layout = new KeyLayout(etcd.prefix);
  // The client connected before any count: its channel is the test's, not the registry's.
  await new MeshStore(client, layout).ensureMeshSettings({ tokenIssuer: 'trellis', clockSkewSeconds: 30 });
}, 120_000);
afterAll(async () => {
  client?.close();
  await etcd?.close();
});

const baseConfig: RegistryOptions = {
  TRELLIS_HOST: '127.0.0.1',
  TRELLIS_HTTP_PORT: 0,
  TRELLIS_ADMIN_TOKEN: 'an-admin-token-of-some-length',
  TRELLIS_READS_REQUIRE_AUTH: false,
  TRELLIS_MAX_BODY_BYTES: 64 * 1024,
  TRELLIS_SECURE_COOKIES: false,
  TRELLIS_AUTH_JWKS_URL: undefined,
  TRELLIS_AUTH_ISSUER: undefined,
  TRELLIS_AUTH_AUDIENCE: 'trellis-registry',
};

function start(config: Partial<RegistryOptions>) {
  return startRegistry({ config: { ...baseConfig, ...config }, etcd: client, layout, logger: createLogger('registry', 'silent') });
}

it('startRegistry with its HTTP port taken rejects with the error of the listen and leaves nothing it started open', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const before = activeResources();
    await expect(start({ TRELLIS_HTTP_PORT: (taken.address() as AddressInfo).port })).rejects.toThrow(/EADDRINUSE/);
    await nothingLeftOpenSince(before, 'nothing the registry started left open');
  } finally {
    taken.close();
  }
}, 120_000);

it('startRegistry with a TRELLIS_SERVICE_CREDENTIALS file that does not parse rejects naming it and leaves nothing it started open', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'registry-start-failure-'));
  try {
    const credentials = join(dir, 'credentials');
    await writeFile(credentials, 'payments:a-secret\nno colon on this line\n');
    const before = activeResources();
    await expect(start({ TRELLIS_SERVICE_CREDENTIALS: credentials })).rejects.toThrow(/TRELLIS_SERVICE_CREDENTIALS: .*line 2/);
    await nothingLeftOpenSince(before, 'nothing the registry started left open');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 120_000);

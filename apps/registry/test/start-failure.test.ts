// startRegistry on an HTTP port already in use: it rejects with the listen's error, and stops what it had started
// before (the view's etcd watch, the lease pool, the secret files' polls), so that nothing it started keeps the
// process alive.
import { createServer, type AddressInfo } from 'node:net';
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { activeResources, nothingLeftOpenSince, startEtcd, type TestEtcd } from '@trellis/testing';
import { startRegistry } from '../src/registry';

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startEtcd();
}, 120_000);
afterAll(() => etcd?.close());

it('startRegistry with its HTTP port taken rejects with the error of the listen and leaves nothing it started open', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const client = etcd.client();
  try {
    const layout = new KeyLayout(etcd.prefix);
    // The client connected before the count: its channel is the test's, not the registry's.
    await new MeshStore(client, layout).ensureMeshSettings({ tokenIssuer: 'trellis', clockSkewSeconds: 30 });
    const before = activeResources();
    const start = startRegistry({
      config: {
        TRELLIS_HOST: '127.0.0.1',
        TRELLIS_HTTP_PORT: (taken.address() as AddressInfo).port,
        TRELLIS_ADMIN_TOKEN: 'an-admin-token-of-some-length',
        TRELLIS_READS_REQUIRE_AUTH: false,
        TRELLIS_MAX_BODY_BYTES: 64 * 1024,
        TRELLIS_SECURE_COOKIES: false,
        TRELLIS_AUTH_JWKS_URL: undefined,
        TRELLIS_AUTH_ISSUER: undefined,
        TRELLIS_AUTH_AUDIENCE: 'trellis-registry',
      },
      etcd: client,
      layout,
      logger: createLogger('registry', 'silent'),
    });
    await expect(start).rejects.toThrow(/EADDRINUSE/);
    await nothingLeftOpenSince(before, 'nothing the registry started left open');
  } finally {
    client.close();
    taken.close();
  }
}, 120_000);

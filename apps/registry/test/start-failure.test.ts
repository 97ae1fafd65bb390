// startRegistry on an HTTP port already in use: it rejects with the listen's error, and stops what it had started
// before (the view's etcd watch, the lease pool, the secret files' polls), so that nothing it started keeps the
// process alive.
import { createServer, type AddressInfo } from 'node:net';
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { eventually, startEtcd, type TestEtcd } from '@trellis/testing';
import { startRegistry } from '../src/registry';

/** What keeps this process alive, by kind (servers, sockets, ref'd timers): process.getActiveResourcesInfo. */
function activeResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

/** Kinds with more active now than in `before`, and how many more. */
function addedSince(before: Map<string, number>): Record<string, number> {
  const added: Record<string, number> = {};
  for (const [kind, count] of activeResources()) if (count > (before.get(kind) ?? 0)) added[kind] = count - (before.get(kind) ?? 0);
  return added;
}

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
    // Closing takes a few turns (the watch's cancel, the pooled leases' revoke): a correctness wait, not a timing.
    await eventually(
      'nothing the registry started left open',
      () => Object.keys(addedSince(before)).length === 0 || undefined,
      30_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; still open: ${JSON.stringify(addedSince(before))}`);
    });
  } finally {
    client.close();
    taken.close();
  }
}, 120_000);

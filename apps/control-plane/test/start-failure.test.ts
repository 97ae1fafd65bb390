// startControlPlane on a port already in use: it rejects with the bind's error, and stops what it had started before
// the failure (the etcd watch, its liveness probe, the proxy status writer, the rebuild loop; the bound xDS port when
// the HTTP port is the taken one), so that nothing it started keeps the process alive.
import { createServer, type AddressInfo, type Server } from 'node:net';
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { eventually, startEtcd, type TestEtcd } from '@trellis/testing';
import { startControlPlane, type ControlPlaneOptions } from '../src/control-plane';
import { TEST_CONTROL_PLANE_OPTIONS } from './support/control-plane-harness';

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

async function listeningServer(): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

describe.each([
  ['xDS', 'TRELLIS_XDS_PORT'],
  ['HTTP', 'TRELLIS_HTTP_PORT'],
] as const)('startControlPlane with its %s port taken', (_name, portSetting) => {
  it('rejects with the error of the bind and leaves nothing it started open', async () => {
    const taken = await listeningServer();
    const client = etcd.client();
    try {
      const layout = new KeyLayout(etcd.prefix);
      // The client connected before the count: its channel is the test's, not the control plane's.
      await new MeshStore(client, layout).ensureMeshSettings({ tokenIssuer: 'trellis', clockSkewSeconds: 30 });
      const before = activeResources();
      const config: ControlPlaneOptions = { ...TEST_CONTROL_PLANE_OPTIONS, [portSetting]: (taken.address() as AddressInfo).port };
      await expect(startControlPlane({ config, etcd: client, layout, logger: createLogger('control-plane', 'silent') })).rejects.toThrow(
        /EADDRINUSE|in use|No address added/,
      );
      // Closing takes a few turns (the watch's cancel, the status lease's revoke): a correctness wait, not a timing.
      await eventually(
        'nothing the control plane started left open',
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
});

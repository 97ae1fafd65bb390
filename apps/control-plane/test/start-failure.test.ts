// startControlPlane on a port already in use: it rejects with the bind's error, and stops what it had started before
// the failure (the etcd watch, its liveness probe, the proxy status writer, the rebuild loop; the bound xDS port when
// the HTTP port is the taken one), so that nothing it started keeps the process alive.
import { createServer, type AddressInfo, type Server } from 'node:net';
import { KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { activeResources, nothingLeftOpenSince, startEtcd, type TestEtcd } from '@trellis/testing';
import { startControlPlane, type ControlPlaneOptions } from '../src/control-plane';
import { TEST_CONTROL_PLANE_OPTIONS } from './support/control-plane-harness';

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
      await nothingLeftOpenSince(before, 'nothing the control plane started left open');
    } finally {
      client.close();
      taken.close();
    }
  }, 120_000);
});

// ProxyStatusWriter against a real etcd: closing while a flush is under way must not
// leave a lease (and the records written under it) behind.
import { connectEtcd, KeyLayout, MeshStore, type EtcdClient } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { startEtcd, type TestEtcd } from '@trellis/testing';
import { ProxyStatusWriter } from './proxy-status-writer';

let etcd: TestEtcd;
let client: EtcdClient;

beforeAll(async () => {
  etcd = await startEtcd();
  client = connectEtcd({ endpoints: etcd.endpoints });
});
afterAll(async () => {
  client?.close();
  await etcd?.close();
});

it('close() waits for a flush under way, then revokes the lease it granted', async () => {
  const layout = new KeyLayout(etcd.prefix);
  const store = new MeshStore(client, layout);
  const warnings: unknown[] = [];
  const logger = createLogger('test', 'silent');
  logger.warn = ((obj: unknown) => void warnings.push(obj)) as typeof logger.warn;
  const writer = new ProxyStatusWriter({ client, store, controlPlaneId: 'cp-test', logger, leaseTtlSeconds: 60 });
  const leasesBefore = (await client.leaseClient.leaseLeases()).leases.length;

  writer.onStreamOpen({ streamId: 1, nodeId: 'a-1', identity: { service: 'a', kind: 'envoy' }, protocol: 'sotw', connectedAt: new Date() });
  // The first flush grants the lease; close() arrives while that is still in flight.
  const flushing = writer.flush();
  await writer.close();
  await flushing;

  expect((await client.leaseClient.leaseLeases()).leases.length).toBe(leasesBefore);
  expect(await store.listProxyStatuses('a')).toEqual([]);
  expect(warnings).toEqual([]);
});

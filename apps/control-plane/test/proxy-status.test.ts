// Proxy status records in etcd: one per connected proxy, written within a
// per-flush budget, deleted on disconnect, all gone when the replica stops.
import { TypeUrl } from '@trellis/envoy-types';
import { AdsTestClient, testNode } from './support/ads-client';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';

jest.setTimeout(60_000);

describe('proxy status in etcd', () => {
  let h: ControlPlaneHarness;
  const clients: AdsTestClient<'sotw'>[] = [];

  beforeAll(async () => {
    h = await startControlPlaneHarness({ TRELLIS_PROXY_STATUS_INTERVAL_MS: 300, TRELLIS_PROXY_STATUS_MAX_WRITES: 1 });
    await h.store.createService({ name: 'a', team: 'core', protocol: 'http', port: 8080 }, 'test');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await h?.stop();
  });

  it('writes within the budget, deletes on disconnect, and vanishes with the replica', async () => {
    for (let i = 0; i < 3; i++) {
      const c = AdsTestClient.open(h.xdsAddress, 'sotw');
      c.send({ node: testNode('a', `a-status-${i}`), typeUrl: TypeUrl.Cluster });
      clients.push(c);
    }
    await Promise.all(clients.map((c) => c.next()));
    // One write per 300 ms flush: the third record lands two flushes after the first.
    const first = await eventually('a first status', async () =>
      (await h.store.listProxyStatuses('a')).length >= 1 ? Date.now() : undefined,
    );
    const all = await eventually('three statuses', async () =>
      (await h.store.listProxyStatuses('a')).length === 3 ? Date.now() : undefined,
    );
    expect(all - first).toBeGreaterThanOrEqual(450);
    const statuses = await h.store.listProxyStatuses('a');
    expect(statuses.map((s) => s.nodeId).sort()).toEqual(['a-status-0', 'a-status-1', 'a-status-2']);
    expect(statuses.every((s) => s.controlPlane === 'cp-test' && s.types.cds?.lastSentVersion)).toBe(true);

    clients.shift()!.close();
    await eventually('the closed stream’s status gone', async () =>
      (await h.store.listProxyStatuses('a')).length === 2 ? true : undefined,
    );

    await h.cp.close();
    expect(await h.store.listProxyStatuses('a')).toEqual([]);
  });
});

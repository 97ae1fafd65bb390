// Fan-out over real etcd and real gRPC streams: one registry change reaches every
// proxy whose config it touches, and nothing reaches the others. Prints the
// write → response latencies (p50/p99) it measured.
import { TypeUrl } from '@trellis/envoy-types';
import type { DiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { AdsTestClient, testNode } from './support/ads-client';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';

jest.setTimeout(120_000);

const SERVICES = Number(process.env['TRELLIS_FANOUT_SERVICES'] ?? 400);
const PROXIES = Number(process.env['TRELLIS_FANOUT_PROXIES'] ?? 300);

/** Every 3rd service calls `hub`; the rest call their neighbour. */
const callsHub = (i: number) => i % 3 === 0;

describe(`fan-out: ${SERVICES} services, ${PROXIES} connected proxies`, () => {
  let h: ControlPlaneHarness;
  const proxies: { service: string; client: AdsTestClient<'sotw'>; last: DiscoveryResponse }[] = [];

  beforeAll(async () => {
    h = await startControlPlaneHarness();
    await h.store.createService({ name: 'hub', team: 'core', protocol: 'http', port: 8080 }, 'test');
    for (let i = 0; i < SERVICES; i++) {
      const dependency = callsHub(i) ? 'hub' : `svc-${(i + 1) % SERVICES}`;
      await h.store.createService(
        { name: `svc-${i}`, team: 'core', protocol: 'http', port: 8080, dependencies: [{ service: dependency }] },
        'test',
      );
    }
    await eventually('the model to hold every service', () => (h.cp.model()?.services.size === SERVICES + 1 ? true : undefined), 30_000);
    for (let p = 0; p < PROXIES; p++) {
      const service = `svc-${p % SERVICES}`;
      const client = AdsTestClient.open(h.xdsAddress, 'sotw');
      client.send({ node: testNode(service, `${service}-${p}`), typeUrl: TypeUrl.Cluster });
      proxies.push({ service, client, last: undefined as unknown as DiscoveryResponse });
    }
    for (const proxy of proxies) {
      proxy.last = await proxy.client.next();
      proxy.client.send({ typeUrl: TypeUrl.Cluster, versionInfo: proxy.last.versionInfo, responseNonce: proxy.last.nonce });
    }
  });

  afterAll(async () => {
    for (const { client } of proxies) client.close();
    await h?.stop();
  });

  it('pushes a change of hub to exactly its callers', async () => {
    const affected = proxies.filter((p) => callsHub(Number(p.service.slice(4))));
    const unaffected = proxies.filter((p) => !callsHub(Number(p.service.slice(4))));
    const t0 = Date.now();
    await h.store.updateService(
      { name: 'hub', team: 'core', protocol: 'http', port: 8080, policy: { circuitBreaker: { maxConnections: 77 } } },
      'test',
    );
    const latencies = await Promise.all(
      affected.map(async (p) => {
        const res = await p.client.next();
        expect(res.typeUrl).toBe(TypeUrl.Cluster);
        expect(res.versionInfo).not.toBe(p.last.versionInfo);
        return Date.now() - t0;
      }),
    );
    const quiet = await Promise.all(unaffected.map((p) => p.client.drain(300)));
    expect(quiet.flat()).toEqual([]);
    latencies.sort((a, b) => a - b);
    const pct = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
    console.log(
      `hub change → ${affected.length} affected proxies: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${latencies.at(-1)} ms; ${unaffected.length} unaffected proxies got nothing`,
    );
    // Latency is reported, not asserted: a timed assertion on a shared 2-core machine is a
    // flaky test, not a measurement. The 1 s p99 target belongs to a benchmark under tools/.
    expect(latencies).toHaveLength(affected.length);
  });
});

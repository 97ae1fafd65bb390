import { TypeUrl } from '@trellis/envoy-types';
import { buildProxyResources, sharedUpstreamsChange } from './envoy';
import { affectedTest, buildMeshModel, DEFAULT_TRANSLATOR_SETTINGS, type MeshModel } from './model';
import { MeshFixture } from './model/mesh-fixture';
import { snapshotInconsistencies, TranslationMemo, type ProxyIdentity } from './resource';
import { RehearsalStreams } from './stream-rehearsal';
import { SnapshotCache } from './xds';

const settings = DEFAULT_TRANSLATOR_SETTINGS;

/** hub and eight callers of it (the eighth stream, caller-6, speaks Delta), instances for each. */
function mesh(maxConnections = 100): MeshFixture {
  const f = new MeshFixture().service('hub', { protocol: 'http', policy: { circuitBreaker: { maxConnections } } });
  f.instance('hub', 'hub-1', '10.0.0.1');
  for (let i = 0; i < 8; i++) {
    f.service(`caller-${i}`, { dependencies: [{ service: 'hub' }] });
    f.instance(`caller-${i}`, `c${i}`, `10.0.1.${i + 1}`);
  }
  return f;
}

const identities: ProxyIdentity[] = ['hub', ...Array.from({ length: 8 }, (_, i) => `caller-${i}`)].map((service) => ({
  service,
  kind: 'envoy',
}));

function newCache(): SnapshotCache<MeshModel> {
  const memo = new TranslationMemo();
  return new SnapshotCache<MeshModel>((m, identity) => buildProxyResources(m, identity, memo), {
    check: snapshotInconsistencies,
    sharedTypesChange: sharedUpstreamsChange,
  });
}

describe('RehearsalStreams', () => {
  it('runs SotW and Delta sessions through first responses, ACKs, EDS and RDS requests, and a change-only push', async () => {
    const cache = newCache();
    const model = mesh().model();
    cache.setModel(model, 'all', { revision: model.revision, changedAt: 1 });
    const streams = new RehearsalStreams('cp-test', cache);
    const watches = identities.map((identity) => {
      const feed = streams.open(identity);
      const watch = cache.watch(identity, feed);
      feed(watch.snapshot!);
      return watch;
    });
    try {
      await streams.settle();
      // Every stream got its clusters and listeners, then (after its ACKs and follow-up requests) endpoints and routes.
      const first = new Map(streams.responses);
      for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Listener, TypeUrl.RouteConfiguration])
        expect(first.get(typeUrl)).toBe(identities.length);
      // hub calls nothing: no endpoints to ask for (an empty first EDS answer is not sent).
      expect(first.get(TypeUrl.ClusterLoadAssignment)).toBe(8);

      // hub's policy changes: its callers' clusters alone. The SotW callers ask for their endpoints again after the CDS
      // ACK and are answered; the Delta caller is sent them unasked (Envoy waits for them, warming).
      const next = buildMeshModel(mesh(50).state(), settings, model, new Set(['hub']));
      await cache.setModel(next, affectedTest(model, next), { revision: next.revision, changedAt: 2 }).settled;
      await streams.settle();
      expect(streams.responses.get(TypeUrl.Cluster)).toBe(identities.length + 8);
      expect(streams.responses.get(TypeUrl.ClusterLoadAssignment)).toBe(8 + 8);
      expect(streams.responses.get(TypeUrl.Listener)).toBe(identities.length);
    } finally {
      streams.close();
      for (const watch of watches) watch.cancel();
    }
  });

  it('sends nothing once closed, whatever snapshot arrives later', async () => {
    const cache = newCache();
    const model = mesh().model();
    cache.setModel(model, 'all', { revision: model.revision, changedAt: 1 });
    const streams = new RehearsalStreams('cp-test', cache);
    const feed = streams.open(identities[1]!);
    const watch = cache.watch(identities[1]!, feed);
    streams.close();
    feed(watch.snapshot!);
    await streams.settle();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(streams.responses.size).toBe(0);
    watch.cancel();
  });
});

import { TypeUrl } from '@trellis/envoy-types';
import { MeshFixture } from '../model/mesh-fixture';
import { buildMeshModel, DEFAULT_TRANSLATOR_SETTINGS } from '../model';
import { outboundClusterName } from './names';
import { buildProxyResources } from './proxy-resources';
import type { ProxyIdentity, ResourceSet } from '../resource';
import { TranslationMemo } from '../resource';

const flat = (set: ResourceSet) => [...set.values()].flatMap((m) => [...m.values()].map((r) => `${r.typeUrl} ${r.name} ${r.hash}`));

function mesh(): MeshFixture {
  const m = new MeshFixture().key('k1').service('b', {
    port: 9000,
    trafficSplit: [
      { name: 'v1', labels: { v: '1' }, weight: 70 },
      { name: 'v2', labels: { v: '2' }, weight: 30 },
    ],
  });
  m.service('db', { protocol: 'tcp', port: 5432 });
  for (const caller of ['a1', 'a2', 'a3']) m.service(caller, { dependencies: [{ service: 'b' }, { service: 'db' }] });
  m.service('a4', { dependencies: [{ service: 'b', policy: { timeoutMs: 10 } }] });
  return m
    .instance('b', 'b-1', '10.0.0.1', 9000, { labels: { v: '1' } })
    .instance('b', 'b-2', '10.0.0.2', 9000, { labels: { v: '2' } })
    .instance('db', 'db-1', '10.0.1.1', 5432);
}

const identities: ProxyIdentity[] = ['a1', 'a2', 'a3', 'a4', 'b', 'db'].flatMap((service) => [
  { service, kind: 'envoy' as const },
  { service, kind: 'proxyless' as const },
]);

describe('buildProxyResources with a TranslationMemo', () => {
  it('gives exactly what building without it gives, across model changes', () => {
    const fixture = mesh();
    const memo = new TranslationMemo();
    const changes: Array<(m: MeshFixture) => unknown> = [
      () => undefined,
      (m) => m.instance('b', 'b-3', '10.0.0.3', 9000, { labels: { v: '2' } }),
      (m) => m.instance('db', 'db-2', '10.0.1.2', 5432),
      (m) => m.service('b', { port: 9000, policy: { timeoutMs: 99 }, trafficSplit: [{ name: 'v1', labels: { v: '1' }, weight: 100 }] }),
      (m) => m.key('k2'),
      (m) => m.service('a5', { dependencies: [{ service: 'a1' }] }),
      (m) =>
        m.service('a2', {
          ingress: { host: 'a2.example.com' },
          dependencies: [{ service: 'b', policy: { rateLimit: { maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 100 } } }],
        }),
      (m) => m.service('db', { protocol: 'tcp', port: 5433 }),
    ];
    let previous;
    for (const change of changes) {
      change(fixture);
      const model = buildMeshModel(fixture.state(), mesh().model().settings, previous);
      for (const identity of identities) {
        expect(flat(buildProxyResources(model, identity, memo))).toEqual(flat(buildProxyResources(model, identity)));
      }
      previous = model;
    }
  });

  it("encodes a shared cluster once for all its callers, keeps an unchanged callee's across models, and forgets what two models no longer use", () => {
    const memo = new TranslationMemo();
    // Settings of its own: what is kept per settings object (the authz cluster) is then built in this test.
    const fixture = mesh();
    const model = fixture.model({ ...DEFAULT_TRANSLATOR_SETTINGS });
    const sets = ['a1', 'a2', 'a3'].map((service) => buildProxyResources(model, { service, kind: 'envoy' }, memo));
    // Only the authz cluster goes through the memo (once per settings object). A callee's clusters and endpoints
    // (b's two subset clusters and their endpoints, db's cluster and endpoints) are kept on the callee's model
    // object for every sidecar caller without an override, and built without a digest. Per identity: inbound
    // listener and routes, outbound listener and routes, db's TCP listener — each names its service, so it is
    // built directly, never looked up in the memo.
    expect(memo.misses).toBe(1);
    expect(memo.hits).toBe(0);
    for (const type of [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment])
      for (const [name, resource] of sets[0]!.get(type)!) for (const set of sets) expect(set.get(type)!.get(name)).toBe(resource);
    // The next model after a new endpoint in b's v1 subset: db is the same model object, so its cluster and
    // endpoints are the very resources of before; of b's (a new object) only that subset's endpoints differ in
    // content; the routes read b's subsets and weights, not its endpoints, and stay the very resources.
    fixture.instance('b', 'b-9', '10.0.0.9', 9000, { labels: { v: '1' } });
    const next = buildMeshModel(fixture.state(), model.settings, model);
    const nextSets = ['a1', 'a2', 'a3'].map((service) => buildProxyResources(next, { service, kind: 'envoy' }, memo));
    const differing: string[] = [];
    for (const [i, set] of nextSets.entries())
      for (const [type, resources] of set)
        for (const [name, resource] of resources) {
          const before = sets[i]!.get(type)!.get(name)!;
          const dbUpstream = name === outboundClusterName('db') && type !== TypeUrl.Listener;
          if (dbUpstream || type === TypeUrl.RouteConfiguration) expect(resource).toBe(before);
          if (resource.hash !== before.hash) differing.push(`${type} ${name}`);
        }
    expect(new Set(differing)).toEqual(new Set([`${TypeUrl.ClusterLoadAssignment} ${outboundClusterName('b', 'v1')}`]));
    const other = new MeshFixture().service('z').model();
    memo.use(other);
    memo.use(new MeshFixture().service('y').model());
    expect(memo.size).toBe(0);
    expect(buildProxyResources(model, { service: 'a1', kind: 'envoy' }, memo).get(TypeUrl.Cluster)!.size).toBe(4);
  });
});

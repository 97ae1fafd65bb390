// Incremental (Delta) ADS against the real gRPC server with a raw client.
import { TypeUrl } from '@trellis/envoy-types';
import { resourceVersion } from '../src/xds/delta-session';
import { AdsTestClient, testNode } from './support/ads-client';
import { startAdsHarness, type AdsHarness } from './support/ads-harness';
import { fakeModel, makeCluster, makeEndpoints, makeListener, makeRoute } from './support/resources';

describe('Delta ADS', () => {
  let harness: AdsHarness;
  let client: AdsTestClient<'delta'>;

  beforeEach(async () => {
    harness = await startAdsHarness(fakeModel({ a: [makeCluster('b'), makeCluster('c'), makeEndpoints('b', '10.0.0.1:80')] }));
    client = AdsTestClient.open(harness.address, 'delta');
  });
  afterEach(async () => {
    client.close();
    await harness.stop();
  });

  it('sends every resource once with its content version, then only what changed and what went away', async () => {
    client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
    const first = await client.next();
    expect(first.resources.map((r) => [r.name, r.version])).toEqual([
      ['b', resourceVersion(makeCluster('b'))],
      ['c', resourceVersion(makeCluster('c'))],
    ]);
    client.send({ typeUrl: TypeUrl.Cluster, responseNonce: first.nonce });
    expect(await client.drain()).toEqual([]);

    harness.setModel(fakeModel({ a: [makeCluster('b', 9), makeEndpoints('b', '10.0.0.1:80')] }));
    const second = await client.next();
    expect(second.resources.map((r) => r.name)).toEqual(['b']);
    expect(second.removedResources).toEqual(['c']);
  });

  it('sends nothing new to a reconnecting client whose initial_resource_versions are current: one empty answer', async () => {
    client.send({
      node: testNode('a'),
      typeUrl: TypeUrl.Cluster,
      initialResourceVersions: { b: resourceVersion(makeCluster('b')), c: resourceVersion(makeCluster('c')) },
    });
    const answer = await client.next();
    expect(answer).toMatchObject({ resources: [], removedResources: [] });
    client.send({ typeUrl: TypeUrl.Cluster, responseNonce: answer.nonce });
    expect(await client.drain(400)).toEqual([]);
  });

  it('answers a reconnecting client with what changed while it was away: differing versions and what is gone, nothing it holds', async () => {
    // The xDS protocol's reconnect: initial_resource_versions tells what the client holds; the server sends only the
    // difference (Istio does the same since its ztunnel reconnects resent everything), and answers even when it is empty.
    client.send({
      node: testNode('a'),
      typeUrl: TypeUrl.Cluster,
      initialResourceVersions: { b: resourceVersion(makeCluster('b', 7)), c: resourceVersion(makeCluster('c')), gone: 'f00' },
    });
    const answer = await client.next();
    expect(answer.resources.map((r) => [r.name, r.version])).toEqual([['b', resourceVersion(makeCluster('b'))]]);
    expect(answer.removedResources).toEqual(['gone']);
    client.send({ typeUrl: TypeUrl.Cluster, responseNonce: answer.nonce });
    expect(await client.drain(400)).toEqual([]);
    expect(harness.events.filter((e) => e.event === 'onAck')).toHaveLength(1);
  });

  it('answers the first request of each type even when there is nothing to send, then only changes', async () => {
    client.send({ node: testNode('nobody'), typeUrl: TypeUrl.Cluster });
    const cds = await client.next();
    expect(cds).toMatchObject({ typeUrl: TypeUrl.Cluster, resources: [], removedResources: [] });
    client.send({ typeUrl: TypeUrl.Cluster, responseNonce: cds.nonce });
    client.send({ typeUrl: TypeUrl.Listener });
    const lds = await client.next();
    expect(lds).toMatchObject({ typeUrl: TypeUrl.Listener, resources: [], removedResources: [] });
    client.send({ typeUrl: TypeUrl.Listener, responseNonce: lds.nonce });
    expect(await client.drain()).toEqual([]);
  });

  it('does not resend a NACKed resource version; the next content change goes out', async () => {
    client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
    const first = await client.next();
    client.send({ typeUrl: TypeUrl.Cluster, responseNonce: first.nonce });
    harness.setModel(fakeModel({ a: [makeCluster('b', 7), makeCluster('c')] }));
    const bad = await client.next();
    client.send({ typeUrl: TypeUrl.Cluster, responseNonce: bad.nonce, errorDetail: { code: 3, message: 'bad cluster b' } });
    harness.setModel(fakeModel({ a: [makeCluster('b', 7), makeCluster('c')] }));
    expect(await client.drain(500)).toEqual([]);
    harness.setModel(fakeModel({ a: [makeCluster('b', 8), makeCluster('c')] }));
    const next = await client.next();
    expect(next.resources.map((r) => [r.name, r.version])).toEqual([['b', resourceVersion(makeCluster('b', 8))]]);
    expect(harness.events.filter((e) => e.event === 'onNack')).toHaveLength(1);
  });

  it('answers an explicit subscription to a missing resource with its removal, once', async () => {
    client.send({ node: testNode('a'), typeUrl: TypeUrl.ClusterLoadAssignment, resourceNamesSubscribe: ['b', 'nope'] });
    const res = await client.next();
    expect(res.resources.map((r) => r.name)).toEqual(['b']);
    expect(res.removedResources).toEqual(['nope']);
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, responseNonce: res.nonce });
    expect(await client.drain()).toEqual([]);
  });

  /** Clusters (wildcard) and the endpoints of b, both acknowledged; routing too when the model has it. */
  async function subscribeClustersAndEndpoints(): Promise<void> {
    client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
    const cds = await client.next();
    client.send({ typeUrl: TypeUrl.Cluster, responseNonce: cds.nonce });
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNamesSubscribe: ['b'] });
    const eds = await client.next();
    expect(eds.resources.map((r) => r.name)).toEqual(['b']);
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, responseNonce: eds.nonce });
    expect(await client.drain()).toEqual([]);
  }

  it('resends the endpoints of a changed cluster after the CDS ACK, at their unchanged version, before routing moves on', async () => {
    harness.setModel(fakeModel({ a: [makeCluster('b'), makeCluster('c'), makeEndpoints('b', '10.0.0.1:80'), makeRoute('r', 'b')] }));
    await subscribeClustersAndEndpoints();
    client.send({ typeUrl: TypeUrl.RouteConfiguration, resourceNamesSubscribe: ['r'] });
    const rds = await client.next();
    client.send({ typeUrl: TypeUrl.RouteConfiguration, responseNonce: rds.nonce });
    expect(await client.drain()).toEqual([]);

    // Envoy re-creates b and, on a Delta stream, does not ask again: it waits warming for b's endpoints.
    harness.setModel(fakeModel({ a: [makeCluster('b', 9), makeCluster('c'), makeEndpoints('b', '10.0.0.1:80'), makeRoute('r', 'c')] }));
    const cds = await client.next();
    expect(cds).toMatchObject({ typeUrl: TypeUrl.Cluster, removedResources: [] });
    expect(cds.resources.map((r) => r.name)).toEqual(['b']);
    expect(await client.drain()).toEqual([]); // nothing else while the cluster change is unanswered
    client.send({ typeUrl: TypeUrl.Cluster, responseNonce: cds.nonce });
    const eds = await client.next();
    expect(eds.typeUrl).toBe(TypeUrl.ClusterLoadAssignment);
    expect(eds.resources.map((r) => [r.name, r.version])).toEqual([['b', resourceVersion(makeEndpoints('b', '10.0.0.1:80'))]]);
    expect(await client.drain()).toEqual([]); // the route waits for the endpoints' ACK (make-before-break)
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, responseNonce: eds.nonce });
    const route = await client.next();
    expect(route.typeUrl).toBe(TypeUrl.RouteConfiguration);
    client.send({ typeUrl: TypeUrl.RouteConfiguration, responseNonce: route.nonce });
    expect(await client.drain()).toEqual([]);
  });

  it('does not resend endpoints when the clusters that changed do not use them', async () => {
    await subscribeClustersAndEndpoints();
    harness.setModel(fakeModel({ a: [makeCluster('b'), makeCluster('c', 9), makeEndpoints('b', '10.0.0.1:80')] }));
    const cds = await client.next();
    expect(cds.resources.map((r) => r.name)).toEqual(['c']);
    client.send({ typeUrl: TypeUrl.Cluster, responseNonce: cds.nonce });
    expect(await client.drain()).toEqual([]);
  });

  it('does not resend endpoints the client rejected when their cluster changes', async () => {
    await subscribeClustersAndEndpoints();
    harness.setModel(fakeModel({ a: [makeCluster('b'), makeCluster('c'), makeEndpoints('b', '10.0.0.2:80')] }));
    const bad = await client.next();
    expect(bad.typeUrl).toBe(TypeUrl.ClusterLoadAssignment);
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, responseNonce: bad.nonce, errorDetail: { code: 3, message: 'bad endpoints b' } });
    harness.setModel(fakeModel({ a: [makeCluster('b', 9), makeCluster('c'), makeEndpoints('b', '10.0.0.2:80')] }));
    const cds = await client.next();
    expect(cds.typeUrl).toBe(TypeUrl.Cluster);
    client.send({ typeUrl: TypeUrl.Cluster, responseNonce: cds.nonce });
    expect(await client.drain(500)).toEqual([]);
  });

  it('answers a re-subscription to a resource the client already holds, once', async () => {
    await subscribeClustersAndEndpoints();
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNamesSubscribe: ['b'] });
    const again = await client.next();
    expect(again.resources.map((r) => [r.name, r.version])).toEqual([['b', resourceVersion(makeEndpoints('b', '10.0.0.1:80'))]]);
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, responseNonce: again.nonce });
    expect(await client.drain()).toEqual([]);
  });

  it('answers a re-subscription to a missing resource with its removal again', async () => {
    client.send({ node: testNode('a'), typeUrl: TypeUrl.ClusterLoadAssignment, resourceNamesSubscribe: ['nope'] });
    const first = await client.next();
    expect(first.removedResources).toEqual(['nope']);
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, responseNonce: first.nonce, resourceNamesSubscribe: ['nope'] });
    const again = await client.next();
    expect(again).toMatchObject({ resources: [], removedResources: ['nope'] });
  });

  it('keeps a removed cluster until listeners and routes that may use it are acknowledged', async () => {
    harness.setModel(fakeModel({ a: [makeCluster('b'), makeCluster('c'), makeListener('l'), makeRoute('r', 'c')] }));
    client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
    const cds = await client.next();
    client.send({ typeUrl: TypeUrl.Cluster, responseNonce: cds.nonce });
    client.send({ typeUrl: TypeUrl.Listener });
    client.send({ typeUrl: TypeUrl.RouteConfiguration, resourceNamesSubscribe: ['r'] });
    const [lds, rds] = [await client.next(), await client.next()];
    client.send({ typeUrl: TypeUrl.Listener, responseNonce: lds.nonce });
    client.send({ typeUrl: TypeUrl.RouteConfiguration, responseNonce: rds.nonce });
    expect(await client.drain()).toEqual([]);

    harness.setModel(fakeModel({ a: [makeCluster('b'), makeListener('l'), makeRoute('r', 'b')] }));
    const route = await client.next();
    expect(route.typeUrl).toBe(TypeUrl.RouteConfiguration);
    expect(await client.drain()).toEqual([]); // c stays while the new route is unacknowledged
    client.send({ typeUrl: TypeUrl.RouteConfiguration, responseNonce: route.nonce });
    const removal = await client.next();
    expect(removal).toMatchObject({ typeUrl: TypeUrl.Cluster, resources: [], removedResources: ['c'] });
  });
});

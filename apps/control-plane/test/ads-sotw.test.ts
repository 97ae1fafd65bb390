// State-of-the-world ADS against the real gRPC server with a raw client.
import { Client, credentials, Metadata, status as GrpcStatus, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { Node } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { AggregatedDiscoveryServiceService } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { DiscoveryRequest, DiscoveryResponse as DiscoveryResponseMessage } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { TypeUrl } from '@trellis/envoy-types';
import { Cluster } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { versionOf } from '../src/xds/versions';
import { AdsTestClient, envoyNode, testNode } from './support/ads-client';
import { OUTBOUND_PORT_METADATA } from '../src/envoy/names';
import { startAdsHarness, type AdsHarness } from './support/ads-harness';
import { fakeModel, makeCluster, makeEndpoints, makeListener, makeRoute } from './support/resources';

const base = () =>
  fakeModel({
    a: [makeCluster('b'), makeEndpoints('b', '10.0.0.1:80'), makeListener('outbound'), makeRoute('outbound', 'b')],
    other: [makeCluster('x')],
  });

const names = (r: DiscoveryResponseMessage) => r.resources.map((any) => Cluster.decode(any.value).name);

describe('SotW ADS', () => {
  let harness: AdsHarness;
  let client: AdsTestClient<'sotw'>;

  beforeEach(async () => {
    harness = await startAdsHarness(base());
    client = AdsTestClient.open(harness.address, 'sotw');
  });
  afterEach(async () => {
    client.close();
    await harness.stop();
  });

  /** Subscribes to CDS+EDS+LDS+RDS and ACKs everything; returns the last response per type. */
  async function subscribeAll(): Promise<Map<string, DiscoveryResponseMessage>> {
    const last = new Map<string, DiscoveryResponseMessage>();
    client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
    const cds = await client.next();
    last.set(cds.typeUrl, cds);
    client.ack(TypeUrl.Cluster, cds);
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNames: ['b'] });
    const eds = await client.next();
    last.set(eds.typeUrl, eds);
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNames: ['b'], versionInfo: eds.versionInfo, responseNonce: eds.nonce });
    client.send({ typeUrl: TypeUrl.Listener });
    const lds = await client.next();
    last.set(lds.typeUrl, lds);
    client.ack(TypeUrl.Listener, lds);
    client.send({ typeUrl: TypeUrl.RouteConfiguration, resourceNames: ['outbound'] });
    const rds = await client.next();
    last.set(rds.typeUrl, rds);
    client.send({
      typeUrl: TypeUrl.RouteConfiguration,
      resourceNames: ['outbound'],
      versionInfo: rds.versionInfo,
      responseNonce: rds.nonce,
    });
    return last;
  }

  it('answers each type with a content-derived version and stays quiet after the ACK', async () => {
    const last = await subscribeAll();
    const cds = last.get(TypeUrl.Cluster)!;
    expect(names(cds)).toEqual(['b']);
    expect(cds.versionInfo).toBe(versionOf([makeCluster('b')]));
    expect(cds.controlPlane?.identifier).toBe('test-cp');
    expect(await client.drain()).toEqual([]);
    expect(harness.events.filter((e) => e.event === 'onAck')).toHaveLength(4);
  });

  it('sends nothing to a proxy whose service the change does not touch', async () => {
    await subscribeAll();
    const model = base();
    model.set('other', fakeModel({ other: [makeCluster('y')] }).get('other')!);
    harness.setModel(model, ['other']);
    expect(await client.drain()).toEqual([]);
  });

  it('ignores a request that answers a stale nonce', async () => {
    client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
    const first = await client.next();
    client.ack(TypeUrl.Cluster, first);
    harness.setModel(fakeModel({ a: [makeCluster('b', 9)] }));
    const second = await client.next();
    expect(second.nonce).not.toBe(first.nonce);
    // A late request with the first nonce (and an error) must not count as a NACK of the second.
    client.nack(TypeUrl.Cluster, first, first.versionInfo, 'late');
    expect(await client.drain()).toEqual([]);
    expect(harness.events.some((e) => e.event === 'onStaleRequest')).toBe(true);
    expect(harness.events.some((e) => e.event === 'onNack')).toBe(false);
  });

  it('does not resend a NACKed version and sends the next good one when inputs change', async () => {
    client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
    const good = await client.next();
    client.ack(TypeUrl.Cluster, good);
    harness.setModel(fakeModel({ a: [makeCluster('b', 7)] }));
    const bad = await client.next();
    client.nack(TypeUrl.Cluster, bad, good.versionInfo, 'rejected: bad timeout');
    // The same inputs again (another replica's rebuild, an unrelated push): still nothing.
    harness.setModel(fakeModel({ a: [makeCluster('b', 7)] }));
    expect(await client.drain(500)).toEqual([]);
    const nack = harness.events.find((e) => e.event === 'onNack')!;
    // The harness's model revisions: 1 at start, 2 for the change that was rejected, 3 for the repeat.
    expect(nack.args.slice(1)).toEqual([TypeUrl.Cluster, bad.versionInfo, 'rejected: bad timeout', '2']);

    harness.setModel(fakeModel({ a: [makeCluster('b', 8)] }));
    const next = await client.next();
    expect(next.versionInfo).toBe(versionOf([makeCluster('b', 8)]));
    client.ack(TypeUrl.Cluster, next);
    expect(await client.drain()).toEqual([]);
  });

  it('answers a reconnecting proxy that holds the current versions once per type, at those versions, then stays quiet', async () => {
    const last = await subscribeAll();
    const version = (typeUrl: string) => last.get(typeUrl)!.versionInfo;
    client.close();
    client = AdsTestClient.open(harness.address, 'sotw');
    // Envoy re-sends every subscription on the new stream with the version it holds and no nonce.
    client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster, versionInfo: version(TypeUrl.Cluster) });
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNames: ['b'], versionInfo: version(TypeUrl.ClusterLoadAssignment) });
    client.send({ typeUrl: TypeUrl.Listener, versionInfo: version(TypeUrl.Listener) });
    client.send({ typeUrl: TypeUrl.RouteConfiguration, resourceNames: ['outbound'], versionInfo: version(TypeUrl.RouteConfiguration) });
    const acksBefore = harness.events.filter((e) => e.event === 'onAck').length;

    // Make-before-break as on a first push: listeners and routes once clusters and endpoints are acknowledged.
    for (const expected of [
      [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment],
      [TypeUrl.Listener, TypeUrl.RouteConfiguration],
    ]) {
      const batch = [await client.next(), await client.next()];
      expect(batch.map((r) => r.typeUrl).sort()).toEqual([...expected].sort());
      for (const r of batch) {
        expect(r.versionInfo).toBe(version(r.typeUrl));
        expect(r.resources).toEqual(last.get(r.typeUrl)!.resources);
        const names = r.typeUrl === TypeUrl.ClusterLoadAssignment ? ['b'] : r.typeUrl === TypeUrl.RouteConfiguration ? ['outbound'] : [];
        client.send({ typeUrl: r.typeUrl, resourceNames: names, versionInfo: r.versionInfo, responseNonce: r.nonce });
      }
    }
    expect(await client.drain(500)).toEqual([]);
    expect(harness.events.filter((e) => e.event === 'onAck').length - acksBefore).toBe(4);
    expect(harness.events.some((e) => e.event === 'onNack' || e.event === 'onStaleRequest')).toBe(false);
  });

  it('answers a reconnecting proxy that holds an older version with the current one', async () => {
    const last = await subscribeAll();
    client.close();
    harness.setModel(fakeModel({ a: [makeCluster('b', 9), makeEndpoints('b', '10.0.0.1:80'), makeListener('outbound')] }));
    client = AdsTestClient.open(harness.address, 'sotw');
    client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster, versionInfo: last.get(TypeUrl.Cluster)!.versionInfo });
    const cds = await client.next();
    expect(cds.versionInfo).toBe(versionOf([makeCluster('b', 9)]));
    client.ack(TypeUrl.Cluster, cds);
    expect(await client.drain()).toEqual([]);
  });

  it('pushes make-before-break: clusters and endpoints, then listeners and routes, then removes what is gone', async () => {
    await subscribeAll();
    harness.setModel(
      fakeModel({
        a: [
          makeCluster('c'),
          makeEndpoints('b', '10.0.0.1:80'),
          makeEndpoints('c', '10.0.0.2:80'),
          makeListener('outbound', 10001),
          makeRoute('outbound', 'c'),
        ],
      }),
    );
    const cds = await client.next();
    expect(cds.typeUrl).toBe(TypeUrl.Cluster);
    expect(names(cds)).toEqual(['b', 'c']); // b still referenced by the acknowledged route
    // Listeners and routes wait until the clusters are acknowledged.
    expect(await client.drain()).toEqual([]);
    client.ack(TypeUrl.Cluster, cds);
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNames: ['b', 'c'], versionInfo: '', responseNonce: '' });
    const eds = await client.next();
    expect(eds.typeUrl).toBe(TypeUrl.ClusterLoadAssignment);
    client.send({
      typeUrl: TypeUrl.ClusterLoadAssignment,
      resourceNames: ['b', 'c'],
      versionInfo: eds.versionInfo,
      responseNonce: eds.nonce,
    });
    const lds = await client.next();
    const rds = await client.next();
    expect([lds.typeUrl, rds.typeUrl]).toEqual([TypeUrl.Listener, TypeUrl.RouteConfiguration]);
    client.ack(TypeUrl.Listener, lds);
    expect(await client.drain()).toEqual([]); // route not yet acknowledged: b stays
    client.send({
      typeUrl: TypeUrl.RouteConfiguration,
      resourceNames: ['outbound'],
      versionInfo: rds.versionInfo,
      responseNonce: rds.nonce,
    });
    const removal = await client.next();
    expect(removal.typeUrl).toBe(TypeUrl.Cluster);
    expect(names(removal)).toEqual(['c']);
  });

  it('answers an endpoint re-request after a cluster change, even with an unchanged version (Envoy re-creates the cluster)', async () => {
    const last = await subscribeAll();
    const eds = last.get(TypeUrl.ClusterLoadAssignment)!;
    // Without a cluster change, a repeated request gets nothing.
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNames: ['b'], versionInfo: eds.versionInfo, responseNonce: eds.nonce });
    expect(await client.drain()).toEqual([]);

    harness.setModel(
      fakeModel({ a: [makeCluster('b', 9), makeEndpoints('b', '10.0.0.1:80'), makeListener('outbound'), makeRoute('outbound', 'b')] }),
    );
    const cds = await client.next();
    expect(cds.typeUrl).toBe(TypeUrl.Cluster);
    client.ack(TypeUrl.Cluster, cds);
    client.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNames: ['b'], versionInfo: eds.versionInfo, responseNonce: eds.nonce });
    const again = await client.next();
    expect(again).toMatchObject({ typeUrl: TypeUrl.ClusterLoadAssignment, versionInfo: eds.versionInfo });
    expect(again.nonce).not.toBe(eds.nonce);
    client.send({
      typeUrl: TypeUrl.ClusterLoadAssignment,
      resourceNames: ['b'],
      versionInfo: again.versionInfo,
      responseNonce: again.nonce,
    });
    expect(await client.drain()).toEqual([]);
  });

  it("serves a stream whose first request carries an Envoy's whole node (build version, hundreds of extensions)", async () => {
    client.send({ node: envoyNode('a', { id: 'a-7f9c', metadata: { [OUTBOUND_PORT_METADATA]: 15001 } }), typeUrl: TypeUrl.Cluster });
    const cds = await client.next();
    expect(names(cds)).toEqual(['b']);
    const opened = harness.events.find((e) => e.event === 'onStreamOpen')!.args[0] as { nodeId: string; identity: unknown };
    expect(opened.nodeId).toBe('a-7f9c');
    expect(opened.identity).toEqual({ service: 'a', kind: 'envoy', outboundPort: 15001 });
  });

  it('ends a stream whose request bytes are no DiscoveryRequest with INTERNAL and a reason, and serves the next one; skipped node fields are not judged', async () => {
    // Raw bytes on the wire, as a hostile or broken client sends them: the ADS server's own deserializer reads them.
    const raw = new Client(harness.address, credentials.createInsecure());
    const open = (bytes: Buffer): Promise<{ error?: ServiceError; response?: DiscoveryResponseMessage }> =>
      new Promise((resolve) => {
        const call: ClientDuplexStream<Buffer, Buffer> = raw.makeBidiStreamRequest(
          AggregatedDiscoveryServiceService.streamAggregatedResources.path,
          (b: Buffer) => b,
          (b: Buffer) => b,
          new Metadata(),
        );
        call.on('data', (response: Buffer) => {
          resolve({ response: DiscoveryResponseMessage.decode(response) });
          call.cancel();
        });
        call.on('error', (error: ServiceError) => resolve({ error }));
        call.write(bytes);
      });
    const nodeBytes = Buffer.from(Node.encode(testNode('a')).finish());
    const request = (node: Buffer): Buffer =>
      Buffer.concat([
        Buffer.from([0x12, node.length]),
        node,
        Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster })).finish()),
      ]);
    try {
      // A node whose length runs past the request; a node whose id runs past the node; a field with wire type 7.
      for (const bad of [
        Buffer.from([0x12, 0x50, 0x0a, 0x01, 0x61]),
        request(Buffer.from([0x0a, 0x40, 0x61])),
        Buffer.from([0x0f, 0x01]),
      ]) {
        const { error } = await open(bad);
        expect(error?.code).toBe(GrpcStatus.INTERNAL);
        expect(error?.details).toMatch(/deserializing request/);
      }
      // Extensions (node field 9) framed right but holding no Extension: never read, so the stream is served.
      const { response } = await open(request(Buffer.concat([nodeBytes, Buffer.from([0x4a, 0x03, 0x7f, 0x7f, 0x7f])])));
      expect(response && names(response)).toEqual(['b']);
      client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
      expect(names(await client.next())).toEqual(['b']);
    } finally {
      raw.close();
    }
  });

  it('refuses a stream whose first request has no usable node', async () => {
    client.send({ typeUrl: TypeUrl.Cluster });
    const closed = await client.closedWith();
    expect(closed.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(closed.details).toMatch(/node/);
  });

  it('never sends secrets to a client admitted without credentials', async () => {
    await harness.stop();
    harness = await startAdsHarness(base(), async () => ({ admitted: true, authenticated: false, method: 'insecure' }));
    client.close();
    client = AdsTestClient.open(harness.address, 'sotw');
    client.send({ node: testNode('a'), typeUrl: TypeUrl.Secret });
    client.send({ typeUrl: TypeUrl.Cluster });
    const first = await client.next();
    expect(first.typeUrl).toBe(TypeUrl.Cluster);
    expect(await client.drain()).toEqual([]);
  });
});

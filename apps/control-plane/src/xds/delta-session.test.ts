// DeltaSession without a transport: what it sends per resource, and when.
import { TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import { DeltaDiscoveryRequest, type DeltaDiscoveryResponse } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { fakeModel, makeCluster, makeEndpoints, makeListener, translateFake, type FakeModel } from '../../test/support/resources';
import type { XdsResource } from '../resource';
import { composeCallbacks, type StreamInfo } from './callbacks';
import { DeltaSession, resourceVersion } from './delta-session';
import { SnapshotCache } from './snapshot-cache';

const stream: StreamInfo = {
  streamId: 1,
  nodeId: 'a-1',
  identity: { service: 'a', kind: 'envoy' },
  protocol: 'delta',
  connectedAt: new Date(),
};
const tick = () => new Promise((r) => setImmediate(r));

function setup(resources: XdsResource[]) {
  const sent: DeltaDiscoveryResponse[] = [];
  const events: string[] = [];
  const callbacks = composeCallbacks({
    onAck: (_s, typeUrl) => events.push(`ack ${typeUrl}`),
    onNack: (_s, typeUrl, _version, error) => events.push(`nack ${typeUrl}: ${error}`),
    onStaleRequest: (_s, typeUrl) => events.push(`stale ${typeUrl}`),
  });
  const cache = new SnapshotCache<FakeModel>(translateFake);
  let revision = 0;
  const publish = (next: XdsResource[]) =>
    cache.setModel(fakeModel({ a: next }), 'all', { revision: String(++revision), changedAt: Date.now() });
  publish(resources);
  const session = new DeltaSession(stream, (r) => (sent.push(r), true), callbacks, 'cp', true);
  const watch = cache.watch(stream.identity, (snapshot) => session.setSnapshot(snapshot));
  session.setSnapshot(watch.snapshot!);
  const request = async (fields: Partial<DeltaDiscoveryRequest> & { typeUrl: XdsTypeUrl }) => {
    session.handleRequest(DeltaDiscoveryRequest.fromPartial(fields));
    await tick();
  };
  const last = () => sent[sent.length - 1]!;
  const ack = (response = last()) => request({ typeUrl: response.typeUrl as XdsTypeUrl, responseNonce: response.nonce });
  const close = () => {
    watch.cancel();
    session.close();
  };
  return { sent, events, publish, request, ack, last, close };
}

/** What a response carries, in a form that reads well in a failure. */
const summary = (r: DeltaDiscoveryResponse) => ({
  upserts: r.resources.map((x) => `${x.name}@${x.version}`),
  removed: r.removedResources,
});
const v = (resource: XdsResource) => `${resource.name}@${resourceVersion(resource)}`;

describe('DeltaSession', () => {
  it('sends every resource once, then only what changed and the names that went away', async () => {
    const [x, y, y2] = [makeCluster('x'), makeCluster('y'), makeCluster('y', 9)];
    const s = setup([x, y]);
    await s.request({ typeUrl: TypeUrl.Cluster });
    expect(summary(s.last())).toEqual({ upserts: [v(x), v(y)], removed: [] });
    await s.ack();

    s.publish([y2]);
    await tick();
    expect(s.sent.map(summary)).toHaveLength(2);
    expect(summary(s.last())).toEqual({ upserts: [v(y2)], removed: ['x'] });
    await s.ack();
    // Same content again: nothing to send.
    s.publish([makeCluster('y', 9)]);
    await tick();
    expect(s.sent).toHaveLength(2);
    expect(s.events).toEqual([`ack ${TypeUrl.Cluster}`, `ack ${TypeUrl.Cluster}`]);
    s.close();
  });

  it('keeps at most one response unanswered per type, and ignores an answer to an older nonce', async () => {
    const s = setup([makeCluster('x')]);
    await s.request({ typeUrl: TypeUrl.Cluster });
    const first = s.last();
    s.publish([makeCluster('x', 2)]);
    s.publish([makeCluster('x', 3)]);
    await tick();
    expect(s.sent).toHaveLength(1);
    await s.request({ typeUrl: TypeUrl.Cluster, responseNonce: 'not-a-nonce' });
    expect(s.sent).toHaveLength(1);
    expect(s.events).toEqual([`stale ${TypeUrl.Cluster}`]);

    // The ACK of the first lets only the latest content go.
    await s.ack(first);
    expect(s.sent).toHaveLength(2);
    expect(summary(s.last())).toEqual({ upserts: [v(makeCluster('x', 3))], removed: [] });
    s.close();
  });

  it('holds back a rejected version until its content changes, without a resend loop', async () => {
    const good = makeCluster('x');
    const bad = makeCluster('x', 7);
    const s = setup([good]);
    await s.request({ typeUrl: TypeUrl.Cluster });
    await s.ack();
    s.publish([bad]);
    await tick();
    const rejected = s.last();
    await s.request({
      typeUrl: TypeUrl.Cluster,
      responseNonce: rejected.nonce,
      errorDetail: { code: 3, message: 'bad timeout', details: [] },
    });
    expect(s.events).toContain(`nack ${TypeUrl.Cluster}: bad timeout`);
    // A later request (or an unrelated push) does not bring the rejected version back.
    await s.request({ typeUrl: TypeUrl.Cluster });
    s.publish([bad]);
    await tick();
    expect(s.sent).toHaveLength(2);

    const fixed = makeCluster('x', 8);
    s.publish([fixed]);
    await tick();
    expect(s.sent).toHaveLength(3);
    expect(summary(s.last())).toEqual({ upserts: [v(fixed)], removed: [] });
    s.close();
  });

  it('honours initial_resource_versions: a reconnecting client gets only what it lacks', async () => {
    const [x, y] = [makeCluster('x'), makeCluster('y')];
    const s = setup([x, y]);
    await s.request({ typeUrl: TypeUrl.Cluster, initialResourceVersions: { x: resourceVersion(x), y: 'old', gone: 'old' } });
    expect(summary(s.last())).toEqual({ upserts: [v(y)], removed: ['gone'] });
    s.close();
  });

  it('answers a subscription to a name again, and says once that a name does not exist', async () => {
    const e = makeEndpoints('x', '10.0.0.1:80');
    const s = setup([e]);
    await s.request({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNamesSubscribe: ['x', 'nope'] });
    expect(summary(s.last())).toEqual({ upserts: [v(e)], removed: ['nope'] });
    await s.ack();
    await s.request({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNamesSubscribe: ['x'] });
    expect(s.sent).toHaveLength(2);
    expect(summary(s.last())).toEqual({ upserts: [v(e)], removed: [] });
    await s.ack();
    await s.request({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNamesSubscribe: [] });
    expect(s.sent).toHaveLength(2);
    s.close();
  });

  it('resends, unasked, the endpoints of a cluster the client just accepted again', async () => {
    const e = makeEndpoints('x', '10.0.0.1:80');
    const s = setup([makeCluster('x'), e]);
    await s.request({ typeUrl: TypeUrl.Cluster });
    await s.ack();
    await s.request({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNamesSubscribe: ['x'] });
    await s.ack();
    expect(s.sent).toHaveLength(2);

    // The cluster changes: Envoy re-creates it and waits for endpoints it will not ask for.
    s.publish([makeCluster('x', 9), e]);
    await tick();
    expect(s.last().typeUrl).toBe(TypeUrl.Cluster);
    await s.ack();
    expect(s.sent).toHaveLength(4);
    expect({ type: s.last().typeUrl, ...summary(s.last()) }).toEqual({ type: TypeUrl.ClusterLoadAssignment, upserts: [v(e)], removed: [] });
    s.close();
  });

  it('changes listeners only after the clusters they may use are answered (make-before-break)', async () => {
    const s = setup([makeCluster('x'), makeListener('l')]);
    await s.request({ typeUrl: TypeUrl.Cluster });
    await s.request({ typeUrl: TypeUrl.Listener });
    expect(s.sent.map((r) => r.typeUrl)).toEqual([TypeUrl.Cluster]);
    await s.ack(s.sent[0]);
    expect(s.sent.map((r) => r.typeUrl)).toEqual([TypeUrl.Cluster, TypeUrl.Listener]);
    s.close();
  });
});

// Session logic without a transport: backpressure, unknown types, content versions.
import { TypeUrl } from '@trellis/envoy-types';
import {
  DeltaDiscoveryRequest,
  DiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryResponse,
} from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { toResourceSet } from '../resource';
import { fakeModel, makeCluster, makeListener, translateFake } from '../../test/support/resources';
import { composeCallbacks, type StreamInfo } from './callbacks';
import { DeltaSession } from './delta-session';
import { SnapshotCache } from './snapshot-cache';
import { SotwSession } from './sotw-session';

const stream: StreamInfo = {
  streamId: 1,
  nodeId: 'a-1',
  identity: { service: 'a', kind: 'envoy' },
  protocol: 'sotw',
  connectedAt: new Date(),
};
const tick = () => new Promise((r) => setImmediate(r));

function setup(writable: () => boolean) {
  const sent: DiscoveryResponse[] = [];
  const cache = new SnapshotCache(translateFake);
  cache.setModel(fakeModel({ a: [makeCluster('b'), makeListener('l')] }), 'all', { revision: '1', changedAt: Date.now() });
  const session = new SotwSession(stream, (r) => (sent.push(r), writable()), composeCallbacks(), 'cp', true);
  session.setSnapshot(cache.watch({ service: 'a', kind: 'envoy' }, () => {}).snapshot!);
  return { sent, session };
}

describe('SotwSession', () => {
  it('stops writing when the transport is full and resumes on drain', async () => {
    let room = false;
    const { sent, session } = setup(() => room);
    session.handleRequest(DiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster }));
    session.handleRequest(DiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Listener }));
    await tick();
    expect(sent.map((r) => r.typeUrl)).toEqual([TypeUrl.Cluster]); // listeners wait for the cluster ACK
    session.handleRequest(
      DiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster, versionInfo: sent[0]!.versionInfo, responseNonce: sent[0]!.nonce }),
    );
    await tick();
    expect(sent).toHaveLength(1); // the listener may go now, but the stream is full
    room = true;
    session.drained();
    expect(sent.map((r) => r.typeUrl)).toEqual([TypeUrl.Cluster, TypeUrl.Listener]);
    session.close();
  });

  it('answers an unknown type URL with false and sends nothing', () => {
    const { sent, session } = setup(() => true);
    expect(
      session.handleRequest(DiscoveryRequest.fromPartial({ typeUrl: 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig' })),
    ).toBe(false);
    expect(sent).toEqual([]);
    session.close();
  });

  it('derives versions only from content', () => {
    const a = new SnapshotCache(translateFake);
    a.setModel(fakeModel({ a: [makeCluster('b')] }), 'all', { revision: '5', changedAt: 1 });
    const b = new SnapshotCache(translateFake);
    b.setModel(new Map([['a', toResourceSet([makeCluster('b')])]]), 'all', { revision: '9', changedAt: 2 });
    const va = a.peek({ service: 'a', kind: 'envoy' })!.types.get(TypeUrl.Cluster)!.version;
    const vb = b.peek({ service: 'a', kind: 'envoy' })!.types.get(TypeUrl.Cluster)!.version;
    expect(va).toBe(vb);
  });

  it('names the mesh revision a NACKed response was built from, not the one current when the NACK arrives', async () => {
    const nacks: unknown[][] = [];
    const callbacks = composeCallbacks({ onNack: (...args) => nacks.push(args) });
    const cache = new SnapshotCache(translateFake);
    const identity = { service: 'a', kind: 'envoy' } as const;
    cache.setModel(fakeModel({ a: [makeCluster('b')] }), 'all', { revision: '10', changedAt: Date.now() });

    const sent: DiscoveryResponse[] = [];
    const sotw = new SotwSession(stream, (r) => (sent.push(r), true), callbacks, 'cp', true);
    const deltaSent: DeltaDiscoveryResponse[] = [];
    const delta = new DeltaSession({ ...stream, streamId: 2, protocol: 'delta' }, (r) => (deltaSent.push(r), true), callbacks, 'cp', true);
    const watches = [sotw, delta].map((session) => cache.watch(identity, (snapshot) => session.setSnapshot(snapshot)));
    for (const [i, session] of [sotw, delta].entries()) session.setSnapshot(watches[i]!.snapshot!);
    sotw.handleRequest(DiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster }));
    delta.handleRequest(DeltaDiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster }));
    await tick();
    sotw.handleRequest(
      DiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster, versionInfo: sent[0]!.versionInfo, responseNonce: sent[0]!.nonce }),
    );
    delta.handleRequest(DeltaDiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster, responseNonce: deltaSent[0]!.nonce }));
    await tick();

    // Revision 11 changes the cluster (the change that will be rejected); 12 and 13 change listeners while it is in flight.
    cache.setModel(fakeModel({ a: [makeCluster('b', 7)] }), 'all', { revision: '11', changedAt: Date.now() });
    cache.setModel(fakeModel({ a: [makeCluster('b', 7), makeListener('l')] }), 'all', { revision: '12', changedAt: Date.now() });
    expect([sent.length, deltaSent.length]).toEqual([2, 2]);
    cache.setModel(fakeModel({ a: [makeCluster('b', 7), makeListener('l', 10001)] }), 'all', { revision: '13', changedAt: Date.now() });
    const rejected = { code: 3, message: 'cluster b: bad timeout' };
    sotw.handleRequest(DiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster, responseNonce: sent[1]!.nonce, errorDetail: rejected }));
    delta.handleRequest(
      DeltaDiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster, responseNonce: deltaSent[1]!.nonce, errorDetail: rejected }),
    );

    expect(
      nacks.map(([s, typeUrl, version, error, meshRevision]) => [(s as StreamInfo).protocol, typeUrl, version, error, meshRevision]),
    ).toEqual([
      ['sotw', TypeUrl.Cluster, sent[1]!.versionInfo, 'cluster b: bad timeout', '11'],
      ['delta', TypeUrl.Cluster, deltaSent[1]!.systemVersionInfo, 'cluster b: bad timeout', '11'],
    ]);
    for (const w of watches) w.cancel();
    sotw.close();
    delta.close();
  });
});

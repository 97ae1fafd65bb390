// A change fanned out in slices (SnapshotCache with fanOutSliceMs) to SotW and Delta sessions whose
// clients answer as Envoy does between the slices: every affected stream gets its push before any
// stream's follow-up requests (ACKs, the EDS re-request for a re-created cluster) are answered, and
// every follow-up is still answered, in order, with the right nonces.
import { TypeUrl } from '@trellis/envoy-types';
import {
  DeltaDiscoveryRequest,
  DiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryResponse,
} from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { fakeModel, makeCluster, makeEndpoints, translateFake, type FakeModel } from '../../test/support/resources';
import { composeCallbacks, type StreamInfo } from './callbacks';
import { DeltaSession } from './delta-session';
import { SnapshotCache } from './snapshot-cache';
import { SotwSession } from './sotw-session';

const SERVICES = ['s0', 's1', 's2', 's3', 's4'];
const tick = () => new Promise((r) => setImmediate(r));
const short = (typeUrl: string) => (typeUrl === TypeUrl.Cluster ? 'CDS' : typeUrl === TypeUrl.ClusterLoadAssignment ? 'EDS' : typeUrl);

/** Every service's sidecar calls hub: its clusters and endpoints are hub's, which the change alters. */
const model = (timeoutSeconds: number): FakeModel =>
  fakeModel(Object.fromEntries(SERVICES.map((s) => [s, [makeCluster('hub', timeoutSeconds), makeEndpoints('hub', '10.0.0.1:8080')]])));

interface Written {
  service: string;
  type: string;
  nonce: string;
}

/**
 * One stream per service, its session answering requests through the cache's afterFanOut (as AdsServer wires it), and a
 * client that reads each response in a later turn (it is another process) and answers as Envoy does.
 */
function mesh(protocol: 'sotw' | 'delta') {
  // Every slice rebuilds one identity (its budget is spent after the first), so a change takes one turn per service.
  const cache = new SnapshotCache<FakeModel>(translateFake, { fanOutSliceMs: 0 });
  const log: Written[] = [];
  const stale: string[] = [];
  const callbacks = composeCallbacks({ onStaleRequest: (s) => stale.push(s.identity.service) });
  const gate = (run: () => void) => cache.afterFanOut(run);
  const sessions = SERVICES.map((service, i) => {
    const stream: StreamInfo = {
      streamId: i,
      nodeId: `${service}-1`,
      identity: { service, kind: 'envoy' },
      protocol,
      connectedAt: new Date(),
    };
    const held = new Map<string, { version: string; nonce: string }>();
    const sotwClient = (r: DiscoveryResponse): void => {
      const s = session as SotwSession;
      held.set(r.typeUrl, { version: r.versionInfo, nonce: r.nonce });
      const names = r.typeUrl === TypeUrl.ClusterLoadAssignment ? ['hub'] : [];
      s.handleRequest(
        DiscoveryRequest.fromPartial({ typeUrl: r.typeUrl, versionInfo: r.versionInfo, responseNonce: r.nonce, resourceNames: names }),
      );
      // Envoy re-creates a changed cluster and asks for its endpoints again, with the version it holds.
      if (r.typeUrl === TypeUrl.Cluster && held.has(TypeUrl.ClusterLoadAssignment)) {
        const eds = held.get(TypeUrl.ClusterLoadAssignment)!;
        s.handleRequest(
          DiscoveryRequest.fromPartial({
            typeUrl: TypeUrl.ClusterLoadAssignment,
            versionInfo: eds.version,
            responseNonce: eds.nonce,
            resourceNames: ['hub'],
          }),
        );
      }
    };
    // Delta: the server sends the endpoints of clusters the client accepted again by itself (delta-session.ts).
    const deltaClient = (r: DeltaDiscoveryResponse): void => {
      (session as DeltaSession).handleRequest(DeltaDiscoveryRequest.fromPartial({ typeUrl: r.typeUrl, responseNonce: r.nonce }));
    };
    const send = (r: DiscoveryResponse | DeltaDiscoveryResponse): boolean => {
      log.push({ service, type: short(r.typeUrl), nonce: r.nonce });
      setImmediate(() => (protocol === 'sotw' ? sotwClient(r as DiscoveryResponse) : deltaClient(r as DeltaDiscoveryResponse)));
      return true;
    };
    // The clients above read it only after it is made (a later turn).
    const session =
      protocol === 'sotw'
        ? new SotwSession(stream, send, callbacks, 'cp', true, gate)
        : new DeltaSession(stream, send, callbacks, 'cp', true, gate);
    cache.watch(stream.identity, (snapshot) => session.setSnapshot(snapshot));
    return session;
  });
  const subscribe = (): void => {
    for (const session of sessions) {
      if (session instanceof SotwSession) {
        session.handleRequest(DiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster }));
        session.handleRequest(DiscoveryRequest.fromPartial({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNames: ['hub'] }));
      } else {
        session.handleRequest(DeltaDiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster }));
        session.handleRequest(
          DeltaDiscoveryRequest.fromPartial({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNamesSubscribe: ['hub'] }),
        );
      }
    }
  };
  const close = (): void => sessions.forEach((s) => s.close());
  return { cache, log, stale, subscribe, close };
}

/** Until `done` holds, a turn at a time (a generous bound: this waits for correctness, it times nothing). */
async function until(done: () => boolean): Promise<void> {
  for (let turns = 0; !done(); turns++) {
    if (turns > 10_000) throw new Error('gave up waiting');
    await tick();
  }
}

describe.each(['sotw', 'delta'] as const)('a change fanned out in slices (%s)', (protocol) => {
  it("reaches every affected stream before any stream's follow-up requests are answered, and answers them all after", async () => {
    const m = mesh(protocol);
    m.cache.setModel(model(1), 'all', { revision: '1', changedAt: Date.now() });
    m.subscribe();
    const settled = (n: number) => SERVICES.every((s) => m.log.filter((w) => w.service === s && w.type === 'EDS').length === n);
    await until(() => settled(1));
    // The handshake is over (every response ACKed): nothing more is written.
    for (let i = 0; i < 20; i++) await tick();
    const before = m.log.length;
    expect(before).toBe(2 * SERVICES.length);

    const update = m.cache.setModel(model(2), 'all', { revision: '2', changedAt: Date.now() });
    await update.settled;
    await until(() => settled(2));
    for (let i = 0; i < 20; i++) await tick();
    const change = m.log.slice(before);
    // One CDS and one EDS answer per stream for the change, nothing else.
    expect(change.filter((w) => w.type === 'CDS').map((w) => w.service)).toEqual(SERVICES);
    expect(
      change
        .filter((w) => w.type === 'EDS')
        .map((w) => w.service)
        .sort(),
    ).toEqual(SERVICES);
    expect(change).toHaveLength(2 * SERVICES.length);
    // Every push of the change went out before the first follow-up answer (without the hold, s0's EDS answer
    // was written while later services waited for their slice).
    expect(change.slice(0, SERVICES.length).map((w) => w.type)).toEqual(SERVICES.map(() => 'CDS'));
    // Each stream's own responses in order: nonces grow, none reused, none answered as stale.
    for (const service of SERVICES) {
      const nonces = m.log.filter((w) => w.service === service).map((w) => parseInt(w.nonce, 36));
      expect(nonces).toEqual([...nonces].sort((a, b) => a - b));
      expect(new Set(nonces).size).toBe(nonces.length);
    }
    expect(m.stale).toEqual([]);
    m.close();
  });
});

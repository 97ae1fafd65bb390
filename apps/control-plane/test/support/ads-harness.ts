// The real ADS server on 127.0.0.1:0 over a snapshot cache fed with a fake model.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { createLogger } from '@trellis/runtime';
import { AdsServer } from '../../src/xds/ads-server';
import { AdsServiceDefinition } from '../../src/xds/wire';
import { composeCallbacks, type XdsCallbacks } from '../../src/xds/callbacks';
import { SnapshotCache } from '../../src/xds/snapshot-cache';
import type { StreamAuthenticator } from '../../src/xds/stream-auth';
import { translateFake, type FakeModel } from './resources';

export interface AdsHarness {
  address: string;
  cache: SnapshotCache<FakeModel>;
  /** Every callback event, in order, for assertions. */
  events: { event: string; args: unknown[] }[];
  setModel(model: FakeModel, affected?: string[] | 'all'): void;
  stop(): Promise<void>;
}

const admitAll: StreamAuthenticator = async () => ({ admitted: true, authenticated: true, method: 'token' });

export async function startAdsHarness(model: FakeModel, authenticate: StreamAuthenticator = admitAll): Promise<AdsHarness> {
  const cache = new SnapshotCache<FakeModel>(translateFake);
  let revision = 1;
  cache.setModel(model, 'all', { revision: String(revision), changedAt: Date.now() });
  const events: AdsHarness['events'] = [];
  const recorder: XdsCallbacks = new Proxy(
    {},
    {
      get:
        (_t, event: string) =>
        (...args: unknown[]) =>
          events.push({ event, args }),
    },
  );
  const ads = new AdsServer({
    cache,
    callbacks: composeCallbacks(recorder),
    authenticate,
    controlPlaneId: 'test-cp',
    maxStreamsPerConnection: 16,
    firstRequestTimeoutMs: 60_000,
    logger: createLogger('control-plane', 'silent'),
  });
  const server = new Server();
  server.addService(AdsServiceDefinition, ads.implementation());
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    address: `127.0.0.1:${port}`,
    cache,
    events,
    setModel(next, affected = 'all') {
      cache.setModel(next, affected === 'all' ? 'all' : new Set(affected), { revision: String(++revision), changedAt: Date.now() });
    },
    async stop() {
      ads.closeAll();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
  };
}

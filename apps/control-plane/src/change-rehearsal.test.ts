import { EventEmitter } from 'node:events';
import { TypeUrl } from '@trellis/envoy-types';
import { DiscoveryRequest } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import type { MeshUpdate, MeshWatcher } from '@trellis/mesh-schema';
import { createLogger, createMetricsRegistry } from '@trellis/runtime';
import { rehearsalChanges, rehearseChanges } from './change-rehearsal';
import { buildProxyResources, sharedUpstreamsChange } from './envoy';
import { createControlPlaneMetrics } from './metrics';
import { DEFAULT_TRANSLATOR_SETTINGS, type MeshModel, type MeshStateView } from './model';
import { MeshFixture } from './model/mesh-fixture';
import { RebuildLoop } from './rebuild-loop';
import { snapshotInconsistencies, TranslationMemo, type ProxyIdentity } from './resource';
import { SnapshotCache, SotwSession, type SnapshotCacheOptions, type XdsCallbacks } from './xds';

const settings = DEFAULT_TRANSLATOR_SETTINGS;
/** As the control plane makes the rehearsal's cache (no fan-out slices); the served ones below add theirs. */
const cacheOptions: SnapshotCacheOptions<MeshModel> = { check: snapshotInconsistencies, sharedTypesChange: sharedUpstreamsChange };
const newCache = (memo = new TranslationMemo(), options = cacheOptions): SnapshotCache<MeshModel> =>
  new SnapshotCache<MeshModel>((m, identity) => buildProxyResources(m, identity, memo), options);

/** hub, declared by most; its callers; a service calling a neighbour; instances for every one. */
function mesh(): MeshFixture {
  const f = new MeshFixture().service('hub', { protocol: 'http', policy: { circuitBreaker: { maxConnections: 100 } } });
  f.instance('hub', 'hub-1', '10.0.0.1').instance('hub', 'hub-2', '10.0.0.2');
  for (let i = 0; i < 6; i++) {
    f.service(`caller-${i}`, { dependencies: [{ service: 'hub' }, ...(i > 0 ? [{ service: `caller-${i - 1}` }] : [])] });
    f.instance(`caller-${i}`, `c${i}`, `10.0.1.${i + 1}`);
  }
  return f;
}

const identities: ProxyIdentity[] = ['hub', 'caller-0', 'caller-3', 'caller-5'].map((service) => ({ service, kind: 'envoy' }));

/** Everything the served side holds that a rehearsal could move, by value or by identity. */
function servedView(cache: SnapshotCache<MeshModel>, model: MeshModel, memo: TranslationMemo) {
  return {
    snapshots: identities.map((identity) => cache.snapshotOf(identity)),
    versions: identities.map((identity) => [...cache.snapshotOf(identity)!.types.values()].map((type) => type.version)),
    stats: cache.stats(),
    revision: cache.revision,
    memo: { size: memo.size, hits: memo.hits, misses: memo.misses },
    services: [...model.services.entries()],
    records: [...model.index.records.entries()],
    instances: [...model.index.instances.entries()],
    declaredBy: [...model.index.declaredBy.entries()].map(([name, by]) => [name, [...by]]),
  };
}

describe('rehearsalChanges', () => {
  it('changes the most-declared service and one of its callers, each from the state before, without editing the state it is given', () => {
    const state = mesh().state();
    const before = { services: [...state.services.entries()], instances: [...state.instances.entries()] };
    const model = mesh().model();
    const changes = rehearsalChanges(state, model);
    expect(changes.map((c) => [c.name, [...c.changed]])).toEqual([
      ['an instance deregistered', ['hub']],
      ['the instance registered again', ['hub']],
      ['its policy tuned', ['hub']],
      ['its policy back', ['hub']],
      ['its policy tuned', ['hub']],
      ['its policy back', ['hub']],
      ['its policy tuned', ['hub']],
      ['its policy back', ['hub']],
      ['its record written again', ['hub']],
      ['a caller stops declaring it', ['caller-0']],
      ['the caller declares it again', ['caller-0']],
    ]);
    expect(changes[0]!.state.instances.get('hub')!.size).toBe(1);
    expect(changes[1]!.state.instances.get('hub')!.size).toBe(2);
    expect(changes[2]!.state.services.get('hub')!.value.spec.policy.circuitBreaker?.maxConnections).toBe(99);
    expect(changes[3]!.state.services.get('hub')!.value.spec.policy).toEqual(state.services.get('hub')!.value.spec.policy);
    expect(changes[4]!.state.services.get('hub')!.value.spec.policy.circuitBreaker?.maxConnections).toBe(98);
    expect(changes[9]!.state.services.get('caller-0')!.value.spec.dependencies).toEqual([]);
    expect(changes[10]!.state.services.get('caller-0')!.value.spec.dependencies).toEqual(
      state.services.get('caller-0')!.value.spec.dependencies,
    );
    expect({ services: [...state.services.entries()], instances: [...state.instances.entries()] }).toEqual(before);
    expect(state.services.get('hub')).toBe(before.services.find(([name]) => name === 'hub')![1]);
  });

  it('has nothing to rehearse in an empty mesh', async () => {
    const model = new MeshFixture().model();
    const result = await rehearseChanges({
      model,
      state: new MeshFixture().state(),
      settings,
      newCache: () => newCache(),
      interrupted: () => false,
      busy: () => false,
    });
    expect(result).toMatchObject({ changes: 0, stopped: 'nothing to rehearse' });
  });
});

describe('rehearseChanges', () => {
  it.each([
    ['without streams', false],
    ['with throwaway streams', true],
  ])(
    'runs every change through the change path (%s) and leaves the served snapshots, versions, metrics, memo and model as they were',
    async (_name, streams) => {
      const f = mesh();
      const state = f.state();
      const model = f.model();
      const memo = new TranslationMemo();
      const registry = createMetricsRegistry('control-plane');
      const metrics = createControlPlaneMetrics(registry);
      const served = newCache(memo, {
        ...cacheOptions,
        onTranslateError: () => metrics.translateErrors.inc(),
        onInconsistent: () => metrics.inconsistentSnapshots.inc(),
      });
      const heard: string[] = [];
      for (const identity of identities) served.watch(identity, (s) => heard.push(s.identity.service));
      served.setModel(model, 'all', { revision: model.revision, changedAt: 1 });
      heard.length = 0;
      const before = servedView(served, model, memo);
      // The process's own series (heap, CPU) move with any work; the control plane's are what the pipeline counts.
      const ours = async (): Promise<string> =>
        (await registry.metrics())
          .split('\n')
          .filter((line) => line.includes('trellis_'))
          .join('\n');
      const metricsBefore = await ours();
      expect(metricsBefore).toContain('trellis_control_plane_');

      let made: SnapshotCache<MeshModel> | undefined;
      const result = await rehearseChanges({
        model,
        state,
        settings,
        newCache: () => (made = newCache()),
        interrupted: () => false,
        busy: () => false,
        streams,
        controlPlaneId: 'cp-test',
      });

      expect(result).toMatchObject({ changes: 11, identities: 7, streams: streams ? 7 : 0 });
      expect(result.stopped).toBeUndefined();
      expect(servedView(served, model, memo)).toEqual(before);
      // The very objects, not equal copies.
      servedView(served, model, memo).snapshots.forEach((s, i) => expect(s).toBe(before.snapshots[i]));
      expect(await ours()).toBe(metricsBefore);
      expect(heard).toEqual([]);
      // Its own cache gave its identities up at the end: nothing of it stays reachable through a watch.
      expect(made!.stats()).toEqual({ identities: 0, streams: 0, pooledResources: 0, pooledBytes: 0 });
    },
  );

  it('stops at the step after a real change arrives, and waits while the served cache is busy', async () => {
    const f = mesh();
    let models = 0;
    let busyAsked = 0;
    const result = await rehearseChanges({
      model: f.model(),
      state: f.state(),
      settings,
      newCache: () => {
        const cache = newCache();
        const setModel = cache.setModel.bind(cache);
        jest.spyOn(cache, 'setModel').mockImplementation((...args) => (models++, setModel(...args)));
        return cache;
      },
      // A real change once the served model and two changes went through.
      interrupted: () => models >= 3,
      busy: () => ++busyAsked <= 2,
    });
    expect(result.stopped).toBe('real change');
    expect(result.changes).toBe(2);
    expect(busyAsked).toBeGreaterThan(2);
  });

  it('translates fewer identities when they take half its budget, then spends the rest on changes', async () => {
    const f = mesh();
    const result = await rehearseChanges({
      model: f.model(),
      state: f.state(),
      settings,
      newCache: () => newCache(),
      interrupted: () => false,
      busy: () => false,
      maxCpuMs: 0,
    });
    // One batch of identities always; no change once the budget is spent.
    expect(result).toMatchObject({ changes: 0, identities: 7, stopped: 'cpu budget' });
  });
});

/** The watcher as the rebuild loop reads it: its state and its 'update' events. */
class FakeWatcher extends EventEmitter {
  constructor(public state: MeshStateView) {
    super();
  }
  emitUpdate(update: MeshUpdate): void {
    this.emit('update', update);
  }
}

describe('RebuildLoop with the start-up rehearsal', () => {
  it('serves a real change that arrives during the rehearsal, and the rehearsal stops', async () => {
    const f = mesh();
    const watcher = new FakeWatcher(f.state());
    const served = newCache(new TranslationMemo(), { ...cacheOptions, fanOutSliceMs: 5 });
    const logged: Array<{ msg: string; fields: Record<string, unknown> }> = [];
    const logger = createLogger('test', 'silent');
    logger.info = ((fields: Record<string, unknown>, msg: string) => void logged.push({ fields, msg })) as unknown as typeof logger.info;
    let realChangeSent = false;
    const loop = new RebuildLoop({
      watcher: watcher as unknown as MeshWatcher,
      cache: served,
      settings,
      metrics: createControlPlaneMetrics(createMetricsRegistry('control-plane')),
      logger,
      debounceMs: 0,
      debounceMaxMs: 0,
      retention: { graceSeconds: 0, share: 0.5, windowMs: 10_000 },
      onRebuilt: () => undefined,
      // The real change arrives while the rehearsal has started: its cache is being made.
      rehearsalCache: () => {
        f.service('hub', { protocol: 'http', policy: { circuitBreaker: { maxConnections: 7 } } });
        watcher.state = f.state();
        watcher.emitUpdate({
          revision: watcher.state.revision,
          reset: false,
          changes: [{ kind: 'service', service: 'hub' }],
        } as MeshUpdate);
        realChangeSent = true;
        return newCache();
      },
    });
    try {
      const heard: number[] = [];
      served.watch({ service: 'caller-2', kind: 'envoy' }, (s) => heard.push(Number(s.meshRevision)));
      watcher.emitUpdate({ revision: watcher.state.revision, reset: true, changes: [] });
      await waitFor(() => realChangeSent && loop.model?.revision === watcher.state.revision);
      await loop.rehearsed;
      const stopped = logged.find((l) => l.msg === 'change path rehearsed on throwaway state');
      expect(stopped?.fields).toMatchObject({ stopped: 'real change' });
      // What is served is the translation of the real change's model, as a cache of its own makes it.
      const fresh = newCache();
      fresh.watch({ service: 'caller-2', kind: 'envoy' }, () => undefined);
      fresh.setModel(loop.model!, 'all', { revision: loop.model!.revision, changedAt: 0 });
      await waitFor(() => served.snapshotOf({ service: 'caller-2', kind: 'envoy' })?.meshRevision === loop.model!.revision);
      const versions = (c: SnapshotCache<MeshModel>) =>
        [...c.snapshotOf({ service: 'caller-2', kind: 'envoy' })!.types.values()].map((type) => type.version);
      expect(versions(served)).toEqual(versions(fresh));
      expect(heard.at(-1)).toBe(Number(loop.model!.revision));
    } finally {
      loop.close();
    }
  });
});

describe('RebuildLoop with the stream rehearsal', () => {
  it('serves a proxy that connects during the rehearsal as a fresh cache would, and its observers hear of no rehearsal stream', async () => {
    const f = mesh();
    const watcher = new FakeWatcher(f.state());
    const served = newCache(new TranslationMemo(), { ...cacheOptions, fanOutSliceMs: 5 });
    const logged: Array<{ msg: string; fields: Record<string, unknown> }> = [];
    const logger = createLogger('test', 'silent');
    logger.info = ((fields: Record<string, unknown>, msg: string) => void logged.push({ fields, msg })) as unknown as typeof logger.info;
    // The real proxy: a SotW session on the served cache, its observers recording every stream they hear of.
    const identity: ProxyIdentity = { service: 'caller-4', kind: 'envoy' };
    const heardOf = new Set<number>();
    const responses = new Map<string, string>();
    const callbacks: Required<XdsCallbacks> = {
      onStreamOpen: (s) => heardOf.add(s.streamId),
      onStreamClosed: (s) => heardOf.add(s.streamId),
      onStreamRejected: () => undefined,
      onResponse: (s, sent) => {
        heardOf.add(s.streamId);
        responses.set(sent.typeUrl, sent.version);
        // ACKed a turn later, as a proxy does (listeners wait for the clusters' ACK; the endpoints are not asked for).
        const ack = { typeUrl: sent.typeUrl, versionInfo: sent.version, responseNonce: sent.nonce, resourceNames: [] };
        setImmediate(() => session.handleRequest(DiscoveryRequest.fromPartial(ack)));
      },
      onAck: (s) => heardOf.add(s.streamId),
      onNack: (s) => heardOf.add(s.streamId),
      onStaleRequest: (s) => heardOf.add(s.streamId),
    };
    const info = { streamId: 1, nodeId: 'real-1', identity, protocol: 'sotw' as const, connectedAt: new Date() };
    const session = new SotwSession(
      info,
      () => true,
      callbacks,
      'cp-test',
      false,
      (run) => served.afterFanOut(run),
    );
    let connected: { cancel: () => void } | undefined;
    let rehearsalModels = 0;
    const loop = new RebuildLoop({
      watcher: watcher as unknown as MeshWatcher,
      cache: served,
      settings,
      metrics: createControlPlaneMetrics(createMetricsRegistry('control-plane')),
      logger,
      debounceMs: 0,
      debounceMaxMs: 0,
      retention: { graceSeconds: 0, share: 0.5, windowMs: 10_000 },
      onRebuilt: () => undefined,
      rehearsalCache: () => {
        const cache = newCache();
        const setModel = cache.setModel.bind(cache);
        jest.spyOn(cache, 'setModel').mockImplementation((...args) => {
          // The proxy connects once the rehearsal's streams had their first responses and one change went through.
          if (++rehearsalModels === 3) {
            const watch = served.watch(identity, (snapshot) => session.setSnapshot(snapshot));
            connected = watch;
            if (watch.snapshot) session.setSnapshot(watch.snapshot);
            for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Listener])
              session.handleRequest(DiscoveryRequest.fromPartial({ typeUrl, resourceNames: [] }));
          }
          return setModel(...args);
        });
        return cache;
      },
      rehearsalStreams: { controlPlaneId: 'cp-test' },
    });
    try {
      watcher.emitUpdate({ revision: watcher.state.revision, reset: true, changes: [] });
      await waitFor(() => loop.model !== undefined && rehearsalModels >= 3);
      await loop.rehearsed;
      await waitFor(() => responses.has(TypeUrl.Cluster) && responses.has(TypeUrl.Listener));
      const rehearsed = logged.find((l) => l.msg === 'change path rehearsed on throwaway state');
      expect(rehearsed?.fields).toMatchObject({ streams: 7 });
      const fresh = newCache();
      fresh.watch(identity, () => undefined);
      fresh.setModel(loop.model!, 'all', { revision: loop.model!.revision, changedAt: 0 });
      const servedSnapshot = served.snapshotOf(identity)!;
      expect(responses.get(TypeUrl.Cluster)).toBe(fresh.snapshotOf(identity)!.types.get(TypeUrl.Cluster)!.version);
      expect(responses.get(TypeUrl.Listener)).toBe(fresh.snapshotOf(identity)!.types.get(TypeUrl.Listener)!.version);
      expect(servedSnapshot.meshRevision).toBe(loop.model!.revision);
      expect([...heardOf]).toEqual([1]);
    } finally {
      session.close();
      connected?.cancel();
      loop.close();
    }
  });
});

async function waitFor(ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

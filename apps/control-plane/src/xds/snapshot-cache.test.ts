import fc from 'fast-check';
import { TypeUrl } from '@trellis/envoy-types';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import {
  fakeModel,
  makeCluster,
  makeEndpoints,
  makeListener,
  makeRoute,
  translateFake,
  type FakeModel,
} from '../../test/support/resources';
import { snapshotInconsistencies, type XdsResource } from '../resource';
import { SnapshotCache } from './snapshot-cache';

const meta = (revision: string) => ({ revision, changedAt: Date.now() });

describe('SnapshotCache', () => {
  it('rebuilds only watched identities of affected services and notifies only on change', () => {
    const calls: string[] = [];
    const cache = new SnapshotCache<FakeModel>((model, identity) => (calls.push(identity.service), translateFake(model, identity)));
    cache.setModel(fakeModel({ a: [makeCluster('x')], b: [makeCluster('y')] }), 'all', meta('1'));
    const seenA: string[] = [];
    const seenB: string[] = [];
    cache.watch({ service: 'a', kind: 'envoy' }, (s) => seenA.push(s.meshRevision));
    cache.watch({ service: 'b', kind: 'envoy' }, (s) => seenB.push(s.meshRevision));
    calls.length = 0;

    const result = cache.setModel(fakeModel({ a: [makeCluster('x', 9)], b: [makeCluster('y')] }), new Set(['a']), meta('2'));
    expect(calls).toEqual(['a']);
    expect(result).toMatchObject({ rebuilt: 1, changed: 1 });
    expect(seenA).toEqual(['2']);
    expect(seenB).toEqual([]);

    // Same content again: rebuilt, but nobody is told.
    expect(cache.setModel(fakeModel({ a: [makeCluster('x', 9)], b: [makeCluster('y')] }), 'all', meta('3'))).toMatchObject({
      rebuilt: 2,
      changed: 0,
    });
    expect(seenA).toEqual(['2']);
  });

  it('asks an affected-services test only about watched services, once each', () => {
    const cache = new SnapshotCache<FakeModel>(translateFake);
    const model = (v: number) => fakeModel({ a: [makeCluster('x', v)], b: [makeCluster('y', v)], c: [makeCluster('z', v)] });
    cache.setModel(model(1), 'all', meta('1'));
    const seen: string[] = [];
    cache.watch({ service: 'a', kind: 'envoy' }, (s) => seen.push(`a@${s.meshRevision}`));
    cache.watch({ service: 'a', kind: 'proxyless' }, (s) => seen.push(`a/p@${s.meshRevision}`));
    cache.watch({ service: 'b', kind: 'envoy' }, (s) => seen.push(`b@${s.meshRevision}`));
    const asked: string[] = [];
    const result = cache.setModel(model(2), (service) => (asked.push(service), service === 'a'), meta('2'));
    expect(asked.sort()).toEqual(['a', 'b']);
    expect(result).toMatchObject({ rebuilt: 2, changed: 2 });
    expect(seen.sort()).toEqual(['a/p@2', 'a@2']);
  });

  it('rebuilds exactly the watched identities without a snapshot or of an affected service, whatever the form of `affected` (property)', () => {
    // The reference is the rule itself, read from outside: every watched identity with no snapshot yet, or whose
    // service the change affects (a set, a test, or all), is translated once; no other is.
    const services = ['a', 'b', 'c', 'd'];
    const identity = fc.record({ service: fc.constantFrom(...services), kind: fc.constantFrom('envoy' as const, 'proxyless' as const) });
    const op = fc.oneof(
      fc.record({ op: fc.constant('watch' as const), identity }),
      fc.record({ op: fc.constant('cancel' as const), index: fc.nat() }),
      fc.record({
        op: fc.constant('model' as const),
        affected: fc.oneof(
          fc.constant('all' as const),
          fc.subarray(services),
          fc.subarray(services).map((s) => ({ test: s })),
        ),
        // Services whose translation throws in this model (their identities stay without a snapshot, or keep the last).
        failing: fc.subarray(services),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        let failing = new Set<string>();
        const translated: string[] = [];
        const cache = new SnapshotCache<FakeModel>(
          (model, id) => {
            translated.push(`${id.kind}/${id.service}`);
            if (failing.has(id.service)) throw new Error('translation failed');
            return translateFake(model, id);
          },
          () => {},
        );
        const watches: { key: string; id: { service: string; kind: 'envoy' | 'proxyless' }; cancel: () => void }[] = [];
        let version = 0;
        for (const o of ops) {
          if (o.op === 'watch') {
            watches.push({
              key: `${o.identity.kind}/${o.identity.service}`,
              id: o.identity,
              cancel: cache.watch(o.identity, () => {}).cancel,
            });
          } else if (o.op === 'cancel') {
            if (watches.length > 0) watches.splice(o.index % watches.length, 1)[0]!.cancel();
          } else {
            failing = new Set(o.failing);
            version++;
            const isAffected = (service: string) =>
              o.affected === 'all' ? true : Array.isArray(o.affected) ? o.affected.includes(service) : o.affected.test.includes(service);
            const expected = [...new Set(watches.map((w) => w.key))]
              .filter((key) => {
                const w = watches.find((x) => x.key === key)!;
                return cache.snapshotOf(w.id) === undefined || isAffected(w.id.service);
              })
              .sort();
            translated.length = 0;
            const asked: string[] = [];
            const affected =
              o.affected === 'all'
                ? 'all'
                : Array.isArray(o.affected)
                  ? new Set(o.affected)
                  : (service: string) => (asked.push(service), isAffected(service));
            const model = fakeModel(Object.fromEntries(services.map((s) => [s, [makeCluster(s, version)]])));
            const result = cache.setModel(model, affected, meta(String(version)));
            expect([...translated].sort()).toEqual(expected);
            expect(result.rebuilt).toBe(expected.length);
            // A test is asked once per watched service, about no other.
            if (typeof affected === 'function') expect(asked.sort()).toEqual([...new Set(watches.map((w) => w.id.service))].sort());
          }
        }
        for (const w of watches) w.cancel();
        expect(cache.stats()).toEqual({ identities: 0, streams: 0, pooledResources: 0, pooledBytes: 0 });
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('shares one encoded resource between identities with the same content and frees it with the last watcher', () => {
    const cache = new SnapshotCache<FakeModel>(translateFake);
    cache.setModel(fakeModel({ a: [makeCluster('shared')], c: [makeCluster('shared')] }), 'all', meta('1'));
    const wa = cache.watch({ service: 'a', kind: 'envoy' }, () => {});
    const wc = cache.watch({ service: 'c', kind: 'envoy' }, () => {});
    const ra = wa.snapshot!.types.get(TypeUrl.Cluster)!.resources.get('shared')!;
    const rc = wc.snapshot!.types.get(TypeUrl.Cluster)!.resources.get('shared')!;
    expect(ra.any.value).toBe(rc.any.value);
    const bytes = ra.any.value.length;
    expect(cache.stats()).toEqual({ identities: 2, streams: 2, pooledResources: 1, pooledBytes: bytes });
    const second = cache.watch({ service: 'a', kind: 'envoy' }, () => {});
    expect(cache.stats()).toEqual({ identities: 2, streams: 3, pooledResources: 1, pooledBytes: bytes });
    second.cancel();
    second.cancel(); // a second cancel of the same watch changes nothing
    wa.cancel();
    expect(cache.stats()).toEqual({ identities: 1, streams: 1, pooledResources: 1, pooledBytes: bytes });
    wc.cancel();
    expect(cache.stats()).toEqual({ identities: 0, streams: 0, pooledResources: 0, pooledBytes: 0 });
  });

  it('keeps the last good snapshot when translation throws', () => {
    const errors: unknown[] = [];
    let fail = false;
    const cache = new SnapshotCache<FakeModel>(
      (model, identity) => {
        if (fail) throw new Error('boom');
        return translateFake(model, identity);
      },
      (_identity, err) => errors.push(err),
    );
    cache.setModel(fakeModel({ a: [makeCluster('x')] }), 'all', meta('1'));
    const w = cache.watch({ service: 'a', kind: 'envoy' }, () => {});
    fail = true;
    cache.setModel(fakeModel({ a: [makeCluster('y')] }), 'all', meta('2'));
    expect(errors).toHaveLength(1);
    expect(cache.snapshotOf({ service: 'a', kind: 'envoy' })).toBe(w.snapshot);
  });

  it('publishes only consistent sets: an inconsistent one is reported and the last good snapshot stays', () => {
    const reported: string[][] = [];
    const cache = new SnapshotCache<FakeModel>(translateFake, {
      check: snapshotInconsistencies,
      onInconsistent: (_identity, problems) => reported.push(problems),
    });
    const good = [makeCluster('c'), makeEndpoints('c', '10.0.0.1:80'), makeListener('l', 8080)];
    cache.setModel(fakeModel({ a: good }), 'all', meta('1'));
    const seen: string[] = [];
    const w = cache.watch({ service: 'a', kind: 'envoy' }, (s) => seen.push(s.meshRevision));
    expect(w.snapshot?.meshRevision).toBe('1');

    // Endpoints missing for cluster "c", and two listeners on one address.
    const result = cache.setModel(
      fakeModel({ a: [makeCluster('c', 9), makeListener('l', 8080), makeListener('m', 8080)] }),
      'all',
      meta('2'),
    );
    expect(result).toMatchObject({ rebuilt: 1, changed: 0 });
    expect(reported).toEqual([
      ['listeners "l" and "m" both bind tcp 127.0.0.1:8080', 'cluster "c" uses endpoints "c", which are not in the snapshot'],
    ]);
    expect(cache.snapshotOf({ service: 'a', kind: 'envoy' })).toBe(w.snapshot);
    expect(seen).toEqual([]);

    // Consistent again: published.
    cache.setModel(fakeModel({ a: [...good, makeRoute('r', 'c')] }), 'all', meta('3'));
    expect(seen).toEqual(['3']);
  });
});

describe('SnapshotCache type reuse', () => {
  it('keeps an unchanged type of a rebuilt identity as it was, and the pool counts stay balanced', () => {
    const cache = new SnapshotCache<FakeModel>(translateFake);
    const listener = makeListener('l');
    cache.setModel(fakeModel({ a: [makeCluster('x'), listener] }), 'all', meta('1'));
    const watch = cache.watch({ service: 'a', kind: 'envoy' }, () => {});
    const before = watch.snapshot!;
    cache.setModel(fakeModel({ a: [makeCluster('x', 9), listener] }), 'all', meta('2'));
    const after = cache.snapshotOf({ service: 'a', kind: 'envoy' })!;
    expect(after.types.get(TypeUrl.Listener)).toBe(before.types.get(TypeUrl.Listener));
    expect(after.types.get(TypeUrl.Cluster)!.version).not.toBe(before.types.get(TypeUrl.Cluster)!.version);
    // The same content again: nothing changes, nothing leaks.
    cache.setModel(fakeModel({ a: [makeCluster('x', 9), listener] }), 'all', meta('3'));
    expect(cache.stats()).toMatchObject({ pooledResources: 2 });
    watch.cancel();
    expect(cache.stats()).toEqual({ identities: 0, streams: 0, pooledResources: 0, pooledBytes: 0 });
  });

  it("gives a rebuilt identity what a fresh build gives, keeping unchanged types, sharing sidecars' equal clusters and endpoints, with balanced pool counts (property)", () => {
    // Random resources per type; each step some of a service's resources change content or go away.
    const resource = fc.tuple(fc.constantFrom('c', 'e', 'l', 'r'), fc.constantFrom('p', 'q', 's', 't'), fc.integer({ min: 1, max: 3 }));
    const made = new Map<string, XdsResource>();
    const make = ([kind, name, v]: [string, string, number]): XdsResource => {
      const key = `${kind}/${name}/${v}`;
      let r = made.get(key);
      if (!r) {
        r =
          kind === 'c'
            ? makeCluster(name, v)
            : kind === 'e'
              ? makeEndpoints(name, `10.0.0.${v}:80`)
              : kind === 'l'
                ? makeListener(name, 10000 + v)
                : makeRoute(name, `cluster-${v}`);
        made.set(key, r);
      }
      // A copy now and then: equal content in another object, as a new translation makes it.
      return v === 3 ? { ...r } : r;
    };
    const set = fc.uniqueArray(resource, { selector: ([kind, name]) => kind + name, maxLength: 8 });
    const step = fc.record({ a: set, b: set });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 6 }), (steps) => {
        const cache = new SnapshotCache<FakeModel>(translateFake);
        const watches = ['a', 'b'].map((service) => cache.watch({ service, kind: 'envoy' }, () => {}));
        watches.push(cache.watch({ service: 'a', kind: 'proxyless' }, () => {}));
        steps.forEach((m, i) => {
          const before = ['a', 'b'].map((service) => cache.snapshotOf({ service, kind: 'envoy' }));
          const model = fakeModel({ a: m.a.map(make), b: m.b.map(make) });
          cache.setModel(model, 'all', meta(String(i + 2)));
          const fresh = new SnapshotCache<FakeModel>(translateFake);
          fresh.setModel(model, 'all', meta('fresh'));
          ['a', 'b'].forEach((service, j) => {
            const kept = cache.snapshotOf({ service, kind: 'envoy' })!;
            const built = fresh.peek({ service, kind: 'envoy' })!;
            for (const [typeUrl, type] of built.types) {
              const got = kept.types.get(typeUrl)!;
              expect(got.version).toBe(type.version);
              expect([...got.resources].map(([name, r]) => [name, r.hash])).toEqual([...type.resources].map(([name, r]) => [name, r.hash]));
              // A type whose content did not change is the very object the identity had.
              const prior = before[j]?.types.get(typeUrl);
              if (prior?.version === type.version) expect(got).toBe(prior);
            }
          });
          // Sidecars of different services holding equal clusters or endpoints hold one type.
          const [a, b] = ['a', 'b'].map((service) => cache.snapshotOf({ service, kind: 'envoy' })!);
          for (const typeUrl of [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment]) {
            const [ta, tb] = [a!.types.get(typeUrl)!, b!.types.get(typeUrl)!];
            if (ta.version === tb.version) expect(ta).toBe(tb);
          }
          // So do sidecars with nothing of a type.
          for (const [typeUrl, ta] of a!.types)
            if (ta.resources.size === 0 && b!.types.get(typeUrl)!.resources.size === 0) expect(b!.types.get(typeUrl)).toBe(ta);
          // A proxyless identity's types are its own (its derived names depend on its service).
          const proxyless = cache.snapshotOf({ service: 'a', kind: 'proxyless' })!;
          for (const [typeUrl, type] of proxyless.types)
            if (type.resources.size > 0) expect([a, b].some((s) => s!.types.get(typeUrl) === type)).toBe(false);
          // The pool holds exactly the resources some snapshot holds.
          const held = new Set<string>();
          for (const snapshot of [a, b, proxyless])
            for (const type of snapshot!.types.values()) for (const r of type.resources.values()) held.add(r.hash);
          expect(cache.stats().pooledResources).toBe(held.size);
        });
        // Every resource the snapshots hold is counted once per holder: the last watcher frees them all.
        for (const watch of watches) watch.cancel();
        expect(cache.stats()).toEqual({ identities: 0, streams: 0, pooledResources: 0, pooledBytes: 0 });
      }),
      { numRuns: propertyRuns(100) },
    );
  });
});

describe('SnapshotCache with a sliced fan-out', () => {
  const identity = (service: string) => ({ service, kind: 'envoy' as const });
  const model = (timeout: number) =>
    fakeModel({ a: [makeCluster('x', timeout)], b: [makeCluster('y', timeout)], c: [makeCluster('z', timeout)] });

  /** Until every watched identity of `services` has its first snapshot (built in slices). */
  async function built(cache: SnapshotCache<FakeModel>, services: string[]): Promise<void> {
    while (services.some((service) => !cache.snapshotOf(identity(service)))) await new Promise((r) => setImmediate(r));
  }

  /** Until `done` holds (a generous bound: this waits for correctness, it times nothing). */
  async function until(done: () => boolean): Promise<void> {
    for (const deadline = Date.now() + 30_000; !done(); await new Promise((r) => setImmediate(r)))
      if (Date.now() > deadline) throw new Error('gave up waiting');
  }

  /** A cache whose every slice rebuilds one identity (the budget is spent after the first). */
  async function slicedCache(): Promise<{ cache: SnapshotCache<FakeModel>; seen: Record<string, string[]> }> {
    const cache = new SnapshotCache<FakeModel>(translateFake, { fanOutSliceMs: 0 });
    cache.setModel(model(1), 'all', meta('1'));
    const seen: Record<string, string[]> = { a: [], b: [], c: [] };
    for (const service of ['a', 'b', 'c']) cache.watch(identity(service), (s) => seen[service]!.push(s.meshRevision));
    await built(cache, ['a', 'b', 'c']);
    expect(seen).toEqual({ a: ['1'], b: ['1'], c: ['1'] });
    for (const service of ['a', 'b', 'c']) seen[service] = [];
    return { cache, seen };
  }

  it('builds the identities of new streams in slices, telling each stream when its own is built', async () => {
    const cache = new SnapshotCache<FakeModel>(translateFake, { fanOutSliceMs: 0 });
    cache.setModel(model(1), 'all', meta('1'));
    const seen: string[] = [];
    const watches = ['a', 'b', 'c'].map((service) => cache.watch(identity(service), () => seen.push(service)));
    // Nothing is translated inside watch: a storm of new streams does not hold up the event loop.
    expect(watches.map((w) => w.snapshot)).toEqual([undefined, undefined, undefined]);
    // A second stream of an identity still waiting for its first build is told with the first.
    cache.watch(identity('a'), () => seen.push('a again'));
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(['a', 'a again']);
    await built(cache, ['a', 'b', 'c']);
    expect(seen).toEqual(['a', 'a again', 'b', 'c']);
    expect(cache.snapshotOf(identity('c'))!.types.get(TypeUrl.Cluster)!.resources.get('z')!.hash).toBe(makeCluster('z', 1).hash);
    expect(cache.stats()).toMatchObject({ identities: 3, streams: 4 });
  });

  it('reports the identities waiting for a slice and the time since one was built (pushActivity)', async () => {
    const cache = new SnapshotCache<FakeModel>(translateFake, { fanOutSliceMs: 0 });
    cache.setModel(model(1), 'all', meta('1'));
    expect(cache.pushActivity()).toEqual({ pendingBuilds: 0, msSinceBuild: Infinity });
    for (const service of ['a', 'b', 'c']) cache.watch(identity(service), () => {});
    expect(cache.pushActivity().pendingBuilds).toBe(3);
    await built(cache, ['a', 'b', 'c']);
    const after = cache.pushActivity();
    expect(after.pendingBuilds).toBe(0);
    expect(after.msSinceBuild).toBeGreaterThanOrEqual(0);
    expect(after.msSinceBuild).toBeLessThan(Infinity);
    // A change's fan-out counts too: the identities not yet rebuilt wait.
    cache.setModel(model(2), 'all', meta('2'));
    expect(cache.pushActivity().pendingBuilds).toBe(2);
  });

  it('forgets an identity whose only stream closed before its first build', async () => {
    const translated: string[] = [];
    const cache = new SnapshotCache<FakeModel>((m, i) => (translated.push(i.service), translateFake(m, i)), { fanOutSliceMs: 0 });
    cache.setModel(model(1), 'all', meta('1'));
    cache.watch(identity('a'), () => {});
    cache.watch(identity('b'), () => {}).cancel();
    await built(cache, ['a']);
    await new Promise((r) => setImmediate(r));
    expect(translated).toEqual(['a']);
    expect(cache.stats()).toMatchObject({ identities: 1, streams: 1 });
  });

  it('tells the first identities’ streams before the later ones are rebuilt, and settles with the whole count', async () => {
    const { cache, seen } = await slicedCache();
    const update = cache.setModel(model(2), 'all', meta('2'));
    expect(update).toMatchObject({ rebuilt: 1, changed: 1 });
    expect(seen).toEqual({ a: ['2'], b: [], c: [] });
    await expect(update.settled).resolves.toEqual({ rebuilt: 3, changed: 3 });
    expect(seen).toEqual({ a: ['2'], b: ['2'], c: ['2'] });
  });

  it('builds identities left over from an earlier fan-out from the newest model, and settles both', async () => {
    const { cache, seen } = await slicedCache();
    const first = cache.setModel(model(2), 'all', meta('2'));
    const second = cache.setModel(model(3), new Set(['a']), meta('3'));
    const [a, b] = await Promise.all([first.settled, second.settled]);
    expect(a).toEqual({ rebuilt: 3, changed: 3 });
    expect(b).toMatchObject({ rebuilt: 3 });
    // b and c waited for their turn: they went straight to the newest model.
    expect(seen).toEqual({ a: ['2', '3'], b: ['3'], c: ['3'] });
    expect(cache.snapshotOf(identity('c'))!.types.get(TypeUrl.Cluster)!.resources.get('z')!.hash).toBe(makeCluster('z', 3).hash);
  });

  it('gives a new stream of an identity still waiting its turn the current snapshot at once', async () => {
    const { cache } = await slicedCache();
    cache.setModel(model(2), 'all', meta('2'));
    const watch = cache.watch(identity('c'), () => {});
    expect(watch.snapshot?.meshRevision).toBe('2');
  });

  it('holds answers to requests until a change has reached every affected identity, and runs them at once otherwise', async () => {
    const { cache, seen } = await slicedCache();
    const ran: string[] = [];
    cache.afterFanOut(() => ran.push('idle'));
    expect(ran).toEqual(['idle']);
    const update = cache.setModel(model(2), 'all', meta('2'));
    cache.afterFanOut(() => ran.push(`a:${seen.a!.length} b:${seen.b!.length} c:${seen.c!.length}`));
    cache.afterFanOut(() => ran.push('second'));
    expect(ran).toEqual(['idle']);
    await update.settled;
    await until(() => ran.length === 3);
    // Only after the last identity was told, in the order they came.
    expect(ran).toEqual(['idle', 'a:1 b:1 c:1', 'second']);
  });

  it('runs a held answer within MAX_FAN_OUT_HOLD_MS although changes keep coming', async () => {
    const { cache } = await slicedCache();
    let revision = 2;
    let fanningOut = true;
    // A new change every turn: some identity always waits for its slice, so the fan-outs never all end.
    const changes = async () => {
      while (fanningOut) {
        cache.setModel(model(revision), 'all', meta(String(revision++)));
        await new Promise((r) => setImmediate(r));
      }
    };
    const running = changes();
    let waitingThen: number | undefined;
    cache.afterFanOut(() => (waitingThen = cache.pushActivity().pendingBuilds));
    await until(() => waitingThen !== undefined);
    fanningOut = false;
    await running;
    // It ran by the deadline, while identities still waited for their slice.
    expect(waitingThen).toBeGreaterThan(0);
  });

  it('settles when an identity waiting its turn loses its last stream', async () => {
    const cache = new SnapshotCache<FakeModel>(translateFake, { fanOutSliceMs: 0 });
    cache.setModel(model(1), 'all', meta('1'));
    cache.watch(identity('a'), () => {});
    const c = cache.watch(identity('c'), () => {});
    await built(cache, ['a', 'c']);
    const update = cache.setModel(model(2), 'all', meta('2'));
    c.cancel();
    await expect(update.settled).resolves.toEqual({ rebuilt: 1, changed: 1 });
    expect(cache.stats()).toMatchObject({ identities: 1, streams: 1 });
  });
});

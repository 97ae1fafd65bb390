import { TypeUrl } from '@trellis/envoy-types';
import { fakeModel, makeCluster, translateFake, type FakeModel } from '../../test/support/resources';
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
    expect(result).toEqual({ rebuilt: 1, changed: 1 });
    expect(seenA).toEqual(['2']);
    expect(seenB).toEqual([]);

    // Same content again: rebuilt, but nobody is told.
    expect(cache.setModel(fakeModel({ a: [makeCluster('x', 9)], b: [makeCluster('y')] }), 'all', meta('3'))).toEqual({
      rebuilt: 2,
      changed: 0,
    });
    expect(seenA).toEqual(['2']);
  });

  it('shares one encoded resource between identities with the same content and frees it with the last watcher', () => {
    const cache = new SnapshotCache<FakeModel>(translateFake);
    cache.setModel(fakeModel({ a: [makeCluster('shared')], c: [makeCluster('shared')] }), 'all', meta('1'));
    const wa = cache.watch({ service: 'a', kind: 'envoy' }, () => {});
    const wc = cache.watch({ service: 'c', kind: 'envoy' }, () => {});
    const ra = wa.snapshot!.types.get(TypeUrl.Cluster)!.resources.get('shared')!;
    const rc = wc.snapshot!.types.get(TypeUrl.Cluster)!.resources.get('shared')!;
    expect(ra.any.value).toBe(rc.any.value);
    expect(cache.stats()).toMatchObject({ identities: 2, pooledResources: 1 });
    wa.cancel();
    wc.cancel();
    expect(cache.stats()).toMatchObject({ identities: 0, pooledResources: 0 });
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
});

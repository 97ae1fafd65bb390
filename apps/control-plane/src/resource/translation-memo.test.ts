import { Cluster } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { TypeUrl } from '@trellis/envoy-types';
import { TranslationMemo } from './translation-memo';
import { makeResource } from './xds-resource';

let built = 0;
const clusterOf = (i: { name: string; timeout: number }) => {
  built++;
  return makeResource(
    TypeUrl.Cluster,
    Cluster,
    i.name,
    Cluster.fromPartial({ name: i.name, connectTimeout: { seconds: String(i.timeout) } }),
  );
};
const otherClusterOf = (i: { name: string; timeout: number }) => clusterOf({ ...i, name: `${i.name}-other` });

describe('TranslationMemo', () => {
  beforeEach(() => (built = 0));

  it('hits only for the same builder and an equal input', () => {
    const memo = new TranslationMemo().use({});
    const a = memo.get(clusterOf, { name: 'a', timeout: 1 });
    expect(memo.get(clusterOf, { timeout: 1, name: 'a' })).toBe(a);
    expect(memo.get(clusterOf, { name: 'a', timeout: 2 }).hash).not.toBe(a.hash);
    // Same input, another builder: never the first builder's resource.
    expect(memo.get(otherClusterOf, { name: 'a', timeout: 1 }).name).toBe('a-other');
    expect({ hits: memo.hits, misses: memo.misses }).toEqual({ hits: 1, misses: 3 });
  });

  it('keeps what the current or the previous model used and drops the rest', () => {
    const memo = new TranslationMemo();
    memo.use({ generation: 1 }).get(clusterOf, { name: 'a', timeout: 1 });
    memo.use({ generation: 2 }).get(clusterOf, { name: 'a', timeout: 1 });
    expect(built).toBe(1);
    memo.use({ generation: 3 });
    memo.use({ generation: 4 });
    expect(memo.size).toBe(0);
    memo.get(clusterOf, { name: 'a', timeout: 1 });
    expect(built).toBe(2);
  });
});

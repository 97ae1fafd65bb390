import { TypeUrl } from '@trellis/envoy-types';
import type { XdsResource } from '../resource';
import { versionOf } from './versions';

const res = (name: string, hash: string): XdsResource => ({
  name,
  hash,
  typeUrl: TypeUrl.Cluster,
  any: { typeUrl: TypeUrl.Cluster, value: Buffer.from(hash) },
});

describe('versionOf', () => {
  it('is independent of input order', () => {
    expect(versionOf([res('a', '1'), res('b', '2')])).toBe(versionOf([res('b', '2'), res('a', '1')]));
  });

  it('changes with content and with names', () => {
    const base = versionOf([res('a', '1')]);
    expect(versionOf([res('a', '2')])).not.toBe(base);
    expect(versionOf([res('b', '1')])).not.toBe(base);
    expect(versionOf([res('a', '1'), res('b', '1')])).not.toBe(base);
  });

  it('is a short stable hex string, also for no resources', () => {
    expect(versionOf([])).toMatch(/^[0-9a-f]{16}$/);
    expect(versionOf([])).toBe(versionOf([]));
  });
});

import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { byName } from '@trellis/mesh-contracts';
import { TypeUrl } from '@trellis/envoy-types';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import type { XdsResource } from '../resource';
import { versionOf } from './versions';

/** The streaming form versions were first computed with: a replica or restart on newer code must agree with it. */
function streamedVersion(resources: XdsResource[]): string {
  const hash = createHash('sha256');
  for (const resource of [...resources].sort(byName)) hash.update(resource.name).update('\0').update(resource.hash).update('\n');
  return hash.digest('hex').slice(0, 16);
}

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

  it('equals the streaming hash for types longer than its first buffer, and for non-ASCII names after ASCII ones', () => {
    const many = Array.from({ length: 300 }, (_, i) => res(`outbound|svc-${i}|${'subset-'.repeat(i % 7)}é${i}`, `${i}`.padStart(64, 'f')));
    expect(versionOf(many)).toBe(streamedVersion(many));
    const mixed = [res('a-ascii', '0'.repeat(64)), res('b-ünïcode-\u{1F600}', '1'.repeat(64)), res('c', '2')];
    expect(versionOf(mixed)).toBe(streamedVersion(mixed));
    // The buffer grown once is still right for short types after it.
    expect(versionOf([res('a', '1')])).toBe(streamedVersion([res('a', '1')]));
  });

  it('equals the streaming hash of names and content hashes (versions stay what proxies already hold)', () => {
    expect(versionOf([res('b', 'ff'), res('a', '00')])).toBe('738fbab6ac4a9a15');
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(fc.string({ unit: 'binary', maxLength: 30 }), fc.string({ maxLength: 64 })), {
          selector: ([name]) => name,
          maxLength: 12,
        }),
        (entries) => {
          const resources = entries.map(([name, hash]) => res(name, hash));
          expect(versionOf(resources)).toBe(streamedVersion(resources));
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });
});

// Versions derive from content only: the same resources give the same version
// on every replica and after every restart, so a reconnecting proxy that
// already holds the config is sent nothing.
import { byName } from '@trellis/mesh-contracts';
import { createHash } from 'node:crypto';
import type { XdsResource } from '../resource';

/** Version of a set of resources: a hash over their names and content hashes, in name order. */
export function versionOf(resources: Iterable<XdsResource>): string {
  const sorted = [...resources].sort(byName);
  const hash = createHash('sha256');
  for (const resource of sorted) hash.update(resource.name).update('\0').update(resource.hash).update('\n');
  return hash.digest('hex').slice(0, 16);
}

// Versions derive from content only: the same resources give the same version
// on every replica and after every restart, so a reconnecting proxy that
// already holds the config is sent nothing.
import { byName, sortInPlace } from '@trellis/mesh-contracts';
import { hash } from 'node:crypto';
import type { XdsResource } from '../resource';

/** Version of a set of resources: a hash over their names and content hashes, in name order. */
export function versionOf(resources: Iterable<XdsResource>): string {
  // A type's resources are kept in name order: mostly nothing to sort.
  const sorted = sortInPlace([...resources], byName);
  // One string hashed at once (a one-shot hash costs a third of a streaming one per call); the same bytes as before.
  let text = '';
  for (const resource of sorted) text += `${resource.name}\0${resource.hash}\n`;
  return hash('sha256', text, 'hex').slice(0, 16);
}

// Versions derive from content only: the same resources give the same version
// on every replica and after every restart, so a reconnecting proxy that
// already holds the config is sent nothing.
import { byName, sortInPlace } from '@trellis/mesh-contracts';
import { hash } from 'node:crypto';
import type { XdsResource } from '../resource';

/** Version of a set of resources: a hash over their names and content hashes, in name order. */
export function versionOf(resources: Iterable<XdsResource>): string {
  // A type's resources are kept in name order: the text is written as they come, into one list kept for every call
  // (a connection storm takes a version of five types per identity), and sorted only when they come out of order.
  let text = '';
  let ordered = true;
  for (const resource of resources) {
    if (ordered && seen.length > 0 && byName(seen[seen.length - 1]!, resource) > 0) ordered = false;
    seen.push(resource);
    if (ordered) text += `${resource.name}\0${resource.hash}\n`;
  }
  if (!ordered) {
    text = '';
    for (const resource of sortInPlace(seen, byName)) text += `${resource.name}\0${resource.hash}\n`;
  }
  seen.length = 0;
  // One string hashed at once (a one-shot hash costs a third of a streaming one per call); the same bytes as before.
  return hash('sha256', text, 'hex').slice(0, 16);
}

/** versionOf's list of the resources it read (emptied before it returns, so it holds none). */
const seen: XdsResource[] = [];

// Versions derive from content only: the same resources give the same version
// on every replica and after every restart, so a reconnecting proxy that
// already holds the config is sent nothing.
import { byName, sortInPlace } from '@trellis/mesh-contracts';
import { hash } from 'node:crypto';
import type { XdsResource } from '../resource';

/** Version of a set of resources: a hash over their names and content hashes, in name order. */
export function versionOf(resources: Iterable<XdsResource>): string {
  // A type's resources are kept in name order: they are listed as they come, into one list kept for every call
  // (a connection storm takes a version of five types per identity), and sorted only when they come out of order.
  let ordered = true;
  for (const resource of resources) {
    if (ordered && seen.length > 0 && byName(seen[seen.length - 1]!, resource) > 0) ordered = false;
    seen.push(resource);
  }
  if (!ordered) sortInPlace(seen, byName);
  // The text `${name}\0${hash}\n` per resource, as its UTF-8 bytes, into one buffer kept for every call: building
  // it as a string made most of a connection storm's garbage in assembly. Hashed at once (a one-shot hash costs a
  // third of a streaming one per call): the same bytes, so the same versions, as before.
  let at = 0;
  for (const resource of seen) {
    reserve(at, 3 * (resource.name.length + resource.hash.length) + 2);
    at = writeUtf8(resource.name, at);
    text[at++] = 0;
    at = writeUtf8(resource.hash, at);
    text[at++] = 0x0a;
  }
  seen.length = 0;
  // The first 8 bytes as hex, a string of its own: the 64-character hex digest sliced to 16 would be a view that
  // keeps the whole digest alive for as long as the version is held (every type of every snapshot).
  return hash('sha256', text.subarray(0, at), 'buffer').toString('hex', 0, 8);
}

/** versionOf's list of the resources it read (emptied before it returns, so it holds none). */
const seen: XdsResource[] = [];

/** versionOf's text; grown (never shrunk) when a type's text is longer. */
let text = Buffer.allocUnsafe(4096);

/** Makes room for `length` more bytes after the first `at`, keeping those. */
function reserve(at: number, length: number): void {
  if (at + length <= text.length) return;
  const grown = Buffer.allocUnsafe(Math.max(2 * text.length, at + length));
  text.copy(grown, 0, 0, at);
  text = grown;
}

/** Writes `s` as UTF-8 at `at` (room for 3 bytes per UTF-16 unit reserved); returns the position after it. */
function writeUtf8(s: string, at: number): number {
  // Names and hashes are short ASCII: written here, without a call into the runtime per string.
  for (let i = 0; i < s.length; i++) {
    const code = s.charCodeAt(i);
    if (code > 0x7f) return at + text.write(s, at, 'utf8');
    text[at + i] = code;
  }
  return at + s.length;
}

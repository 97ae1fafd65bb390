// Comparing a presented secret (an admin token, a service credential) with the
// configured one: both are hashed first so the comparison takes the same time
// whatever the lengths, and only digests are kept in memory.
import { createHash, timingSafeEqual } from 'node:crypto';

export function secretDigest(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

export function matchesSecretDigest(presented: string, expected: Buffer): boolean {
  return timingSafeEqual(secretDigest(presented), expected);
}

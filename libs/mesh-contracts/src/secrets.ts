// Comparing a presented secret (an admin token, a service credential) with the
// configured one: both are hashed first so the comparison takes the same time
// whatever the lengths, and only digests are kept in memory.
import { hash, timingSafeEqual } from 'node:crypto';

export function secretDigest(secret: string): Buffer {
  // One-shot: no Hash object per call (every authenticated request hashes its token).
  return hash('sha256', secret, 'buffer');
}

export function matchesSecretDigest(presented: string, expected: Buffer): boolean {
  return timingSafeEqual(secretDigest(presented), expected);
}

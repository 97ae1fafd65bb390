import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { matchesSecretDigest, secretDigest } from './secrets';

describe('secretDigest', () => {
  it('is the SHA-256 of the secret as UTF-8', () => {
    // FIPS 180-2's test vector for "abc".
    expect(secretDigest('abc').toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (secret) => {
        expect(secretDigest(secret).equals(createHash('sha256').update(Buffer.from(secret, 'utf8')).digest())).toBe(true);
      }),
    );
  });

  it('matches only the very secret', () => {
    const digest = secretDigest('s3cret-token');
    expect(matchesSecretDigest('s3cret-token', digest)).toBe(true);
    expect(matchesSecretDigest('s3cret-token ', digest)).toBe(false);
    expect(matchesSecretDigest('', digest)).toBe(false);
  });
});

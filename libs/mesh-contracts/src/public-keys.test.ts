import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import { rejectingWeakKeys, WeakKeyError, weakJwkReason, weakKeyReason } from './public-keys';

// Keys are generated as PEM and parsed again: asymmetricKeyDetails on the KeyObject
// generation returns can deadlock Node 20 (see generateSigningKey in authz).
const PEM = { publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } } as const;

describe('weakKeyReason', () => {
  it('accepts RSA ≥ 2048 bits with e = 65537, EC P-256 and P-384, Ed25519', () => {
    expect(weakKeyReason(createPublicKey(generateKeyPairSync('rsa', { modulusLength: 2048, ...PEM }).publicKey))).toBeUndefined();
    expect(weakKeyReason(createPublicKey(generateKeyPairSync('ec', { namedCurve: 'prime256v1', ...PEM }).publicKey))).toBeUndefined();
    expect(weakKeyReason(createPublicKey(generateKeyPairSync('ec', { namedCurve: 'secp384r1', ...PEM }).publicKey))).toBeUndefined();
    expect(weakKeyReason(createPublicKey(generateKeyPairSync('ed25519', PEM).publicKey))).toBeUndefined();
  });

  it('refuses short RSA moduli, exponents other than 65537 and other curves', () => {
    expect(weakKeyReason(createPublicKey(generateKeyPairSync('rsa', { modulusLength: 1024, ...PEM }).publicKey))).toMatch(/1024 bits/);
    expect(
      weakKeyReason(createPublicKey(generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3, ...PEM }).publicKey)),
    ).toMatch(/exponent 3/);
    expect(weakKeyReason(createPublicKey(generateKeyPairSync('ec', { namedCurve: 'secp256k1', ...PEM }).publicKey))).toMatch(/secp256k1/);
    expect(weakKeyReason(createPublicKey(generateKeyPairSync('ec', { namedCurve: 'secp521r1', ...PEM }).publicKey))).toMatch(/secp521r1/);
  });

  it('refuses a JWK with e = 1 (every "signature" would verify) and one that is not a key', () => {
    const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    expect(weakJwkReason(jwk)).toBeUndefined();
    expect(weakJwkReason({ ...jwk, e: 'AQ' })).toMatch(/exponent 1;/);
    expect(weakJwkReason({ kty: 'RSA', n: 'AQAB', e: 'AQAB' })).toBeDefined();
  });
});

describe('rejectingWeakKeys', () => {
  it('passes strong KeyObjects and CryptoKeys through and throws WeakKeyError for weak ones', async () => {
    const strong = await generateKeyPair('ES256');
    await expect(rejectingWeakKeys(async () => strong.publicKey)()).resolves.toBe(strong.publicKey);
    const weak = createPublicKey(generateKeyPairSync('rsa', { modulusLength: 1024, ...PEM }).publicKey);
    await expect(rejectingWeakKeys(() => weak)()).rejects.toBeInstanceOf(WeakKeyError);
    await expect(rejectingWeakKeys(() => new Uint8Array(32))()).rejects.toBeInstanceOf(WeakKeyError);
    expect(await exportJWK(strong.publicKey)).toMatchObject({ crv: 'P-256' });
  });
});

describe('verifyMeshToken with a weak key', () => {
  it('refuses the e = 1 forgery even when the key is handed to it directly', async () => {
    const { verifyMeshToken } = await import('./mesh-token');
    const { createHash, createPublicKey } = await import('node:crypto');
    const jwk = { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }), e: 'AQ' };
    const now = Math.floor(Date.now() / 1000);
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const signingInput = `${encode({ alg: 'RS256', kid: 'e1' })}.${encode({ iss: 'trellis', sub: 'a', aud: 'b', iat: now, exp: now + 600 })}`;
    const digestInfo = Buffer.concat([
      Buffer.from('3031300d060960864801650304020105000420', 'hex'),
      createHash('sha256').update(signingInput).digest(),
    ]);
    const signature = Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(256 - 3 - digestInfo.length, 0xff), Buffer.from([0]), digestInfo]);
    const result = await verifyMeshToken(
      `${signingInput}.${signature.toString('base64url')}`,
      () => ({ kid: 'e1', alg: 'RS256', key: createPublicKey({ key: jwk, format: 'jwk' }) }),
      { issuer: 'trellis', audience: 'b', clockSkewSeconds: 30, maxLifetimeSeconds: 900 },
    );
    expect(result).toMatchObject({ valid: false, reason: 'weak-key' });
  });
});

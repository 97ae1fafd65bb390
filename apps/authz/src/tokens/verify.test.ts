// The token attack suite: every forged, stale or misdirected token is rejected
// with the reason a validator should report.
import { createHmac } from 'node:crypto';
import { SignJWT } from 'jose';
import type { VerificationKey } from '../keys/key-ring';
import { generateSigningKey, type SigningKey } from '../keys/signing-key';
import { mintMeshToken } from './mint';
import { verifyMeshToken, type TokenExpectations } from '@trellis/mesh-contracts';

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

describe('verifyMeshToken', () => {
  let rsa: SigningKey;
  let ec: SigningKey;
  let stranger: SigningKey;
  const now = Date.UTC(2026, 0, 1, 12, 0, 0);
  const nowSeconds = now / 1000;
  const expected: TokenExpectations = { issuer: 'trellis', audience: 'orders', clockSkewSeconds: 30, maxLifetimeSeconds: 900 };
  const keys = new Map<string, VerificationKey>();
  const lookup = (kid: string) => keys.get(kid);

  beforeAll(async () => {
    [rsa, ec, stranger] = await Promise.all([generateSigningKey('RS256'), generateSigningKey('ES256'), generateSigningKey('RS256')]);
    for (const key of [rsa, ec]) keys.set(key.kid, { kid: key.kid, alg: key.alg, key: key.publicKey });
  });

  const mint = (
    key: SigningKey,
    overrides: Partial<{ iss: string; sub: string; aud: string; iat: number; nbf: number; exp: number }> = {},
  ) =>
    new SignJWT({})
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(overrides.iss ?? 'trellis')
      .setSubject(overrides.sub ?? 'checkout')
      .setAudience(overrides.aud ?? 'orders')
      .setIssuedAt(overrides.iat ?? nowSeconds)
      .setNotBefore(overrides.nbf ?? overrides.iat ?? nowSeconds)
      .setExpirationTime(overrides.exp ?? (overrides.iat ?? nowSeconds) + 900)
      .sign(key.privateKey);

  it('accepts a token minted by mintMeshToken, with RS256 and ES256', async () => {
    for (const key of [rsa, ec]) {
      const { token } = await mintMeshToken(key, { issuer: 'trellis', subject: 'checkout', audience: 'orders', ttlSeconds: 900 }, now);
      await expect(verifyMeshToken(token, lookup, expected, now)).resolves.toEqual({
        valid: true,
        subject: 'checkout',
        audience: 'orders',
        expiresAt: nowSeconds + 900,
        kid: key.kid,
      });
    }
  });

  it.each([
    ['empty', '', 'missing'],
    ['garbage', 'not a token at all', 'malformed'],
    ['two segments', 'abc.def', 'malformed'],
    ['header that is not JSON', `${b64('{{{')}.${b64({})}.${b64('sig')}`, 'malformed'],
  ])('rejects %s', async (_name, token, reason) => {
    await expect(verifyMeshToken(token, lookup, expected, now)).resolves.toMatchObject({ valid: false, reason });
  });

  it('rejects alg none, with or without a signature segment', async () => {
    const header = b64({ alg: 'none', kid: rsa.kid, typ: 'JWT' });
    const payload = b64({ iss: 'trellis', sub: 'checkout', aud: 'orders', iat: nowSeconds, exp: nowSeconds + 900 });
    await expect(verifyMeshToken(`${header}.${payload}.`, lookup, expected, now)).resolves.toMatchObject({
      valid: false,
      reason: 'malformed',
    });
    await expect(verifyMeshToken(`${header}.${payload}.${b64('x')}`, lookup, expected, now)).resolves.toMatchObject({
      valid: false,
      reason: 'alg-not-allowed',
    });
  });

  it('rejects HS256 signed with the public key as the HMAC secret', async () => {
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
    const signingInput = `${b64({ alg: 'HS256', kid: rsa.kid, typ: 'JWT' })}.${b64({ iss: 'trellis', sub: 'checkout', aud: 'orders', iat: nowSeconds, exp: nowSeconds + 900 })}`;
    const signature = createHmac('sha256', pem).update(signingInput).digest('base64url');
    await expect(verifyMeshToken(`${signingInput}.${signature}`, lookup, expected, now)).resolves.toMatchObject({
      valid: false,
      reason: 'alg-not-allowed',
    });
  });

  it('rejects a header alg that differs from the key it names', async () => {
    // Re-label an ES256 key's kid in an RS256 token signed by another RSA key.
    const token = await new SignJWT({ sub: 'checkout' })
      .setProtectedHeader({ alg: 'RS256', kid: ec.kid })
      .setIssuer('trellis')
      .setAudience('orders')
      .setIssuedAt(nowSeconds)
      .setExpirationTime(nowSeconds + 900)
      .sign(stranger.privateKey);
    await expect(verifyMeshToken(token, lookup, expected, now)).resolves.toMatchObject({ valid: false, reason: 'alg-not-allowed' });
  });

  it('rejects an unknown kid and a missing kid', async () => {
    await expect(verifyMeshToken(await mint(stranger), lookup, expected, now)).resolves.toMatchObject({
      valid: false,
      reason: 'unknown-kid',
    });
    const noKid = await new SignJWT({ sub: 'checkout' })
      .setProtectedHeader({ alg: 'RS256' })
      .setIssuer('trellis')
      .setAudience('orders')
      .setIssuedAt(nowSeconds)
      .setExpirationTime(nowSeconds + 900)
      .sign(rsa.privateKey);
    await expect(verifyMeshToken(noKid, lookup, expected, now)).resolves.toMatchObject({ valid: false, reason: 'unknown-kid' });
  });

  it('rejects a known kid whose signature was made by another key', async () => {
    const forged = await new SignJWT({ sub: 'checkout' })
      .setProtectedHeader({ alg: 'RS256', kid: rsa.kid })
      .setIssuer('trellis')
      .setAudience('orders')
      .setIssuedAt(nowSeconds)
      .setExpirationTime(nowSeconds + 900)
      .sign(stranger.privateKey);
    await expect(verifyMeshToken(forged, lookup, expected, now)).resolves.toMatchObject({ valid: false, reason: 'bad-signature' });
  });

  it('rejects expired tokens beyond the skew and accepts them within it', async () => {
    const token = await mint(rsa, { iat: nowSeconds - 900, exp: nowSeconds - 10 });
    await expect(verifyMeshToken(token, lookup, expected, now)).resolves.toMatchObject({ valid: true });
    await expect(verifyMeshToken(token, lookup, expected, now + 31_000)).resolves.toMatchObject({ valid: false, reason: 'expired' });
  });

  it('rejects tokens not valid yet', async () => {
    const token = await mint(rsa, { iat: nowSeconds + 120, nbf: nowSeconds + 120 });
    await expect(verifyMeshToken(token, lookup, expected, now)).resolves.toMatchObject({ valid: false, reason: 'not-yet-valid' });
  });

  it('rejects a lifetime longer than the mesh issues', async () => {
    const token = await mint(rsa, { exp: nowSeconds + 86_400 });
    await expect(verifyMeshToken(token, lookup, expected, now)).resolves.toMatchObject({ valid: false, reason: 'invalid-claims' });
  });

  it('rejects the wrong audience and the wrong issuer', async () => {
    await expect(verifyMeshToken(await mint(rsa, { aud: 'payments' }), lookup, expected, now)).resolves.toMatchObject({
      valid: false,
      reason: 'wrong-audience',
    });
    await expect(verifyMeshToken(await mint(rsa, { iss: 'someone-else' }), lookup, expected, now)).resolves.toMatchObject({
      valid: false,
      reason: 'wrong-issuer',
    });
  });

  it('rejects a tampered payload', async () => {
    const [header, , signature] = (await mint(rsa)).split('.');
    const payload = b64({ iss: 'trellis', sub: 'admin', aud: 'orders', iat: nowSeconds, exp: nowSeconds + 900 });
    await expect(verifyMeshToken(`${header}.${payload}.${signature}`, lookup, expected, now)).resolves.toMatchObject({
      valid: false,
      reason: 'bad-signature',
    });
  });

  it('rejects an oversized header and an oversized token before parsing them', async () => {
    const bigHeader = b64({ alg: 'RS256', kid: rsa.kid, pad: 'x'.repeat(1000) });
    await expect(verifyMeshToken(`${bigHeader}.${b64({})}.${b64('s')}`, lookup, expected, now)).resolves.toMatchObject({
      valid: false,
      reason: 'oversized',
    });
    await expect(verifyMeshToken(`${b64({ alg: 'RS256' })}.${'A'.repeat(5000)}.${b64('s')}`, lookup, expected, now)).resolves.toMatchObject(
      { valid: false, reason: 'oversized' },
    );
  });
});

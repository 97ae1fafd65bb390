import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { assertCanChange, Authenticator, bearerToken } from './auth';
import { ProblemError } from '@trellis/runtime';

describe('Authenticator', () => {
  let sign: (claims: Record<string, unknown>, opts?: { exp?: string; aud?: string }) => Promise<string>;
  let authenticator: Authenticator;

  beforeAll(async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const jwks = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256' }] });
    authenticator = new Authenticator({ adminToken: 'admin-token-0123456789', jwks, issuer: 'idp', audience: 'registry' });
    sign = (claims, opts = {}) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer('idp')
        .setAudience(opts.aud ?? 'registry')
        .setExpirationTime(opts.exp ?? '5m')
        .sign(privateKey);
  });

  it('accepts the admin token', async () => {
    await expect(authenticator.verify('admin-token-0123456789')).resolves.toEqual({
      ok: true,
      principal: { kind: 'admin', actor: 'admin' },
    });
  });

  it('accepts a team token and names the team', async () => {
    const result = await authenticator.verify(await sign({ team: 'payments', sub: 'ci-bot' }));
    expect(result).toEqual({ ok: true, principal: { kind: 'team', team: 'payments', subject: 'ci-bot', actor: 'team:payments' } });
  });

  it.each([
    ['no token', async () => undefined, 'missing'],
    ['garbage', async () => 'abc.def.ghi', 'invalid'],
    ['an expired token', () => sign({ team: 'payments' }, { exp: '-1m' }), 'expired'],
    ['another audience', () => sign({ team: 'payments' }, { aud: 'other' }), 'invalid'],
    ['no team claim', () => sign({ sub: 'x' }), 'no-team'],
    ['a team that is not a DNS label', () => sign({ team: '../admin' }), 'no-team'],
  ])('refuses %s', async (_label, token, reason) => {
    const result = await authenticator.verify(await token());
    expect(result).toMatchObject({ ok: false, reason });
  });

  it('refuses, saying why, when the JWKS cannot be fetched', async () => {
    const unreachable = Authenticator.fromConfig({
      TRELLIS_AUTH_JWKS_URL: 'http://127.0.0.1:1/jwks.json',
      TRELLIS_AUTH_AUDIENCE: 'registry',
    });
    await expect(unreachable.verify(await sign({ team: 'payments' }))).resolves.toMatchObject({ ok: false, reason: 'jwks-unavailable' });
  });

  it('refuses everything when neither an admin token nor a JWKS is configured', async () => {
    const closed = new Authenticator({ audience: 'registry' });
    expect(closed.acceptsAnyToken).toBe(false);
    await expect(closed.verify('anything')).resolves.toMatchObject({ ok: false, reason: 'unconfigured' });
  });
});

describe('bearerToken', () => {
  it('extracts the token from a Bearer header only', () => {
    expect(bearerToken('Bearer abc.def')).toBe('abc.def');
    expect(bearerToken('bearer  xyz ')).toBe('xyz');
    expect(bearerToken('Basic abc')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
    expect(bearerToken('Bearer a b')).toBeUndefined();
  });
});

describe('assertCanChange', () => {
  it('lets admin change anything and a team only its own', () => {
    expect(() => assertCanChange({ kind: 'admin', actor: 'admin' }, ['x', 'y'], 'it')).not.toThrow();
    const team = { kind: 'team' as const, team: 'a', subject: 's', actor: 'team:a' };
    expect(() => assertCanChange(team, ['a'], 'it')).not.toThrow();
    expect(() => assertCanChange(team, ['a', 'b'], 'service "s"')).toThrow(ProblemError);
    expect(() => assertCanChange(team, ['b'], 'service "s"')).toThrow(/belongs to team "b"/);
  });
});

import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
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

describe('Authenticator: team tokens verified before', () => {
  type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  let privateKey: PrivateKey;
  let otherPrivateKey: PrivateKey;
  let keySet: JSONWebKeySet;
  let resolverCalls = 0;
  /** The JWKS as the registry sees it (as createRemoteJWKSet holds it); tests swap `keySet` to withdraw or rotate keys. */
  const localSets = new WeakMap<JSONWebKeySet, JWTVerifyGetKey>();
  const jwks: JWTVerifyGetKey = (header, token) => {
    resolverCalls++;
    if (!localSets.has(keySet)) localSets.set(keySet, createLocalJWKSet(keySet));
    return localSets.get(keySet)!(header, token);
  };
  const sign = (claims: Record<string, unknown>, opts: { exp?: string | number; aud?: string; key?: PrivateKey; kid?: string } = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: opts.kid ?? 'k1' })
      .setIssuer('idp')
      .setIssuedAt()
      .setAudience(opts.aud ?? 'registry')
      .setExpirationTime(opts.exp ?? '5m')
      .sign(opts.key ?? privateKey);
  let signatureChecks: jest.SpyInstance;

  beforeAll(async () => {
    const k1 = await generateKeyPair('RS256');
    const k2 = await generateKeyPair('RS256');
    privateKey = k1.privateKey;
    otherPrivateKey = k2.privateKey;
    keySet = {
      keys: [
        { ...(await exportJWK(k1.publicKey)), kid: 'k1', alg: 'RS256' },
        { ...(await exportJWK(k2.publicKey)), kid: 'k2', alg: 'RS256' },
      ],
    };
  });
  beforeEach(() => {
    resolverCalls = 0;
    signatureChecks = jest.spyOn(globalThis.crypto.subtle, 'verify');
  });
  afterEach(() => signatureChecks.mockRestore());

  const authenticatorWith = (opts: Partial<ConstructorParameters<typeof Authenticator>[0]> = {}) =>
    new Authenticator({ adminToken: 'admin-token-0123456789', jwks, issuer: 'idp', audience: 'registry', ...opts });

  it("checks a token's signature once and answers the same after", async () => {
    const authenticator = authenticatorWith();
    const token = await sign({ team: 'payments', sub: 'ci-bot' });
    const first = await authenticator.verify(token);
    const again = await authenticator.verify(token);
    expect(first).toEqual({ ok: true, principal: { kind: 'team', team: 'payments', subject: 'ci-bot', actor: 'team:payments' } });
    expect(again).toEqual(first);
    expect(signatureChecks).toHaveBeenCalledTimes(1);
    // The JWKS is still asked each time: the remembered answer needs the same key.
    expect(resolverCalls).toBe(2);
  });

  it('answers every token as an authenticator that remembers nothing does, each presented twice', async () => {
    const good = await sign({ team: 'payments', sub: 'ci-bot' });
    const [header, payload, signature] = good.split('.');
    const tokens = [
      good,
      await sign({ team: 'search' }),
      await sign({ team: 'payments' }, { exp: '-1m' }),
      await sign({ team: 'payments' }, { exp: '-10s' }), // inside the skew jose allows
      await sign({ team: 'payments' }, { aud: 'other' }),
      await sign({ sub: 'x' }),
      await sign({ team: '../admin' }),
      await sign({ team: 'payments' }, { key: otherPrivateKey }), // kid k1, signed with k2's key
      `${header}.${payload}.${signature!.slice(0, -4)}AAAA`, // the good token with its signature altered
      `${header}.${Buffer.from(JSON.stringify({ team: 'admin-team', iss: 'idp', aud: 'registry', exp: 4102444800 })).toString('base64url')}.${signature}`,
      'abc.def.ghi',
      'admin-token-0123456789',
    ];
    const remembering = authenticatorWith();
    const forgetting = authenticatorWith({ verifiedTokens: 0 });
    for (const token of [...tokens, ...tokens]) {
      expect(await remembering.verify(token)).toEqual(await forgetting.verify(token));
    }
  });

  it.each([
    ['withdrawn from the JWKS', (set: JSONWebKeySet) => ({ keys: set.keys.filter((k) => k.kid !== 'k1') })],
    ['replaced under the same kid', (set: JSONWebKeySet) => ({ keys: [{ ...set.keys[1]!, kid: 'k1' }] })],
  ])('refuses a remembered token as soon as its key is %s', async (_label, change) => {
    const authenticator = authenticatorWith();
    const token = await sign({ team: 'payments' });
    await expect(authenticator.verify(token)).resolves.toMatchObject({ ok: true });
    await expect(authenticator.verify(token)).resolves.toMatchObject({ ok: true });
    const before = keySet;
    keySet = change(keySet);
    try {
      await expect(authenticator.verify(token)).resolves.toMatchObject({ ok: false, reason: 'invalid' });
    } finally {
      keySet = before;
    }
  });

  it('checks a token in full again once its exp has passed on the clock of the memory', async () => {
    let now = Date.now();
    const authenticator = authenticatorWith({ now: () => now });
    const token = await sign({ team: 'payments' }, { exp: Math.floor(now / 1000) + 120 });
    await authenticator.verify(token);
    now += 119_000;
    await authenticator.verify(token);
    expect(signatureChecks).toHaveBeenCalledTimes(1);
    now += 1_000; // at exp: from here on only jose decides (it allows the skew after exp)
    await expect(authenticator.verify(token)).resolves.toMatchObject({ ok: true });
    expect(signatureChecks).toHaveBeenCalledTimes(2);
  });

  it('remembers a bounded number of tokens, the oldest leaving first', async () => {
    const authenticator = authenticatorWith({ verifiedTokens: 2 });
    const [a, b, c] = await Promise.all([sign({ team: 'a' }), sign({ team: 'b' }), sign({ team: 'c' })]);
    for (const token of [a, b, c]) await authenticator.verify(token);
    expect(signatureChecks).toHaveBeenCalledTimes(3);
    await authenticator.verify(c);
    await authenticator.verify(b);
    expect(signatureChecks).toHaveBeenCalledTimes(3);
    await authenticator.verify(a);
    expect(signatureChecks).toHaveBeenCalledTimes(4);
  });

  it('hands out a remembered principal frozen', async () => {
    const authenticator = authenticatorWith();
    const token = await sign({ team: 'payments' });
    await authenticator.verify(token);
    const again = await authenticator.verify(token);
    expect(again.ok && Object.isFrozen(again.principal)).toBe(true);
  });
});

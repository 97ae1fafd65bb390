// Cloudflare Access validation against a local server playing the team's
// certs endpoint, including a key rotation there.
import { generateKeyPairSync } from 'node:crypto';
import { Registry } from 'prom-client';
import { FakeCloudflareTeam } from '../../test/support/cloudflare-team';
import { AuthzMetrics } from '../metrics';
import { accessTokenFrom, CloudflareAccessVerifier } from './cloudflare-access';

const AUD = 'f'.repeat(64);

describe('CloudflareAccessVerifier', () => {
  let team: FakeCloudflareTeam;
  let metrics: AuthzMetrics;
  let verifier: CloudflareAccessVerifier;
  let app: { teamDomain: string; audience: string };

  beforeEach(async () => {
    team = await FakeCloudflareTeam.start();
    metrics = new AuthzMetrics(new Registry());
    verifier = new CloudflareAccessVerifier(
      { certsUrlTemplate: team.certsUrlTemplate, clockSkewSeconds: 30, cooldownMs: 0, fetchTimeoutMs: 1_000 },
      metrics,
    );
    app = { teamDomain: team.teamDomain, audience: AUD };
  });
  afterEach(() => team.close());

  it('accepts a user token and a service token, and reports who it is', async () => {
    await expect(verifier.verify(await team.sign(AUD, { email: 'ada@example.com' }), app)).resolves.toMatchObject({
      valid: true,
      identity: { email: 'ada@example.com' },
    });
    await expect(verifier.verify(await team.sign(AUD, { commonName: 'abc123.access' }), app)).resolves.toMatchObject({
      valid: true,
      identity: { serviceTokenId: 'abc123.access' },
    });
    expect(team.certsRequests).toBe(1); // cached between calls
  });

  it('rejects the wrong audience, the wrong issuer, expired tokens, foreign keys and garbage', async () => {
    const reasons = async (token: string | undefined) => {
      const result = await verifier.verify(token, app);
      return result.valid ? 'valid' : result.reason;
    };
    expect(await reasons(await team.sign('0'.repeat(64)))).toBe('wrong-audience');
    expect(await reasons(await team.sign(AUD, { issuer: 'https://evil.cloudflareaccess.com' }))).toBe('wrong-issuer');
    expect(await reasons(await team.sign(AUD, { expiresInSeconds: -120 }))).toBe('expired');
    expect(await reasons(await team.sign(AUD, { key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey }))).toBe(
      'bad-signature',
    );
    expect(await reasons('garbage')).toBe('malformed');
    expect(await reasons(undefined)).toBe('missing');
  });

  it('follows a key rotation at the team: a token with a new kid triggers a refetch', async () => {
    await verifier.verify(await team.sign(AUD), app);
    const newKid = await team.rotate({ dropOld: true });
    await expect(verifier.verify(await team.sign(AUD, { kid: newKid }), app)).resolves.toMatchObject({ valid: true });
    expect(team.certsRequests).toBe(2);
  });

  it('prefetches the certs of a team once, and counts a failed prefetch', async () => {
    await verifier.prefetch([team.teamDomain, team.teamDomain]);
    expect(team.certsRequests).toBe(1);
    await verifier.prefetch([team.teamDomain]);
    expect(team.certsRequests).toBe(1);
    await expect(verifier.verify(await team.sign(AUD), app)).resolves.toMatchObject({ valid: true });
    expect(team.certsRequests).toBe(1);
    await verifier.prefetch(['unreachable.cloudflareaccess.com']);
    expect((await metrics.edgeJwksFetchErrors.get()).values[0]?.value).toBe(1);
  });

  it('drops a team domain no URL can be built for (the m.3 crash): prefetch resolves, verify refuses, counted and logged once', async () => {
    const warnings: unknown[] = [];
    const production = new CloudflareAccessVerifier(
      { certsUrlTemplate: 'https://{teamDomain}/cdn-cgi/access/certs', clockSkewSeconds: 30 },
      metrics,
      { warn: (obj: unknown) => void warnings.push(obj) },
    );
    // new URL('https://m.3/…') throws: the last label is numeric, so it must be an IPv4 address.
    await expect(production.prefetch(['m.3', 'a.0x1f'])).resolves.toBeUndefined();
    const bad = { teamDomain: 'm.3', audience: AUD };
    await expect(production.verify(await team.sign(AUD), bad)).resolves.toEqual({ valid: false, reason: 'unusable-team-domain' });
    await production.prefetch(['m.3']);
    expect((await metrics.recordsDropped.get()).values).toEqual([
      expect.objectContaining({ labels: { kind: 'accessTeamDomain' }, value: 2 }),
    ]);
    expect(warnings).toEqual([expect.objectContaining({ teamDomain: 'm.3' }), expect.objectContaining({ teamDomain: 'a.0x1f' })]);
    // Other teams are unaffected.
    await expect(verifier.verify(await team.sign(AUD), app)).resolves.toMatchObject({ valid: true });
  });

  it('fails closed, and counts it, when the certs endpoint is down', async () => {
    team.failWith = 500;
    await expect(verifier.verify(await team.sign(AUD), app)).resolves.toEqual({ valid: false, reason: 'certs-unavailable' });
    expect((await metrics.edgeJwksFetchErrors.get()).values[0]?.value).toBe(1);
  });
});

describe('accessTokenFrom', () => {
  it('prefers the Cf-Access-Jwt-Assertion header, else the CF_Authorization cookie', () => {
    expect(accessTokenFrom({ 'cf-access-jwt-assertion': 'h.e.ader', cookie: 'CF_Authorization=c.o.okie' })).toBe('h.e.ader');
    expect(accessTokenFrom({ cookie: 'a=b; CF_Authorization=c.o.okie; z=1' })).toBe('c.o.okie');
    expect(accessTokenFrom({ cookie: 'XCF_Authorization=nope' })).toBeUndefined();
    expect(accessTokenFrom({})).toBeUndefined();
  });
});

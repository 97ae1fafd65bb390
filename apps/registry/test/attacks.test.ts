// Attacks on the registry, performed against the real app and a real etcd, each
// asserting it is refused (docs/security.md lists them).
import { generateKeyPairSync } from 'node:crypto';
import { startSlowLoris } from '@trellis/testing';
import { call, ADMIN_TOKEN, serviceCredential, spec, startRegistry, type TestRegistry } from './harness';

describe('registry attacks', () => {
  let r: TestRegistry;

  beforeAll(async () => {
    r = await startRegistry();
  }, 60_000);
  afterAll(async () => {
    await r?.close();
  });

  describe('edge takeover: another team claims an ingress host', () => {
    const portal = spec('portal', {
      team: 'web',
      ingress: {
        host: 'portal.example.com',
        pathPrefix: '/',
        cloudflareAccess: { teamDomain: 'web.cloudflareaccess.com', audience: 'a1'.repeat(16) },
      },
    });

    it("refuses another team's service on a host the first service claimed, without changing etcd", async () => {
      const web = await r.teamToken('web');
      const search = await r.teamToken('search');
      expect((await call(r.url, 'POST', '/api/v1/services', { token: web, json: portal })).status).toBe(201);

      const before = await r.snapshot();
      const hijack = spec('aaa-hijack', { team: 'search', ingress: { host: 'portal.example.com', pathPrefix: '/admin' } });
      const refused = await call(r.url, 'POST', '/api/v1/services', { token: search, json: hijack });
      expect(refused.status).toBe(409);
      expect(refused.body).toMatchObject({ host: 'portal.example.com', owner: 'web' });
      // PUT (create) and moving an existing service onto the host are refused too.
      expect((await call(r.url, 'PUT', '/api/v1/services/aaa-hijack', { token: search, json: hijack })).status).toBe(409);
      expect(await r.snapshot()).toEqual(before);

      const own = spec('search-ui', { team: 'search', ingress: { host: 'search.example.com' } });
      const created = await call(r.url, 'POST', '/api/v1/services', { token: search, json: own });
      expect(created.status).toBe(201);
      const moved = await call(r.url, 'PUT', '/api/v1/services/search-ui', {
        token: search,
        json: { ...own, ingress: { host: 'portal.example.com', pathPrefix: '/admin' } },
        headers: { 'if-match': created.headers.get('etag')! },
      });
      expect(moved.status).toBe(409);
    });

    it('keeps the owner while a service of its team is on the host, and releases the host with the last one', async () => {
      const web = await r.teamToken('web');
      const search = await r.teamToken('search');
      const more = spec('portal-api', { team: 'web', ingress: { host: 'portal.example.com', pathPrefix: '/api' } });
      expect((await call(r.url, 'POST', '/api/v1/services', { token: web, json: more })).status).toBe(201);
      const hijack = spec('aaa-hijack', { team: 'search', ingress: { host: 'portal.example.com' } });
      expect((await call(r.url, 'DELETE', '/api/v1/services/portal-api', { token: web })).status).toBe(204);
      expect((await call(r.url, 'POST', '/api/v1/services', { token: search, json: hijack })).status).toBe(409);
      expect((await call(r.url, 'DELETE', '/api/v1/services/portal', { token: web })).status).toBe(204);
      // Nothing is served on the host any more: the claim went with the last service.
      expect(await r.store.getHostClaim('portal.example.com')).toBeUndefined();
      // Re-created by its team, the portal claims the host again.
      expect((await call(r.url, 'POST', '/api/v1/services', { token: web, json: portal })).status).toBe(201);
      expect(await r.store.getHostClaim('portal.example.com')).toMatchObject({ team: 'web', assigned: false });
      expect((await call(r.url, 'DELETE', '/api/v1/services/portal', { token: web })).status).toBe(204);
    });

    it('only an admin assigns a host to another team', async () => {
      const search = await r.teamToken('search');
      const selfAssign = await call(r.url, 'PUT', '/api/v1/hosts/portal.example.com', { token: search, json: { team: 'search' } });
      expect(selfAssign.status).toBe(403);
      const assigned = await call(r.url, 'PUT', '/api/v1/hosts/portal.example.com', { token: ADMIN_TOKEN, json: { team: 'search' } });
      expect(assigned.status).toBe(200);
      expect(assigned.body).toMatchObject({ host: 'portal.example.com', team: 'search', assigned: true, claimedBy: 'admin' });
      const hijack = spec('aaa-hijack', { team: 'search', ingress: { host: 'portal.example.com' } });
      expect((await call(r.url, 'POST', '/api/v1/services', { token: search, json: hijack })).status).toBe(201);
      const hosts = await call(r.url, 'GET', '/api/v1/hosts');
      expect(hosts.body.items).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ host: 'portal.example.com', team: 'search' }),
          expect.objectContaining({ host: 'search.example.com', team: 'search' }),
        ]),
      );
    });

    it('refuses a rollback to a generation on a host that now belongs to another team, and the restore of a deleted one', async () => {
      const search = await r.teamToken('search');
      const web = await r.teamToken('web');
      // search's service starts on a host nobody owns, then moves off it; an admin gives the host to web.
      const docs = spec('docs-ui', { team: 'search', ingress: { host: 'docs.example.com' } });
      const created = await call(r.url, 'POST', '/api/v1/services', { token: search, json: docs });
      expect(created.status).toBe(201);
      const moved = await call(r.url, 'PUT', '/api/v1/services/docs-ui', {
        token: search,
        json: { ...docs, ingress: { host: 'search-docs.example.com' } },
        headers: { 'if-match': created.headers.get('etag')! },
      });
      expect(moved.status).toBe(200);
      expect((await call(r.url, 'PUT', '/api/v1/hosts/docs.example.com', { token: ADMIN_TOKEN, json: { team: 'web' } })).status).toBe(200);
      const portalDocs = spec('portal-docs', { team: 'web', ingress: { host: 'docs.example.com' } });
      expect((await call(r.url, 'POST', '/api/v1/services', { token: web, json: portalDocs })).status).toBe(201);

      const before = await r.snapshot();
      const rollback = await call(r.url, 'POST', '/api/v1/services/docs-ui/rollback', { token: search, json: { generation: 1 } });
      expect(rollback.status).toBe(409);
      expect(rollback.body).toMatchObject({ host: 'docs.example.com', owner: 'web' });
      expect(await r.snapshot()).toEqual(before);
      // Deleted, then restored from the generation on web's host: refused the same way.
      expect((await call(r.url, 'DELETE', '/api/v1/services/docs-ui', { token: search })).status).toBe(204);
      const afterDelete = await r.snapshot();
      const restore = await call(r.url, 'POST', '/api/v1/services/docs-ui/rollback', { token: search, json: { generation: 1 } });
      expect(restore.status).toBe(409);
      expect(await r.snapshot()).toEqual(afterDelete);
    });

    it('lets only one of two teams racing for a new host win', async () => {
      const [a, b] = await Promise.all([r.teamToken('team-a'), r.teamToken('team-b')]);
      const claim = (token: string, name: string, team: string) =>
        call(r.url, 'POST', '/api/v1/services', { token, json: spec(name, { team, ingress: { host: 'race.example.com' } }) });
      const results = await Promise.all([claim(a, 'race-a', 'team-a'), claim(b, 'race-b', 'team-b')]);
      expect(results.map((res) => res.status).sort()).toEqual([201, 409]);
    });
  });

  describe('a deleted service leaves nothing behind (point 10)', () => {
    it('deletes its instances and revokes their leases with the service: heartbeats fail, a re-created service has none', async () => {
      const orders = spec('orders', { team: 'payments' });
      const team = await r.teamToken('payments');
      expect((await call(r.url, 'POST', '/api/v1/services', { token: team, json: orders })).status).toBe(201);
      for (const id of ['orders-1', 'orders-2']) {
        const registered = await call(r.url, 'POST', '/api/v1/services/orders/instances', {
          headers: serviceCredential('orders'),
          json: { id, address: '10.0.0.7', port: 8080, platform: 'vm', ttlSeconds: 600 },
        });
        expect(registered.status).toBe(201);
      }
      const leases = (await r.client.getAll().prefix(r.layout.instancesOf('orders')).exec()).kvs.map((kv) => kv.lease);
      expect(leases).toHaveLength(2);
      const heartbeat = () =>
        call(r.url, 'PUT', '/api/v1/services/orders/instances/orders-1/heartbeat', { headers: serviceCredential('orders') });
      expect((await heartbeat()).status).toBe(204);

      expect((await call(r.url, 'DELETE', '/api/v1/services/orders', { token: team })).status).toBe(204);
      expect(await r.client.getAll().prefix(r.layout.instancesOf('orders')).keys()).toEqual([]);
      for (const lease of leases) expect(await leaseTtl(r, lease)).toBe(-1);
      // The agent keeps heartbeating: refused, and nothing comes back to life.
      expect((await heartbeat()).status).toBe(404);
      expect((await call(r.url, 'POST', '/api/v1/services', { token: team, json: orders })).status).toBe(201);
      expect((await heartbeat()).status).toBe(404);
      expect((await call(r.url, 'GET', '/api/v1/services/orders/instances')).body.items).toEqual([]);
      expect((await call(r.url, 'DELETE', '/api/v1/services/orders', { token: team })).status).toBe(204);
    });

    it('refuses an instance registered for a service that no longer exists', async () => {
      const registered = await call(r.url, 'POST', '/api/v1/services/billing/instances', {
        headers: serviceCredential('billing'),
        json: { id: 'billing-1', address: '10.0.0.8', port: 8080, platform: 'vm', ttlSeconds: 60 },
      });
      expect(registered.status).toBe(404);
      expect(await r.client.getAll().prefix(r.layout.instancesOf('billing')).keys()).toEqual([]);
    });
  });

  describe('team tokens with claims too generous (point 5)', () => {
    const now = () => Math.floor(Date.now() / 1000);
    it.each([
      ['without exp', () => ({ expiresAt: null })],
      ['issued 10 years in the future', () => ({ issuedAt: now() + 10 * 365 * 86_400, expiresAt: now() + 10 * 365 * 86_400 + 300 })],
      ['valid for 100 years', () => ({ expiresAt: now() + 100 * 365 * 86_400 })],
      ['valid for a day and a minute', () => ({ expiresAt: now() + 86_400 + 60 })],
    ])('refuses a validly signed team token %s, changing nothing', async (_what, claims) => {
      const before = await r.snapshot();
      const token = await r.teamToken('web', claims());
      const refused = await call(r.url, 'POST', '/api/v1/services', { token, json: spec('generous', { team: 'web' }) });
      expect(refused.status).toBe(401);
      expect(await r.snapshot()).toEqual(before);
    });
  });

  describe('weak keys in the team JWKS', () => {
    // The registry's own JWKS endpoint serves the keys (a compromised or spoofed IdP); the tokens they sign are
    // otherwise perfect. jose itself refuses RSA keys under 2048 bits; the exponent is ours to check.
    const weakKeys = [3, 17].map((publicExponent) => ({
      kid: `weak-e${publicExponent}`,
      ...generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent }),
    }));
    let idp: TestRegistry;
    beforeAll(async () => {
      idp = await startRegistry();
      // Served before the registry first fetches the JWKS, so no token is refused merely for an unknown kid.
      for (const { kid, publicKey } of weakKeys)
        idp.serveTeamKey({ ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' });
    }, 60_000);
    afterAll(() => idp?.close());

    it.each(weakKeys.map((key) => [key.kid, key] as const))(
      'refuses a team token signed with %s the JWKS serves, changing nothing',
      async (kid, key) => {
        const before = await idp.snapshot();
        const token = await idp.teamToken('web', { signWith: key });
        const refused = await call(idp.url, 'POST', '/api/v1/services', { token, json: spec(`svc-${kid}`, { team: 'web' }) });
        expect(refused.status).toBe(401);
        expect(await idp.snapshot()).toEqual(before);
        // The IdP's good key, served alongside, is accepted: only the key was wrong.
        const good = await call(idp.url, 'POST', '/api/v1/services', {
          token: await idp.teamToken('web'),
          json: spec(`ok-${kid}`, { team: 'web' }),
        });
        expect(good.status).toBe(201);
      },
    );
  });
});

/** The remaining TTL etcd reports for a lease: -1 once it has been revoked or has expired. */
async function leaseTtl(r: TestRegistry, lease: string): Promise<number> {
  const res = await r.client.leaseClient.leaseTimeToLive({ ID: lease, keys: false });
  return Number(res.TTL);
}

describe('attack: slow loris against the registry (#12 point 9)', () => {
  let r: TestRegistry;
  beforeAll(async () => {
    r = await startRegistry({ headersTimeoutMs: 1_000, requestTimeoutMs: 2_000 });
  }, 60_000);
  afterAll(async () => {
    await r?.close();
  });

  it.each(['headers', 'body'] as const)(
    'closes 400 sockets trickling their %s, and keeps serving',
    async (mode) => {
      // The sign-in form's handler reads the whole body before anything else.
      const loris = await startSlowLoris({ port: Number(new URL(r.url).port), sockets: 400, mode, path: '/ui/login' });
      try {
        await loris.allClosed(60_000);
        // Those that got an answer were told why.
        expect(loris.replies).toContain('HTTP/1.1 408 Request Timeout');
        expect(loris.replies.filter((line) => line !== '').every((line) => line.startsWith('HTTP/1.1 408'))).toBe(true);
        expect((await call(r.url, 'GET', '/healthz')).status).toBe(200);
      } finally {
        loris.stop();
      }
    },
    90_000,
  );
});

// The web UI over plain HTTP: CSRF, escaping, security headers, sessions.
import { CSRF_COOKIE } from '../src/ui/session';
import { ADMIN_TOKEN, call, spec, startRegistry } from './harness';
import type { TestRegistry } from './harness';

let registry: TestRegistry;

beforeAll(async () => {
  registry = await startRegistry();
  await call(registry.url, 'PUT', '/api/v1/services/xss', {
    token: ADMIN_TOKEN,
    json: spec('xss', { description: '<script>alert("pwned")</script><img src=x onerror=alert(1)>' }),
  });
}, 120_000);

afterAll(async () => {
  await registry?.close();
});

/** A browser-like session: keeps cookies, reads the CSRF token from the last page. */
class Session {
  private readonly cookies = new Map<string, string>();
  csrf = '';

  async get(path: string): Promise<{ status: number; text: string; headers: Headers }> {
    const res = await fetch(registry.url + path, { headers: { cookie: this.cookieHeader() }, redirect: 'manual' });
    this.keep(res);
    const text = await res.text();
    this.csrf = /name="_csrf" value="([^"]+)"/.exec(text)?.[1] ?? this.csrf;
    return { status: res.status, text, headers: res.headers };
  }

  async post(
    path: string,
    form: Record<string, string>,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; text: string; location: string | null }> {
    const res = await fetch(registry.url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: this.cookieHeader(), ...headers },
      body: new URLSearchParams(form).toString(),
      redirect: 'manual',
    });
    this.keep(res);
    return { status: res.status, text: await res.text(), location: res.headers.get('location') };
  }

  cookie(name: string): string | undefined {
    return this.cookies.get(name);
  }

  /** What a sibling domain can do to a browser: plant a cookie of its choosing. */
  plantCookie(name: string, value: string): void {
    this.cookies.set(name, value);
  }

  private keep(res: Response): void {
    for (const header of res.headers.getSetCookie()) {
      const [pair] = header.split(';');
      const [name, value] = pair!.split('=');
      if (value === '') this.cookies.delete(name!);
      else this.cookies.set(name!, value!);
    }
  }

  private cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

async function signedIn(token = ADMIN_TOKEN): Promise<Session> {
  const session = new Session();
  await session.get('/ui/login');
  const res = await session.post('/ui/login', { _csrf: session.csrf, token, next: '/ui/services' });
  expect(res.status).toBe(303);
  await session.get('/ui/services/new');
  return session;
}

it('escapes user text on every page', async () => {
  const session = new Session();
  for (const path of ['/ui/services', '/ui/services/xss', '/ui/services/xss/history']) {
    const page = await session.get(path);
    expect(page.status).toBe(200);
    expect(page.text).not.toContain('<script>alert');
    expect(page.text).not.toContain('<img src=x');
  }
  expect((await session.get('/ui/services/xss')).text).toContain('&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;');
});

it('sends a strict content security policy and no inline scripts', async () => {
  const page = await new Session().get('/ui/services');
  const csp = page.headers.get('content-security-policy') ?? '';
  expect(csp).toContain("default-src 'none'");
  expect(csp).toContain("form-action 'self'");
  expect(csp).not.toContain('unsafe-inline');
  // Served over plain HTTP here: upgrading would send the forms to an https:// that does not exist.
  expect(csp).not.toContain('upgrade-insecure-requests');
  expect(page.headers.get('strict-transport-security')).toBeNull();
  expect(page.text).not.toMatch(/<script/i);
  expect(page.headers.get('x-content-type-options')).toBe('nosniff');
});

it('refuses form posts without a valid CSRF token or from another origin, changing nothing', async () => {
  const session = await signedIn();
  const before = await registry.snapshot();
  const form = { name: 'forged', team: 'web', protocol: 'http', port: '80' };
  expect((await session.post('/ui/services', form)).status).toBe(403);
  expect((await session.post('/ui/services', { ...form, _csrf: 'A'.repeat(43) })).status).toBe(403);
  expect((await session.post('/ui/services', { ...form, _csrf: session.csrf }, { origin: 'https://evil.example' })).status).toBe(403);
  expect((await session.post('/ui/services/xss/delete', { _csrf: 'nope' })).status).toBe(403);
  expect(await registry.snapshot()).toEqual(before);

  const ok = await session.post('/ui/services', { ...form, _csrf: session.csrf });
  expect(ok.status).toBe(303);
  expect(ok.location).toBe('/ui/services/forged');
});

it('attack: a CSRF token works only in the session it was issued for (#12 point 9)', async () => {
  const victim = await signedIn(await registry.teamToken('web'));
  const attacker = await signedIn(await registry.teamToken('search'));
  const anonymous = new Session();
  await anonymous.get('/ui/login');
  const before = await registry.snapshot();
  const form = { name: 'csrf-forged', team: 'web', protocol: 'http', port: '80' };
  // Cookie tossing: the attacker's nonce cookie is planted in the victim's browser and the
  // forged form carries the token the attacker was issued with it — in its own session, or in none.
  for (const issuer of [attacker, anonymous]) {
    victim.plantCookie(CSRF_COOKIE, issuer.cookie(CSRF_COOKIE)!);
    expect((await victim.post('/ui/services', { ...form, _csrf: issuer.csrf })).status).toBe(403);
  }
  expect(await registry.snapshot()).toEqual(before);
  // The victim's own form, read in its session, still works.
  await victim.get('/ui/services/new');
  expect((await victim.post('/ui/services', { ...form, _csrf: victim.csrf })).status).toBe(303);
});

it('requires signing in to change anything and refuses a bad token', async () => {
  const anonymous = new Session();
  expect((await anonymous.get('/ui/services/new')).status).toBe(303);
  await anonymous.get('/ui/login');
  const before = await registry.snapshot();
  const refused = await anonymous.post('/ui/services', { _csrf: anonymous.csrf, name: 'anon', team: 'web', protocol: 'http', port: '80' });
  expect(refused.status).toBe(401);
  const badLogin = await anonymous.post('/ui/login', { _csrf: anonymous.csrf, token: 'wrong' });
  expect(badLogin.status).toBe(401);
  expect(badLogin.text).toContain('Sign-in failed');
  expect(await registry.snapshot()).toEqual(before);
});

it('does not redirect off-site after signing in', async () => {
  const session = new Session();
  await session.get('/ui/login');
  const res = await session.post('/ui/login', { _csrf: session.csrf, token: ADMIN_TOKEN, next: '//evil.example/ui' });
  expect(res.location).toBe('/ui/services');
});

it('refuses deleting a service others call and says who', async () => {
  const session = await signedIn();
  await call(registry.url, 'PUT', '/api/v1/services/caller', {
    token: ADMIN_TOKEN,
    json: spec('caller', { dependencies: [{ service: 'xss' }] }),
  });
  await session.get('/ui/services/xss');
  const res = await session.post('/ui/services/xss/delete', { _csrf: session.csrf });
  expect(res.status).toBe(409);
  expect(res.text).toContain('still called by &quot;caller&quot;');
});

it('shows proxies with a rejected config next to the change before it', async () => {
  const lease = await registry.client.leaseClient.leaseGrant({ TTL: 30 });
  // Stamped a minute ahead so the changes below still come "before" it.
  const at = new Date(Date.now() + 60_000).toISOString();
  await registry.store.putProxyStatus(
    {
      service: 'xss',
      nodeId: 'xss-1',
      controlPlane: 'cp-a',
      stream: 'cp-a/1',
      connectedAt: at,
      updatedAt: at,
      meshRevision: '7',
      types: { rds: { lastAckedVersion: '6', lastNack: { version: '7', error: 'route: bad <regex>', at } } },
    },
    lease.ID,
  );
  let page = await new Session().get('/ui/services/xss');
  expect(page.text).toContain('version 7 rejected');
  expect(page.text).toContain('route: bad &lt;regex&gt;');
  expect(page.text).toMatch(/latest change before it: <a href="\/ui\/services\/xss\/history">xss generation 1<\/a>/);

  // A change to a service it calls, made before the rejection, is the more likely cause.
  const calls = spec('xss', { description: 'now calls helper', dependencies: [{ service: 'helper' }] });
  await call(registry.url, 'PUT', '/api/v1/services/helper', { token: ADMIN_TOKEN, json: spec('helper') });
  const current = await call(registry.url, 'GET', '/api/v1/services/xss');
  await call(registry.url, 'PUT', '/api/v1/services/xss', {
    token: ADMIN_TOKEN,
    json: calls,
    headers: { 'if-match': current.headers.get('etag')! },
  });
  const helper = await call(registry.url, 'GET', '/api/v1/services/helper');
  await call(registry.url, 'PUT', '/api/v1/services/helper', {
    token: ADMIN_TOKEN,
    json: spec('helper', { port: 9999 }),
    headers: { 'if-match': helper.headers.get('etag')! },
  });
  page = await new Session().get('/ui/services/xss');
  expect(page.text).toMatch(/latest change before it: <a href="\/ui\/services\/helper\/history">helper generation 2<\/a>/);
});

it('links a rejected config to the exact change its mesh revision includes, not the latest one before it', async () => {
  const { store } = registry;
  await store.createService(spec('pay'), 'erin');
  const shop = await store.createService(spec('shop', { dependencies: [{ service: 'pay' }] }), 'erin');
  const cause = await store.updateService(spec('pay', { port: 9090 }), 'carol'); // pay generation 2: the rejected config's change
  await store.updateService({ ...shop.value.spec, description: 'later' }, 'dave'); // newer, and before the rejection in time
  await store.updateService(spec('pay', { port: 9191 }), 'frank');
  const lease = await registry.client.leaseClient.leaseGrant({ TTL: 30 });
  const at = new Date(Date.now() + 60_000).toISOString();
  const meshRevision = cause.modRevision;
  await store.putProxyStatus(
    {
      service: 'shop',
      nodeId: 'shop-1',
      controlPlane: 'cp-a',
      stream: 'cp-a/2',
      connectedAt: at,
      updatedAt: at,
      types: { cds: { lastNack: { version: 'c9', error: 'cluster pay: bad', at, meshRevision } } },
    },
    lease.ID,
  );

  const page = await new Session().get('/ui/services/shop');
  expect(page.text).toContain('version c9 rejected');
  expect(page.text).toContain(
    `built from mesh revision ${meshRevision}, whose newest change is <a href="/ui/services/pay/history#generation-2">pay generation 2</a> (update by carol at ${cause.value.updated.at})`,
  );
  expect(page.text).not.toContain('latest change before it');
  // The link lands on that change's diff.
  const history = await new Session().get('/ui/services/pay/history');
  const entry = /<li class="entry" id="generation-2"[^>]*>([\s\S]*?)<\/li>/.exec(history.text)?.[1] ?? '';
  expect(entry).toContain('by carol');
  expect(entry).toContain('<span class="removed">-   &quot;port&quot;: 8080,</span>');
  expect(entry).toContain('<span class="added">+   &quot;port&quot;: 9090,</span>');
  await registry.client.leaseClient.leaseRevoke({ ID: lease.ID });
});

it('answers unknown UI pages with an HTML 404 and points /topology at the picture', async () => {
  const missing = await new Session().get('/ui/no-such-page');
  expect(missing.status).toBe(404);
  expect(missing.headers.get('content-type')).toMatch(/^text\/html/);
  expect(missing.text).toContain('There is no page at /ui/no-such-page');
  const topology = await fetch(`${registry.url}/topology`, { redirect: 'manual' });
  expect(topology.status).toBe(302);
  expect(topology.headers.get('location')).toBe('/ui/topology');
});

it("shows each service's mTLS mode, and saving the form keeps the mode and the workload identity", async () => {
  await call(registry.url, 'PUT', '/api/v1/services/vault', {
    token: ADMIN_TOKEN,
    json: spec('vault', { mtls: 'strict', workloadIdentity: { kubernetes: [{ namespace: 'pay', serviceAccount: 'vault' }] } }),
  });
  const session = await signedIn();
  const list = await session.get('/ui/services');
  expect(list.text).toContain('<th>mTLS</th>');
  expect(list.text).toMatch(/<a href="\/ui\/services\/vault">vault<\/a>.*?<td class="mtls strict">strict<\/td>/);
  expect(list.text).toMatch(/<a href="\/ui\/services\/xss">xss<\/a>.*?<td class="mtls off">off<\/td>/);
  expect((await session.get('/ui/services/vault')).text).toContain('<dt>mTLS</dt><dd class="mtls strict">strict — only callers');

  const edit = await session.get('/ui/services/vault/edit');
  expect(edit.text).toContain('<option value="strict" selected>');
  const modRevision = /name="modRevision" value="([^"]+)"/.exec(edit.text)![1]!;
  const saved = await session.post('/ui/services/vault', {
    _csrf: session.csrf,
    modRevision,
    name: 'vault',
    team: 'payments',
    protocol: 'http',
    port: '8080',
    mtls: 'strict',
    description: 'edited in the UI',
  });
  expect(saved.status).toBe(303);
  const stored = await call(registry.url, 'GET', '/api/v1/services/vault', { token: ADMIN_TOKEN });
  expect(stored.body.spec).toMatchObject({
    description: 'edited in the UI',
    mtls: 'strict',
    workloadIdentity: { kubernetes: [{ namespace: 'pay', serviceAccount: 'vault' }] },
  });
});

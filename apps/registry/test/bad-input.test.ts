// Hostile and careless input: every request here must get a 4xx
// application/problem+json answer and leave etcd exactly as it was.
import { request } from 'node:http';
import { ADMIN_TOKEN, call, spec, startRegistry } from './harness';
import type { Reply, TestRegistry } from './harness';

const MAX_BODY = 4096;
let registry: TestRegistry;
let before: Record<string, string>;

beforeAll(async () => {
  registry = await startRegistry({ maxBodyBytes: MAX_BODY });
  // Something to damage: an existing service and instance.
  const created = await call(registry.url, 'PUT', '/api/v1/services/target', { token: ADMIN_TOKEN, json: spec('target') });
  expect(created.status).toBe(201);
  const instance = await call(registry.url, 'POST', '/api/v1/services/target/instances', {
    token: ADMIN_TOKEN,
    json: { id: 'i-1', address: '10.1.1.1', port: 80, platform: 'vm', ttlSeconds: 600 },
  });
  expect(instance.status).toBe(201);
  before = await registry.snapshot();
}, 120_000);

afterAll(async () => {
  await registry?.close();
});

afterEach(async () => {
  expect(await registry.snapshot()).toEqual(before);
});

/** Sends the path byte-for-byte (fetch would normalise `..` and `%2e%2e`). */
function rawRequest(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Reply> {
  const { hostname, port } = new URL(registry.url);
  return new Promise((resolve, reject) => {
    // A fresh connection each time: a refused request's unread body must not poison the next one.
    const req = request(
      { host: hostname, port, method, path, agent: false, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: new Headers(res.headers as Record<string, string>), body: parsed, text });
        });
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function expectProblem(res: Reply, status: number, field?: string): void {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, type: expect.stringMatching(/^https:\/\//), title: expect.any(String) });
  if (field !== undefined) expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
}

describe('body framing', () => {
  it('refuses malformed JSON with 400', async () => {
    expectProblem(
      await rawRequest('PUT', '/api/v1/services/target', '{"name": "target",', { 'content-type': 'application/json' }),
      400,
      '(body)',
    );
    expectProblem(await rawRequest('POST', '/api/v1/services', '"just a string"', { 'content-type': 'application/json' }), 400);
  });

  it('refuses oversized bodies with 413', async () => {
    const huge = JSON.stringify(spec('target', { description: 'x'.repeat(MAX_BODY * 2) }));
    expectProblem(await rawRequest('POST', '/api/v1/services', huge, { 'content-type': 'application/json' }), 413, '(body)');
  });

  it('refuses other content types with 415', async () => {
    expectProblem(
      await rawRequest('POST', '/api/v1/services', 'name=x', { 'content-type': 'application/x-www-form-urlencoded' }),
      415,
      'Content-Type',
    );
    expectProblem(await rawRequest('POST', '/api/v1/services', JSON.stringify(spec('plain')), { 'content-type': 'text/plain' }), 415);
    expectProblem(await rawRequest('POST', '/api/v1/services', JSON.stringify(spec('nohdr'))), 415);
  });

  it('refuses a missing body and bodies that are not objects', async () => {
    expectProblem(await rawRequest('POST', '/api/v1/services'), 400, '(body)');
    expectProblem(await call(registry.url, 'POST', '/api/v1/services', { token: ADMIN_TOKEN, json: [spec('arr')] }), 400);
    expectProblem(await call(registry.url, 'POST', '/api/v1/services', { token: ADMIN_TOKEN, json: null }), 400);
  });
});

describe('names in paths', () => {
  it.each<[string, string, number, string | undefined]>([
    ['slash (encoded)', '/api/v1/services/a%2Fb', 400, 'name'],
    ['slash (raw)', '/api/v1/services/a/b', 404, undefined],
    ['dot-dot', '/api/v1/services/..', 400, 'name'],
    ['dot-dot (encoded)', '/api/v1/services/%2e%2e', 400, 'name'],
    ['unicode', '/api/v1/services/caf%C3%A9', 400, 'name'],
    ['homoglyph', '/api/v1/services/%D0%B0pi', 400, 'name'],
    ['NUL', '/api/v1/services/a%00b', 400, 'name'],
    ['newline', '/api/v1/services/a%0Ab', 400, 'name'],
    ['upper case', '/api/v1/services/Target', 400, 'name'],
    ['too long', `/api/v1/services/${'a'.repeat(64)}`, 400, 'name'],
    ['leading dash', '/api/v1/services/-a', 400, 'name'],
    ['the reserved name', '/api/v1/services/trellis-xds', 400, 'name'],
    ['bad percent-encoding', '/api/v1/services/%E0%A4%A', 400, '(request)'],
  ])('refuses a service name with %s', async (_label, path, status, field) => {
    const res = await rawRequest('PUT', path, JSON.stringify({ team: 'payments', protocol: 'http', port: 80 }), {
      'content-type': 'application/json',
    });
    expectProblem(res, status, field);
  });

  it.each([
    ['dot-dot', '/api/v1/services/target/instances/../heartbeat'],
    ['encoded slash', '/api/v1/services/target/instances/a%2Fb/heartbeat'],
    ['unicode', '/api/v1/services/target/instances/%E2%98%83/heartbeat'],
    ['control character', '/api/v1/services/target/instances/a%07b/heartbeat'],
  ])('refuses an instance id with %s', async (_label, path) => {
    const res = await rawRequest('PUT', path);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });
});

describe('service bodies', () => {
  it.each<[string, unknown, string]>([
    ['port as a string', spec('svc', { port: '80' as unknown as number }), 'port'],
    ['fractional port', spec('svc', { port: 80.5 }), 'port'],
    ['port out of range', spec('svc', { port: 70000 }), 'port'],
    ['unknown protocol', spec('svc', { protocol: 'smtp' as 'http' }), 'protocol'],
    ['name as a number', { ...spec('svc'), name: 5 }, 'name'],
    ['name with a slash', spec('a/b'), 'name'],
    ['name with unicode', spec('sérvice'), 'name'],
    ['name with a control character', spec('a\u0000b'), 'name'],
    ['the reserved name trellis-xds (the xDS token audience)', spec('trellis-xds'), 'name'],
    ['a dependency on the reserved name', spec('svc', { dependencies: [{ service: 'trellis-xds' }] }), 'dependencies[0].service'],
    ['dependencies as a string', { ...spec('svc'), dependencies: 'ledger' }, 'dependencies'],
    ['dependency name with ..', spec('svc', { dependencies: [{ service: '..' }] }), 'dependencies[0].service'],
    ['self-dependency', spec('svc', { dependencies: [{ service: 'svc' }] }), 'dependencies[0].service'],
    ['duplicate dependency', spec('svc', { dependencies: [{ service: 'a' }, { service: 'a' }] }), 'dependencies[1].service'],
    ['unknown top-level field', { ...spec('svc'), replicas: 3 }, 'replicas'],
    ['unknown nested field', spec('svc', { policy: { timeoutMs: 100, bogus: true } as object }), 'policy.bogus'],
    [
      'unknown field in a dependency',
      spec('svc', { dependencies: [{ service: 'a', weight: 1 } as { service: string }] }),
      'dependencies[0].weight',
    ],
    ['negative timeout', spec('svc', { policy: { timeoutMs: -5 } }), 'policy.timeoutMs'],
    ['too many retries', spec('svc', { policy: { retries: { attempts: 1000 } } }), 'policy.retries.attempts'],
    [
      'traffic split not adding up to 100',
      spec('svc', {
        trafficSplit: [
          { name: 'v1', labels: { version: 'v1' }, weight: 50 },
          { name: 'v2', labels: { version: 'v2' }, weight: 20 },
        ],
      }),
      'trafficSplit',
    ],
    ['ingress host with a path', spec('svc', { ingress: { host: 'shop.example.com/admin' } }), 'ingress.host'],
    [
      'Access audience that is not hex',
      spec('svc', {
        ingress: { host: 'shop.example.com', cloudflareAccess: { teamDomain: 'acme.cloudflareaccess.com', audience: '<script>' } },
      }),
      'ingress.cloudflareAccess.audience',
    ],
    [
      'Access team domain new URL cannot take (the m.3 crash)',
      spec('svc', {
        ingress: { host: 'shop.example.com', cloudflareAccess: { teamDomain: 'm.3', audience: 'ab'.repeat(16) } },
      }),
      'ingress.cloudflareAccess.teamDomain',
    ],
    ['ingress host ending in a numeric label', spec('svc', { ingress: { host: 'shop.3' } }), 'ingress.host'],
    ['description too long', spec('svc', { description: 'x'.repeat(2000) }), 'description'],
  ])('refuses %s, naming the field', async (_label, body, field) => {
    expectProblem(await call(registry.url, 'POST', '/api/v1/services', { token: ADMIN_TOKEN, json: body }), 400, field);
  });

  it('refuses a malformed If-Match header', async () => {
    expectProblem(
      await call(registry.url, 'PUT', '/api/v1/services/target', {
        token: ADMIN_TOKEN,
        json: spec('target', { port: 1 }),
        headers: { 'if-match': 'abc' },
      }),
      400,
      'If-Match',
    );
  });

  it('refuses bad rollback requests', async () => {
    expectProblem(
      await call(registry.url, 'POST', '/api/v1/services/target/rollback', { token: ADMIN_TOKEN, json: { generation: '1' } }),
      400,
      'generation',
    );
    expectProblem(
      await call(registry.url, 'POST', '/api/v1/services/target/rollback', { token: ADMIN_TOKEN, json: { generation: 1, force: true } }),
      400,
      'force',
    );
    expectProblem(await call(registry.url, 'GET', '/api/v1/services/target/history/abc'), 400, 'generation');
  });
});

describe('instance bodies', () => {
  const good = { id: 'i-2', address: '10.0.0.1', port: 80, platform: 'vm', ttlSeconds: 30 };
  it.each<[string, Record<string, unknown>, string]>([
    ['TTL too short', { ...good, ttlSeconds: 1 }, 'ttlSeconds'],
    ['TTL too long', { ...good, ttlSeconds: 86_400 }, 'ttlSeconds'],
    ['missing TTL', { ...good, ttlSeconds: undefined }, 'ttlSeconds'],
    ['hostname instead of an IP', { ...good, address: 'db.internal' }, 'address'],
    ['id with ..', { ...good, id: 'a..b' }, 'id'],
    ['id with a slash', { ...good, id: 'a/b' }, 'id'],
    ['id with unicode', { ...good, id: 'ünicode' }, 'id'],
    ['unknown platform', { ...good, platform: 'bare-metal' }, 'platform'],
    ['label value with a space', { ...good, labels: { version: 'v 2' } }, 'labels.version'],
    ['service given in the body', { ...good, service: 'other' }, 'service'],
    ['unknown field', { ...good, owner: 'me' }, 'owner'],
  ])('refuses %s, naming the field', async (_label, body, field) => {
    expectProblem(await call(registry.url, 'POST', '/api/v1/services/target/instances', { token: ADMIN_TOKEN, json: body }), 400, field);
  });
});

describe('methods', () => {
  it.each([
    ['PATCH', '/api/v1/services/target', 'GET, PUT, DELETE, HEAD'],
    ['DELETE', '/api/v1/services', 'GET, POST, HEAD'],
    ['GET', '/api/v1/services/target/rollback', 'POST'],
    ['POST', '/api/v1/topology', 'GET, HEAD'],
  ])('answers %s %s with 405 and Allow', async (method, path, allow) => {
    const res = await rawRequest(method, path, '{}', { 'content-type': 'application/json' });
    expectProblem(res, 405);
    expect(res.headers.get('allow')).toBe(allow);
  });
});

describe('queries', () => {
  it('refuses unknown and malformed filters', async () => {
    expectProblem(await call(registry.url, 'GET', '/api/v1/services?owner=me'), 400, 'owner');
    expectProblem(await call(registry.url, 'GET', '/api/v1/services?team=A%2FB'), 400, 'team');
    expectProblem(await call(registry.url, 'GET', '/api/v1/services?team=a&team=b'), 400, 'team');
  });
});

// The REST API against a real etcd: every endpoint, optimistic concurrency,
// dependents, history and rollback, instance leases, authorisation.
import { X509Certificate } from 'node:crypto';
import { createTestPki, eventually, type TestPki } from '@trellis/testing';
import { ADMIN_TOKEN, call, serviceCredential, spec, startRegistry } from './harness';
import type { TestRegistry } from './harness';

let registry: TestRegistry;
let url: string;
// A real client certificate for etcd, as TRELLIS_ETCD_CERT_FILE would hold: /metrics tells when it expires.
let pki: TestPki;

beforeAll(async () => {
  pki = createTestPki();
  registry = await startRegistry({ etcdClientCert: pki.client('registry').cert });
  url = registry.url;
}, 120_000);

afterAll(async () => {
  await registry?.close();
  pki?.remove();
});

const admin = { token: ADMIN_TOKEN };

describe('services', () => {
  it('creates, reads, lists with filters and replaces with If-Match', async () => {
    const created = await call(url, 'POST', '/api/v1/services', {
      ...admin,
      json: spec('checkout', { dependencies: [{ service: 'ledger' }], description: 'Checkout flow' }),
    });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe('/api/v1/services/checkout');
    const etag = created.headers.get('etag')!;
    expect(etag).toBe(`"${created.body.modRevision}"`);
    expect(created.body).toMatchObject({
      generation: 1,
      spec: { name: 'checkout', team: 'payments', dependencies: [{ service: 'ledger' }] },
      created: { actor: 'admin' },
    });

    const again = await call(url, 'POST', '/api/v1/services', { ...admin, json: spec('checkout') });
    expect(again.status).toBe(409);
    expect(again.headers.get('content-type')).toMatch(/^application\/problem\+json/);

    const got = await call(url, 'GET', '/api/v1/services/checkout');
    expect(got.status).toBe(200);
    expect(got.headers.get('etag')).toBe(etag);

    await call(url, 'PUT', '/api/v1/services/ledger', {
      ...admin,
      json: spec('ledger', { team: 'finance', protocol: 'grpc', port: 9000 }),
    });
    const byTeam = await call(url, 'GET', '/api/v1/services?team=finance');
    expect(byTeam.body.items.map((s: { spec: { name: string } }) => s.spec.name)).toEqual(['ledger']);
    const byProtocol = await call(url, 'GET', '/api/v1/services?protocol=http');
    expect(byProtocol.body.items.map((s: { spec: { name: string } }) => s.spec.name)).toContain('checkout');
    expect(byProtocol.body.items.map((s: { spec: { name: string } }) => s.spec.name)).not.toContain('ledger');
    const byQuery = await call(url, 'GET', '/api/v1/services?q=checkout%20flow');
    expect(byQuery.body.items).toHaveLength(1);
    const byDependency = await call(url, 'GET', '/api/v1/services?dependsOn=ledger');
    expect(byDependency.body.items.map((s: { spec: { name: string } }) => s.spec.name)).toEqual(['checkout']);
    const badFilter = await call(url, 'GET', '/api/v1/services?protocol=smtp');
    expect(badFilter.status).toBe(400);
    expect(badFilter.body.errors[0].field).toBe('protocol');

    const noIfMatch = await call(url, 'PUT', '/api/v1/services/checkout', { ...admin, json: spec('checkout', { port: 8081 }) });
    expect(noIfMatch.status).toBe(428);
    const replaced = await call(url, 'PUT', '/api/v1/services/checkout', {
      ...admin,
      json: spec('checkout', { port: 8081 }),
      headers: { 'if-match': etag },
    });
    expect(replaced.status).toBe(200);
    expect(replaced.body).toMatchObject({ generation: 2, spec: { port: 8081 } });
    const stale = await call(url, 'PUT', '/api/v1/services/checkout', {
      ...admin,
      json: spec('checkout', { port: 8082 }),
      headers: { 'if-match': etag },
    });
    expect(stale.status).toBe(412);
    expect(stale.body.currentETag).toBe(replaced.headers.get('etag'));
    expect((await call(url, 'GET', '/api/v1/services/checkout')).body.spec.port).toBe(8081);

    const mismatch = await call(url, 'PUT', '/api/v1/services/checkout', {
      ...admin,
      json: spec('other'),
      headers: { 'if-match': replaced.headers.get('etag')! },
    });
    expect(mismatch.status).toBe(400);
    expect(mismatch.body.errors).toEqual([{ field: 'name', message: 'must match the path ("checkout")' }]);
  });

  it('accepts dependency cycles, which are legal', async () => {
    expect(
      (await call(url, 'PUT', '/api/v1/services/ping', { ...admin, json: spec('ping', { dependencies: [{ service: 'pong' }] }) })).status,
    ).toBe(201);
    expect(
      (await call(url, 'PUT', '/api/v1/services/pong', { ...admin, json: spec('pong', { dependencies: [{ service: 'ping' }] }) })).status,
    ).toBe(201);
    const topology = await call(url, 'GET', '/api/v1/topology');
    expect(topology.body.edges).toEqual(
      expect.arrayContaining([
        { from: 'ping', to: 'pong', admitted: true },
        { from: 'pong', to: 'ping', admitted: true },
      ]),
    );
  });

  it('lets exactly one of two concurrent updates win; the other gets 412', async () => {
    const created = await call(url, 'PUT', '/api/v1/services/race', { ...admin, json: spec('race') });
    expect(created.status).toBe(201);
    const etag = created.headers.get('etag')!;
    const results = await Promise.all(
      [9001, 9002, 9003].map((port) =>
        call(url, 'PUT', '/api/v1/services/race', { ...admin, json: spec('race', { port }), headers: { 'if-match': etag } }),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 412, 412]);
    const winner = results.find((r) => r.status === 200)!;
    const stored = await call(url, 'GET', '/api/v1/services/race');
    expect(stored.body.spec.port).toBe(winner.body.spec.port);
    expect(stored.body.generation).toBe(2);
  });

  it('refuses to delete a service others depend on, naming them, and keeps a delete history entry', async () => {
    await call(url, 'PUT', '/api/v1/services/inventory', { ...admin, json: spec('inventory') });
    await call(url, 'PUT', '/api/v1/services/cart', { ...admin, json: spec('cart', { dependencies: [{ service: 'inventory' }] }) });
    await call(url, 'PUT', '/api/v1/services/search', { ...admin, json: spec('search', { dependencies: [{ service: 'inventory' }] }) });

    const refused = await call(url, 'DELETE', '/api/v1/services/inventory', admin);
    expect(refused.status).toBe(409);
    expect(refused.body.dependents).toEqual(['cart', 'search']);
    expect(refused.body.detail).toContain('"cart"');
    expect((await call(url, 'GET', '/api/v1/services/inventory')).status).toBe(200);

    expect((await call(url, 'DELETE', '/api/v1/services/cart', admin)).status).toBe(204);
    expect((await call(url, 'DELETE', '/api/v1/services/search', admin)).status).toBe(204);
    expect((await call(url, 'DELETE', '/api/v1/services/inventory', admin)).status).toBe(204);
    expect((await call(url, 'GET', '/api/v1/services/inventory')).status).toBe(404);
    expect((await call(url, 'DELETE', '/api/v1/services/inventory', admin)).status).toBe(404);

    const history = await call(url, 'GET', '/api/v1/services/inventory/history');
    expect(history.body.items.map((e: { action: string }) => e.action)).toEqual(['delete', 'create']);
  });

  it('keeps every change in history and rolls back to a previous generation', async () => {
    const v1 = await call(url, 'PUT', '/api/v1/services/pricing', { ...admin, json: spec('pricing', { policy: { timeoutMs: 1000 } }) });
    const v2 = await call(url, 'PUT', '/api/v1/services/pricing', {
      ...admin,
      json: spec('pricing', { policy: { timeoutMs: 250, retries: { attempts: 3 } } }),
      headers: { 'if-match': v1.headers.get('etag')! },
    });
    expect(v2.status).toBe(200);

    const history = await call(url, 'GET', '/api/v1/services/pricing/history');
    expect(history.body.items.map((e: { generation: number; action: string; actor: string }) => [e.generation, e.action, e.actor])).toEqual(
      [
        [2, 'update', 'admin'],
        [1, 'create', 'admin'],
      ],
    );
    const one = await call(url, 'GET', '/api/v1/services/pricing/history/1');
    expect(one.body.spec.policy).toEqual({ timeoutMs: 1000 });

    const rolledBack = await call(url, 'POST', '/api/v1/services/pricing/rollback', { ...admin, json: { generation: 1 } });
    expect(rolledBack.status).toBe(200);
    expect(rolledBack.body).toMatchObject({ generation: 3, spec: { policy: { timeoutMs: 1000 } } });
    expect(rolledBack.body.spec.policy.retries).toBeUndefined();
    const latest = (await call(url, 'GET', '/api/v1/services/pricing/history')).body.items[0];
    expect(latest).toMatchObject({ generation: 3, action: 'rollback', restoredGeneration: 1 });

    const missing = await call(url, 'POST', '/api/v1/services/pricing/rollback', { ...admin, json: { generation: 99 } });
    expect(missing.status).toBe(400);
    expect(missing.body.errors[0].field).toBe('generation');
    const stale = await call(url, 'POST', '/api/v1/services/pricing/rollback', {
      ...admin,
      json: { generation: 2 },
      headers: { 'if-match': v1.headers.get('etag')! },
    });
    expect(stale.status).toBe(412);
  });

  it('restores a deleted service by rolling back to a generation before the delete', async () => {
    await call(url, 'PUT', '/api/v1/services/coupons', { ...admin, json: spec('coupons', { port: 7070 }) });
    expect((await call(url, 'DELETE', '/api/v1/services/coupons', admin)).status).toBe(204);
    expect((await call(url, 'GET', '/api/v1/services/coupons')).status).toBe(404);

    const deletion = await call(url, 'POST', '/api/v1/services/coupons/rollback', { ...admin, json: { generation: 2 } });
    expect(deletion.status).toBe(400); // generation 2 is the deletion itself
    const withEtag = await call(url, 'POST', '/api/v1/services/coupons/rollback', {
      ...admin,
      json: { generation: 1 },
      headers: { 'if-match': '"1"' },
    });
    expect(withEtag.status).toBe(412);
    expect((await call(url, 'POST', '/api/v1/services/nothing-here/rollback', { ...admin, json: { generation: 1 } })).status).toBe(404);

    const restored = await call(url, 'POST', '/api/v1/services/coupons/rollback', { ...admin, json: { generation: 1 } });
    expect(restored.status).toBe(200);
    expect(restored.body).toMatchObject({ generation: 3, spec: { name: 'coupons', port: 7070 } });
    expect((await call(url, 'GET', '/api/v1/services/coupons')).status).toBe(200);
    const history = (await call(url, 'GET', '/api/v1/services/coupons/history')).body.items;
    expect(history.map((e: { generation: number; action: string }) => [e.generation, e.action])).toEqual([
      [3, 'rollback'],
      [2, 'delete'],
      [1, 'create'],
    ]);
    expect(history[0]).toMatchObject({ restoredGeneration: 1 });
  });
});

describe('instances', () => {
  beforeAll(async () => {
    await call(url, 'PUT', '/api/v1/services/orders', { ...admin, json: spec('orders', { team: 'fulfilment' }) });
  });

  it('registers, heartbeats, lists and deregisters', async () => {
    const registered = await call(url, 'POST', '/api/v1/services/orders/instances', {
      ...admin,
      json: {
        id: 'vm-1',
        address: '10.0.0.5',
        port: 8080,
        labels: { version: 'v2' },
        locality: { zone: 'eu-west-1a' },
        platform: 'vm',
        ttlSeconds: 30,
      },
    });
    expect(registered.status).toBe(201);
    expect(registered.body).toMatchObject({
      service: 'orders',
      id: 'vm-1',
      labels: { version: 'v2' },
      locality: { zone: 'eu-west-1a' },
      ttlSeconds: 30,
    });

    expect((await call(url, 'PUT', '/api/v1/services/orders/instances/vm-1/heartbeat', admin)).status).toBe(204);
    const list = await call(url, 'GET', '/api/v1/services/orders/instances');
    expect(list.body.items.map((i: { id: string }) => i.id)).toEqual(['vm-1']);

    expect((await call(url, 'DELETE', '/api/v1/services/orders/instances/vm-1', admin)).status).toBe(204);
    expect((await call(url, 'GET', '/api/v1/services/orders/instances')).body.items).toEqual([]);
    const gone = await call(url, 'PUT', '/api/v1/services/orders/instances/vm-1/heartbeat', admin);
    expect(gone.status).toBe(404);
  });

  it('lets the owning team register instances with its token and refuses other teams', async () => {
    const body = { id: 'pod-a', address: 'fd00::1', port: 8080, platform: 'k8s', ttlSeconds: 30 };
    const own = await call(url, 'POST', '/api/v1/services/orders/instances', { token: await registry.teamToken('fulfilment'), json: body });
    expect(own.status).toBe(201);
    const before = await registry.snapshot();
    const other = await call(url, 'POST', '/api/v1/services/orders/instances', {
      token: await registry.teamToken('payments'),
      json: { ...body, id: 'pod-b' },
    });
    expect(other.status).toBe(403);
    expect(
      (await call(url, 'DELETE', '/api/v1/services/orders/instances/pod-a', { token: await registry.teamToken('payments') })).status,
    ).toBe(403);
    expect(await registry.snapshot()).toEqual(before);
    const unknown = await call(url, 'POST', '/api/v1/services/nope/instances', { ...admin, json: body });
    expect(unknown.status).toBe(404);
  });

  it("takes a service's own credential for that service's instances only", async () => {
    await call(url, 'PUT', '/api/v1/services/billing', { ...admin, json: spec('billing', { team: 'fulfilment' }) });
    const body = { id: 'agent-1', address: '10.0.0.9', port: 8080, platform: 'vm', ttlSeconds: 30 };
    const orders = { headers: serviceCredential('orders') };
    const base = '/api/v1/services/orders/instances/agent-1';
    expect((await call(url, 'POST', '/api/v1/services/orders/instances', { ...orders, json: body })).status).toBe(201);
    expect((await call(url, 'PUT', `${base}/heartbeat`, orders)).status).toBe(204);
    const drained = await call(url, 'PUT', `${base}/drain`, orders);
    expect(drained.status).toBe(200);
    expect(drained.body).toMatchObject({ id: 'agent-1', drainingSince: expect.any(String) });
    expect((await call(url, 'GET', '/api/v1/services/orders/instances')).body.items).toContainEqual(
      expect.objectContaining({ id: 'agent-1', drainingSince: drained.body.drainingSince }),
    );

    // The attack: billing's agent (a valid credential) goes after orders' instances and definition.
    await call(url, 'POST', '/api/v1/services/billing/instances', { ...admin, json: { ...body, id: 'b-1' } });
    const before = await registry.snapshot();
    const billing = { headers: serviceCredential('billing') };
    expect((await call(url, 'POST', '/api/v1/services/orders/instances', { ...billing, json: { ...body, id: 'evil' } })).status).toBe(403);
    expect((await call(url, 'PUT', `${base}/heartbeat`, billing)).status).toBe(403);
    expect((await call(url, 'PUT', `${base}/drain`, billing)).status).toBe(403);
    expect((await call(url, 'DELETE', base, billing)).status).toBe(403);
    // Its own service's definition is not its to change either, nor another service's instances.
    expect((await call(url, 'PUT', '/api/v1/services/billing', { ...billing, json: spec('billing', { team: 'fulfilment' }) })).status).toBe(
      403,
    );
    expect((await call(url, 'DELETE', '/api/v1/services/billing/instances/b-1', orders)).status).toBe(403);
    // A wrong secret, or a service with no credential, is not authenticated.
    expect((await call(url, 'PUT', `${base}/heartbeat`, { headers: serviceCredential('orders', 'wrong-secret-0123456789') })).status).toBe(
      401,
    );
    expect((await call(url, 'PUT', `${base}/heartbeat`, { headers: serviceCredential('ghost', 'whatever-secret-0123') })).status).toBe(401);
    expect(await registry.snapshot()).toEqual(before);

    expect((await call(url, 'DELETE', base, orders)).status).toBe(204);
    expect((await call(url, 'PUT', `${base}/drain`, orders)).status).toBe(404);
  });

  it('removes an instance when its lease expires without heartbeats', async () => {
    const registered = await call(url, 'POST', '/api/v1/services/orders/instances', {
      ...admin,
      json: { id: 'short-lived', address: '10.0.0.9', port: 8080, platform: 'vm', ttlSeconds: 5 },
    });
    expect(registered.status).toBe(201);
    const ids = async () => (await call(url, 'GET', '/api/v1/services/orders/instances')).body.items.map((i: { id: string }) => i.id);
    expect(await ids()).toContain('short-lived');
    // Generous: etcd expires the lease on its own clock, and a loaded machine is slow, not wrong.
    await eventually('the instance on a 5 s lease to expire', async () => !(await ids()).includes('short-lived'), 60_000, {
      intervalMs: 500,
    });
    expect((await call(url, 'PUT', '/api/v1/services/orders/instances/short-lived/heartbeat', admin)).status).toBe(404);
  }, 120_000);
});

describe('topology and proxies', () => {
  it('returns nodes and edges, marking dependencies nobody registered', async () => {
    await call(url, 'PUT', '/api/v1/services/gateway', {
      ...admin,
      json: spec('gateway', { team: 'edge', dependencies: [{ service: 'orders' }, { service: 'ghost' }] }),
    });
    const topology = await call(url, 'GET', '/api/v1/topology');
    expect(topology.status).toBe(200);
    expect(topology.body.edges).toEqual(
      expect.arrayContaining([
        { from: 'gateway', to: 'orders', admitted: true },
        { from: 'gateway', to: 'ghost', admitted: false },
      ]),
    );
    const node = (name: string) => topology.body.nodes.find((n: { name: string }) => n.name === name);
    expect(node('ghost')).toEqual({ name: 'ghost', registered: false, instances: 0 });
    expect(node('gateway')).toMatchObject({ name: 'gateway', team: 'edge', registered: true });
  });

  it('lists the proxy statuses the control plane records', async () => {
    const lease = await registry.client.leaseClient.leaseGrant({ TTL: 30 });
    const now = new Date().toISOString();
    await registry.store.putProxyStatus(
      {
        service: 'gateway',
        nodeId: 'gateway-7f9c',
        controlPlane: 'cp-0',
        stream: 'cp-0/1',
        connectedAt: now,
        updatedAt: now,
        meshRevision: '42',
        types: {
          lds: { lastAckedVersion: 'v1' },
          cds: { lastSentVersion: 'v2', lastNack: { version: 'v2', error: 'cluster ghost: no endpoints', at: now } },
        },
      },
      lease.ID,
    );
    const proxies = await call(url, 'GET', '/api/v1/services/gateway/proxies');
    expect(proxies.status).toBe(200);
    expect(proxies.body.items).toHaveLength(1);
    expect(proxies.body.items[0]).toMatchObject({
      nodeId: 'gateway-7f9c',
      types: { cds: { lastNack: { error: 'cluster ghost: no endpoints' } } },
    });
  });
});

describe('authorisation', () => {
  it('refuses writes without a valid token and leaves etcd unchanged', async () => {
    const before = await registry.snapshot();
    const anonymous = await call(url, 'PUT', '/api/v1/services/intruder', { json: spec('intruder') });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(anonymous.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect((await call(url, 'PUT', '/api/v1/services/intruder', { token: 'not-a-token', json: spec('intruder') })).status).toBe(401);
    expect(
      (
        await call(url, 'PUT', '/api/v1/services/intruder', {
          token: await registry.teamToken('payments', { expiresIn: '-1m' }),
          json: spec('intruder'),
        })
      ).status,
    ).toBe(401);
    expect(
      (
        await call(url, 'PUT', '/api/v1/services/intruder', {
          token: await registry.teamToken('payments', { audience: 'someone-else' }),
          json: spec('intruder'),
        })
      ).status,
    ).toBe(401);
    expect((await call(url, 'DELETE', '/api/v1/services/checkout')).status).toBe(401);
    expect((await call(url, 'POST', '/api/v1/services/pricing/rollback', { json: { generation: 1 } })).status).toBe(401);
    expect(await registry.snapshot()).toEqual(before);
  });

  it('lets a team change only its own services', async () => {
    const payments = await registry.teamToken('payments');
    const before = await registry.snapshot();
    const foreign = await call(url, 'PUT', '/api/v1/services/shipping', { token: payments, json: spec('shipping', { team: 'logistics' }) });
    expect(foreign.status).toBe(403);
    expect(foreign.body.detail).toContain('logistics');
    const current = await call(url, 'GET', '/api/v1/services/ledger');
    const steal = await call(url, 'PUT', '/api/v1/services/ledger', {
      token: payments,
      json: spec('ledger', { team: 'payments' }),
      headers: { 'if-match': current.headers.get('etag')! },
    });
    expect(steal.status).toBe(403);
    expect((await call(url, 'DELETE', '/api/v1/services/ledger', { token: payments })).status).toBe(403);
    expect(await registry.snapshot()).toEqual(before);

    const own = await call(url, 'PUT', '/api/v1/services/refunds', { token: payments, json: spec('refunds') });
    expect(own.status).toBe(201);
    expect(own.body.created.actor).toBe('team:payments');
  });
});

describe('documents and operations', () => {
  it('serves the OpenAPI document and its rendered page', async () => {
    const doc = await call(url, 'GET', '/openapi.json');
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toBe('3.1.0');
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining(['/api/v1/services', '/api/v1/services/{name}', '/api/v1/topology', '/api/v1/services/{name}/rollback']),
    );
    expect(doc.body.components.schemas.ServiceSpec.properties.port).toMatchObject({ type: 'integer', minimum: 1, maximum: 65535 });
  });

  it('serves Swagger UI at /docs from its own assets, scripts from self only', async () => {
    const page = await call(url, 'GET', '/docs');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<script src="/docs/swagger-ui-bundle.js"></script>');
    expect(page.text).not.toMatch(/https?:\/\//);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self';");
    for (const asset of ['/docs/swagger-ui-bundle.js', '/docs/swagger-ui.css', '/docs/init.js']) {
      const res = await call(url, 'GET', asset);
      expect({ asset, status: res.status, size: res.text.length > 20 }).toEqual({ asset, status: 200, size: true });
    }
    expect((await call(url, 'GET', '/docs/package.json')).status).toBe(404);
  });

  it('echoes the caller request id, or makes one', async () => {
    const given = await call(url, 'GET', '/api/v1/services', { headers: { 'x-request-id': 'edge-req-7' } });
    expect(given.headers.get('x-request-id')).toBe('edge-req-7');
    const made = await call(url, 'GET', '/api/v1/services');
    expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers health, readiness and metrics', async () => {
    expect((await call(url, 'GET', '/healthz')).status).toBe(200);
    expect((await call(url, 'GET', '/readyz')).status).toBe(200);
    const metrics = await call(url, 'GET', '/metrics');
    expect(metrics.text).toMatch(
      /trellis_registry_http_requests_total\{route="\/api\/v1\/services\/:name",method="PUT",status="201"\} \d+/,
    );
    expect(metrics.text).toContain('trellis_registry_http_request_duration_seconds_bucket');
    expect(metrics.text).toMatch(/trellis_registry_auth_failures_total\{reason="missing"\} [1-9]/);
    expect(metrics.text).toMatch(/trellis_registry_auth_failures_total\{reason="forbidden"\} [1-9]/);
    expect(metrics.text).toMatch(/trellis_registry_service_changes_total\{action="rollback"\} 2/); // pricing and coupons
    const notAfter = Date.parse(new X509Certificate(pki.client('registry').cert).validTo) / 1000;
    expect(metrics.text).toContain(`\ntrellis_registry_etcd_client_cert_expiry_timestamp_seconds ${notAfter}\n`);
  });

  it('answers unknown routes with a 404 problem', async () => {
    const res = await call(url, 'GET', '/api/v1/nothing-here');
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ status: 404, title: 'Not found' });
  });
});

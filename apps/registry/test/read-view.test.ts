// Reads come from the in-memory view fed by the etcd watch: a writer reads its
// own writes at once, under concurrent writers too; writes made elsewhere (another
// registry replica with its own etcd client) show up as the watch delivers them.
import { connectEtcd, type EtcdClient } from '@trellis/mesh-schema';
import { createLogger } from '@trellis/runtime';
import { eventually, startTcpProxy, type TcpProxy } from '@trellis/testing';
import { startRegistry as startRegistryApp, type RegistryDeps, type RegistryService } from '../src/registry';
import { ADMIN_TOKEN, AUDIENCE, call, ISSUER, spec, startRegistry, type TestRegistry } from './harness';

let registry: TestRegistry;

beforeAll(async () => {
  registry = await startRegistry();
}, 120_000);

afterAll(async () => {
  await registry?.close();
});

const admin = { token: ADMIN_TOKEN };

/** A second registry process's worth of state on the suite's etcd: own clients, own view. */
async function startReplica(etcd: EtcdClient, opts: Partial<RegistryDeps> = {}): Promise<{ service: RegistryService; url: string }> {
  const service = await startRegistryApp({
    config: {
      TRELLIS_AUTH_ISSUER: ISSUER,
      TRELLIS_AUTH_JWKS_URL: registry.jwksUrl,
      TRELLIS_HOST: '127.0.0.1',
      TRELLIS_HTTP_PORT: 0,
      TRELLIS_ADMIN_TOKEN: ADMIN_TOKEN,
      TRELLIS_AUTH_AUDIENCE: AUDIENCE,
      TRELLIS_SERVICE_CREDENTIALS: undefined,
      TRELLIS_CSRF_SECRET: 'test-csrf-secret-0123456789abcdef0123456789',
      TRELLIS_READS_REQUIRE_AUTH: false,
      TRELLIS_MAX_BODY_BYTES: 64 * 1024,
      TRELLIS_SECURE_COOKIES: false,
    },
    etcd,
    layout: registry.layout,
    logger: createLogger('registry-replica', process.env['TRELLIS_TEST_LOG_LEVEL'] ?? 'silent'),
    ...opts,
  });
  return { service, url: `http://127.0.0.1:${service.httpPort}` };
}

it('a writer reads its own writes, with 8 writers at once', async () => {
  const writer = async (w: number) => {
    for (let i = 0; i < 6; i++) {
      const name = `ryw-${w}-${i}`;
      const created = await call(registry.url, 'PUT', `/api/v1/services/${name}`, { ...admin, json: spec(name) });
      expect(created.status).toBe(201);
      const read = await call(registry.url, 'GET', `/api/v1/services/${name}`);
      expect(read.status).toBe(200);
      expect(read.headers.get('etag')).toBe(created.headers.get('etag'));

      const updated = await call(registry.url, 'PUT', `/api/v1/services/${name}`, {
        ...admin,
        json: spec(name, { description: `v2 of ${name}` }),
        headers: { 'if-match': created.headers.get('etag')! },
      });
      expect(updated.status).toBe(200);
      const reread = await call(registry.url, 'GET', `/api/v1/services/${name}`);
      expect(reread.body.spec.description).toBe(`v2 of ${name}`);
      expect(reread.body.generation).toBe(2);

      const registered = await call(registry.url, 'POST', `/api/v1/services/${name}/instances`, {
        ...admin,
        json: { id: `${name}-a`, address: '10.0.0.1', port: 8080, platform: 'vm', ttlSeconds: 60 },
      });
      expect(registered.status).toBe(201);
      const instances = await call(registry.url, 'GET', `/api/v1/services/${name}/instances`);
      expect(instances.body.items.map((i: { id: string }) => i.id)).toEqual([`${name}-a`]);
      const topology = await call(registry.url, 'GET', '/api/v1/topology');
      expect(topology.body.nodes.find((n: { name: string }) => n.name === name)).toMatchObject({ registered: true, instances: 1 });

      expect((await call(registry.url, 'DELETE', `/api/v1/services/${name}/instances/${name}-a`, admin)).status).toBe(204);
      expect((await call(registry.url, 'GET', `/api/v1/services/${name}/instances`)).body.items).toEqual([]);
      expect((await call(registry.url, 'DELETE', `/api/v1/services/${name}`, admin)).status).toBe(204);
      expect((await call(registry.url, 'GET', `/api/v1/services/${name}`)).status).toBe(404);
      const listed = await call(registry.url, 'GET', '/api/v1/services');
      expect(listed.body.items.map((s: { spec: { name: string } }) => s.spec.name)).not.toContain(name);
    }
  };
  await Promise.all(Array.from({ length: 8 }, (_, w) => writer(w)));
  // Every read above came from the view: none had to fall back to etcd.
  const metrics = await call(registry.url, 'GET', '/metrics');
  expect(metrics.text).toMatch(/trellis_registry_view_fallbacks_total 0\b/);
  expect(metrics.headers.get('content-type')).toMatch(/text\/plain/);
}, 180_000);

it('serves the topology with an ETag and answers 304 to a matching If-None-Match', async () => {
  expect((await call(registry.url, 'PUT', '/api/v1/services/tagged', { ...admin, json: spec('tagged') })).status).toBe(201);
  const first = await call(registry.url, 'GET', '/api/v1/topology');
  const etag = first.headers.get('etag')!;
  expect(etag).toMatch(/^".+"$/);
  expect(first.headers.get('x-trellis-view-age')).toBe('0.000');
  // fetch adds `Cache-Control: no-cache` to a conditional request unless one is given.
  const conditional = { headers: { 'if-none-match': etag, 'cache-control': 'max-age=0' } };
  const again = await call(registry.url, 'GET', '/api/v1/topology', conditional);
  expect([again.status, again.headers.get('etag')]).toEqual([304, etag]);
  expect((await call(registry.url, 'PUT', '/api/v1/services/tagged2', { ...admin, json: spec('tagged2') })).status).toBe(201);
  const changed = await call(registry.url, 'GET', '/api/v1/topology', conditional);
  expect(changed.status).toBe(200);
  expect(changed.body.nodes.map((n: { name: string }) => n.name)).toContain('tagged2');
});

it('leaves an unusable stored record out of the view, counted, and reports the view in /readyz', async () => {
  // Written past the registry, as a buggy or hostile writer with etcd access would.
  await registry.client.put(registry.layout.service('mangled')).value('{"spec": "not a service"}');
  expect((await call(registry.url, 'PUT', '/api/v1/services/after-mangled', { ...admin, json: spec('after-mangled') })).status).toBe(201);
  // The write after it is visible, so the view has applied the bad record too.
  expect((await call(registry.url, 'GET', '/api/v1/services/after-mangled')).status).toBe(200);
  expect((await call(registry.url, 'GET', '/api/v1/services/mangled')).status).toBe(404);
  const listed = await call(registry.url, 'GET', '/api/v1/services');
  expect(listed.body.items.map((s: { spec: { name: string } }) => s.spec.name)).not.toContain('mangled');
  expect((await call(registry.url, 'GET', '/metrics')).text).toMatch(/trellis_registry_invalid_records_total\{kind="service"\} 1\b/);
  expect((await call(registry.url, 'GET', '/readyz')).body.checks).toMatchObject({ etcd: true, view: true });
  await registry.client.delete().key(registry.layout.service('mangled'));
});

describe('a write through another replica', () => {
  let other: RegistryService;
  let otherUrl: string;
  let client: EtcdClient;

  beforeAll(async () => {
    client = connectEtcd({ endpoints: registry.etcd.endpoints });
    ({ service: other, url: otherUrl } = await startReplica(client));
  }, 60_000);

  afterAll(async () => {
    await other?.close();
    client?.close();
  });

  it('becomes visible here once the watch delivers it', async () => {
    const created = await call(otherUrl, 'PUT', '/api/v1/services/elsewhere', { ...admin, json: spec('elsewhere') });
    expect(created.status).toBe(201);
    // The writer's own replica reads it at once.
    expect((await call(otherUrl, 'GET', '/api/v1/services/elsewhere')).status).toBe(200);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const read = await call(registry.url, 'GET', '/api/v1/services/elsewhere');
      if (read.status === 200) {
        expect(read.headers.get('etag')).toBe(created.headers.get('etag'));
        break;
      }
      expect(read.status).toBe(404);
      if (Date.now() > deadline) throw new Error('a write through the other replica never showed up here');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // A write straight to etcd (the harness's own client, as `trellis apply` from elsewhere would land) shows up too.
    await registry.store.registerInstance({ service: 'elsewhere', id: 'e-1', address: '10.0.0.9', port: 80, platform: 'vm' }, 60);
    const until = Date.now() + 30_000;
    while ((await call(registry.url, 'GET', '/api/v1/services/elsewhere/instances')).body.items.length === 0) {
      if (Date.now() > until) throw new Error('an instance written straight to etcd never showed up');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });
});

describe("while the view's watch is cut off from etcd", () => {
  let proxy: TcpProxy;
  const clients: EtcdClient[] = [];
  const replicas: RegistryService[] = [];

  beforeAll(async () => {
    const endpoint = new URL(registry.etcd.endpoints[0]!);
    proxy = await startTcpProxy({ host: endpoint.hostname, port: Number(endpoint.port) });
  });

  afterEach(() => proxy.resume());

  afterAll(async () => {
    for (const replica of replicas) await replica.close();
    for (const client of clients) client.close();
    await proxy?.close();
  });

  /** A replica whose writes go straight to etcd and whose view watches through the proxy. */
  async function cutOffReplica(viewCatchUpMs: number) {
    const direct = connectEtcd({ endpoints: registry.etcd.endpoints });
    const watched = connectEtcd({ endpoints: [`http://${proxy.host}:${proxy.port}`] });
    clients.push(direct, watched);
    const replica = await startReplica(direct, { watchEtcd: watched, viewCatchUpMs });
    replicas.push(replica.service);
    await eventually('the replica ready', async () => (await call(replica.url, 'GET', '/readyz')).status === 200, 60_000, {
      intervalMs: 100,
    });
    return replica;
  }

  it('a read after a write waits for the view to catch up rather than answer without the write', async () => {
    const { url } = await cutOffReplica(60_000);
    proxy.pause();
    expect((await call(url, 'PUT', '/api/v1/services/held', { ...admin, json: spec('held') })).status).toBe(201);
    let resumed = false;
    const read = call(url, 'GET', '/api/v1/services/held').then((reply) => ({ reply, afterResume: resumed }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    resumed = true;
    proxy.resume();
    const { reply, afterResume } = await read;
    expect(afterResume).toBe(true);
    expect(reply.status).toBe(200);
    expect(reply.body.spec.name).toBe('held');
  }, 90_000);

  it('a view that cannot catch up in time hands the read to etcd', async () => {
    const { url } = await cutOffReplica(200);
    proxy.pause();
    expect((await call(url, 'PUT', '/api/v1/services/bypassed', { ...admin, json: spec('bypassed') })).status).toBe(201);
    const read = await call(url, 'GET', '/api/v1/services/bypassed');
    expect(read.status).toBe(200);
    expect(read.headers.get('x-trellis-view-age')).toBe('0.000'); // read from etcd: current
    expect((await call(url, 'GET', '/api/v1/topology')).body.nodes.map((n: { name: string }) => n.name)).toContain('bypassed');
    expect((await call(url, 'GET', '/metrics')).text).toMatch(/trellis_registry_view_fallbacks_total [2-9]/);
  }, 90_000);
  // The attack: a team keeps registering instances of a service an admin moved to another team, counting on
  // a replica whose view has not seen the move. The registration's txn requires the version the view held.
  it('an instance registration is never decided on a stale owner: the old team is refused, the new one admitted', async () => {
    const { url } = await cutOffReplica(60_000);
    const created = await registry.store.createService(spec('moving', { team: 'alpha' }), 'admin');
    await eventually(
      'the replica to see the service',
      async () => (await call(url, 'GET', '/api/v1/services/moving')).status === 200,
      30_000,
      {
        intervalMs: 100,
      },
    );
    proxy.pause();
    await registry.store.updateService(spec('moving', { team: 'beta' }), 'admin', { ifModRevision: created.modRevision });
    const body = { id: 'sneaky-1', address: '10.0.0.7', port: 8080, platform: 'vm', ttlSeconds: 60 };
    const refused = await call(url, 'POST', '/api/v1/services/moving/instances', { token: await registry.teamToken('alpha'), json: body });
    expect(refused.status).toBe(403);
    expect(await registry.store.listInstances('moving')).toEqual([]);
    const admitted = await call(url, 'POST', '/api/v1/services/moving/instances', {
      token: await registry.teamToken('beta'),
      json: { ...body, id: 'rightful-1' },
    });
    expect(admitted.status).toBe(201);
    expect((await registry.store.listInstances('moving')).map((i) => i.id)).toEqual(['rightful-1']);
  }, 90_000);
});

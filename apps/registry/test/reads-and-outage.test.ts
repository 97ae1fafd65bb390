// Reads behind authentication when configured, and what callers see while
// etcd is down: 503 problems, not-ready, counted errors; then recovery.
import { ADMIN_TOKEN, call, spec, startRegistry } from './harness';
import type { TestRegistry } from './harness';

let registry: TestRegistry;

beforeAll(async () => {
  registry = await startRegistry({ readsRequireAuth: true });
}, 120_000);

afterAll(async () => {
  await registry?.close();
});

it('requires a token for reads when configured', async () => {
  expect((await call(registry.url, 'PUT', '/api/v1/services/quiet', { token: ADMIN_TOKEN, json: spec('quiet') })).status).toBe(201);
  expect((await call(registry.url, 'GET', '/api/v1/services')).status).toBe(401);
  expect((await call(registry.url, 'GET', '/api/v1/topology')).status).toBe(401);
  const res = await fetch(`${registry.url}/ui/services`, { redirect: 'manual' });
  expect(res.status).toBe(303);
  expect(res.headers.get('location')).toBe('/ui/login?next=%2Fui%2Fservices');
  const teamRead = await call(registry.url, 'GET', '/api/v1/services', { token: await registry.teamToken('anyone') });
  expect(teamRead.status).toBe(200);
  expect(teamRead.body.items).toHaveLength(1);
  // Health endpoints stay open for probes.
  expect((await call(registry.url, 'GET', '/healthz')).status).toBe(200);
});

it('answers 503 and reports not ready while etcd is down, and recovers', async () => {
  if (!registry.etcd.canRestart) return; // a shared or containerised etcd cannot be stopped from here
  await registry.etcd.stop();
  try {
    const read = await call(registry.url, 'GET', '/api/v1/services/quiet', { token: ADMIN_TOKEN });
    expect(read.status).toBe(503);
    expect(read.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(read.body.detail).toContain('etcd');
    const ready = await call(registry.url, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.checks.etcd).toBe(false);
    const metrics = await call(registry.url, 'GET', '/metrics');
    expect(metrics.text).toMatch(/trellis_registry_etcd_errors_total\{operation="getService"\} [1-9]/);
  } finally {
    await registry.etcd.start();
  }
  const deadline = Date.now() + 60_000;
  for (;;) {
    const again = await call(registry.url, 'GET', '/api/v1/services/quiet', { token: ADMIN_TOKEN });
    if (again.status === 200 && (await call(registry.url, 'GET', '/readyz')).status === 200) break;
    if (Date.now() > deadline) throw new Error(`still ${again.status} 60 s after etcd came back`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}, 120_000);

// Reads behind authentication when configured, and what callers see while
// etcd is down: reads from the view (with its age), 503 for writes, not-ready,
// counted errors; then recovery.
import { eventually } from '@trellis/testing';
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

it('while etcd is down: reads come from the in-memory view with its age, writes get 503, not ready; then recovers', async () => {
  if (!registry.etcd.canRestart) return; // a shared or containerised etcd cannot be stopped from here
  await registry.etcd.stop();
  try {
    const read = await call(registry.url, 'GET', '/api/v1/services/quiet', { token: ADMIN_TOKEN });
    expect(read.status).toBe(200);
    expect(read.body.spec.name).toBe('quiet');
    // The watch drops within a few seconds of etcd going away; from then the view says how old it is.
    const viewAge = async () =>
      Number((await call(registry.url, 'GET', '/api/v1/topology', { token: ADMIN_TOKEN })).headers.get('x-trellis-view-age'));
    await eventually('the view to report an age while etcd is down', async () => (await viewAge()) > 0, 60_000, { intervalMs: 500 });
    const write = await call(registry.url, 'PUT', '/api/v1/services/later', { token: ADMIN_TOKEN, json: spec('later') });
    expect(write.status).toBe(503);
    expect(write.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(write.body.detail).toContain('etcd');
    const ready = await call(registry.url, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.checks.etcd).toBe(false);
    const metrics = await call(registry.url, 'GET', '/metrics');
    expect(metrics.text).toMatch(/trellis_registry_etcd_errors_total\{operation="getService"\} [1-9]/);
    expect(metrics.text).toMatch(/trellis_registry_view_age_seconds [0-9.]*[1-9]/);
  } finally {
    await registry.etcd.start();
  }
  const deadline = Date.now() + 60_000;
  for (;;) {
    const again = await call(registry.url, 'PUT', '/api/v1/services/later', { token: ADMIN_TOKEN, json: spec('later') });
    if (again.status !== 503) {
      expect(again.status).toBe(201);
      break;
    }
    if (Date.now() > deadline) throw new Error('writes still 503 60 s after etcd came back');
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  while ((await call(registry.url, 'GET', '/readyz')).status !== 200) {
    if (Date.now() > deadline) throw new Error('not ready 60 s after etcd came back');
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  // The write just made is read back, and the view follows etcd again.
  expect((await call(registry.url, 'GET', '/api/v1/services/later', { token: ADMIN_TOKEN })).status).toBe(200);
  const fresh = Date.now() + 60_000;
  while ((await call(registry.url, 'GET', '/api/v1/topology', { token: ADMIN_TOKEN })).headers.get('x-trellis-view-age') !== '0.000') {
    if (Date.now() > fresh) throw new Error('the view did not follow etcd again');
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}, 180_000);

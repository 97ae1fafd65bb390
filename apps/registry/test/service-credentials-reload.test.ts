// The registry follows TRELLIS_SERVICE_CREDENTIALS without a restart: a credential
// removed from the mounted Secret is refused within the reload period, one added is
// accepted, and a broken Secret neither brings a revoked credential back nor accepts a
// new one. The Secret is updated the way the kubelet does it: new files in a fresh
// directory, then an atomic swap of the `..data` symlink the visible names point through
// (@trellis/testing's updateSecretVolume).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, updateSecretVolume } from '@trellis/testing';
import { ADMIN_TOKEN, call, serviceCredential, spec, startRegistry, type TestRegistry } from './harness';

const admin = { token: ADMIN_TOKEN };
const SECRETS = {
  orders: 'orders-agent-secret-0123456789',
  billing: 'billing-agent-secret-0123456789',
  reports: 'reports-agent-secret-0123456789',
  shipping: 'shipping-agent-secret-0123456789',
};
type Service = keyof typeof SECRETS;
const agent = (service: Service) => ({ headers: serviceCredential(service, SECRETS[service]) });
const instance = (id: string) => ({ id, address: '10.0.0.9', port: 8080, platform: 'vm', ttlSeconds: 60 });

const secretsOf = (...services: Service[]) => Object.fromEntries(services.map((service) => [service, `${SECRETS[service]}\n`]));

async function metric(registry: TestRegistry, series: string): Promise<number | undefined> {
  const { text } = await call(registry.url, 'GET', '/metrics');
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('service credentials reloaded from their Secret', () => {
  let dir: string;
  let registry: TestRegistry;
  let url: string;
  const heartbeat = (service: Service) => call(url, 'PUT', `/api/v1/services/${service}/instances/${service}-1/heartbeat`, agent(service));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'registry-credentials-'));
    await updateSecretVolume(dir, secretsOf('orders', 'billing'));
    registry = await startRegistry({ serviceCredentialsPath: dir, serviceCredentialsReloadSeconds: 1 });
    url = registry.url;
    for (const service of Object.keys(SECRETS)) {
      expect((await call(url, 'PUT', `/api/v1/services/${service}`, { ...admin, json: spec(service) })).status).toBe(201);
    }
  }, 60_000);
  afterAll(async () => {
    await registry?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a removed credential, accepts an added one, and keeps the last good set when the Secret is broken', async () => {
    for (const service of ['orders', 'billing'] as const) {
      const registered = await call(url, 'POST', `/api/v1/services/${service}/instances`, {
        ...agent(service),
        json: instance(`${service}-1`),
      });
      expect(registered.status).toBe(201);
    }
    expect(await metric(registry, 'trellis_registry_service_credentials')).toBe(2);

    // Revoked: orders' secret leaked and is taken out of the Secret. No restart.
    await updateSecretVolume(dir, secretsOf('billing'));
    await eventually('the revoked orders credential to be refused', async () => (await heartbeat('orders')).status === 401);
    expect((await heartbeat('billing')).status).toBe(204);
    expect(await metric(registry, 'trellis_registry_service_credentials')).toBe(1);
    expect(await metric(registry, 'trellis_registry_service_credentials_reloads_total{result="ok"}')).toBe(1);

    // Added: a new service's agent is accepted once its credential is in the Secret.
    const registerReports = () =>
      call(url, 'POST', '/api/v1/services/reports/instances', { ...agent('reports'), json: instance('reports-1') });
    expect((await registerReports()).status).toBe(401);
    await updateSecretVolume(dir, secretsOf('billing', 'reports'));
    await eventually('the added reports credential to be accepted', async () => (await registerReports()).status === 201);
    expect(await metric(registry, 'trellis_registry_service_credentials')).toBe(2);

    // Broken: a Secret that does not parse (a secret too short) and that also carries the revoked orders
    // credential and a new one. Neither is accepted: the last good set stays in force, whole.
    await updateSecretVolume(dir, { ...secretsOf('billing', 'reports', 'orders', 'shipping'), payments: 'short\n' });
    await eventually(
      'the broken Secret to be counted invalid',
      async () => (await metric(registry, 'trellis_registry_service_credentials_reloads_total{result="invalid"}')) === 1,
    );
    expect((await heartbeat('orders')).status).toBe(401);
    const shipping = await call(url, 'POST', '/api/v1/services/shipping/instances', { ...agent('shipping'), json: instance('shipping-1') });
    expect(shipping.status).toBe(401);
    expect((await heartbeat('billing')).status).toBe(204);
    expect((await heartbeat('reports')).status).toBe(204);
    expect(await metric(registry, 'trellis_registry_service_credentials')).toBe(2);
    expect(await metric(registry, 'trellis_registry_service_credentials_reloads_total{result="ok"}')).toBe(2);

    // Repaired: the next good content applies (and a broken one is counted once, not on every poll).
    await updateSecretVolume(dir, secretsOf('billing', 'shipping'));
    await eventually('the repaired Secret to apply', async () => (await heartbeat('reports')).status === 401);
    expect(
      (await call(url, 'POST', '/api/v1/services/shipping/instances', { ...agent('shipping'), json: instance('shipping-1') })).status,
    ).toBe(201);
    expect(await metric(registry, 'trellis_registry_service_credentials_reloads_total{result="invalid"}')).toBe(1);
  }, 120_000);
});

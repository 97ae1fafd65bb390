// The registry's metric series are bounded: no label takes a service name, an
// instance id, a path or anything else a caller chooses. A label that did would add
// series with every new name, for as long as the process runs (prom-client never
// forgets a label set), and a caller could grow it at will. Two rounds of the same
// requests under new names must leave the series exactly as the first left them.
import { ADMIN_TOKEN, call, spec, startRegistry } from './harness';
import type { TestRegistry } from './harness';

let registry: TestRegistry;

beforeAll(async () => {
  registry = await startRegistry();
}, 120_000);

afterAll(async () => {
  await registry?.close();
});

const admin = { token: ADMIN_TOKEN };

/** The label sets of every `trellis_registry_*` sample the registry exports now. */
async function registrySeries(): Promise<string[]> {
  const { text } = await call(registry.url, 'GET', '/metrics');
  return text
    .split('\n')
    .filter((line) => line.startsWith('trellis_registry_'))
    .map((line) => line.slice(0, line.lastIndexOf(' ')))
    .sort();
}

/** Writes and reads under names used nowhere else, and requests a caller makes up: each kind of outcome once. */
async function round(tag: string): Promise<void> {
  const name = `card-${tag}`;
  const url = registry.url;
  const expect201 = async (reply: Promise<{ status: number }>) => expect((await reply).status).toBe(201);
  await expect201(call(url, 'POST', '/api/v1/services', { ...admin, json: spec(name) }));
  const etag = (await call(url, 'GET', `/api/v1/services/${name}`)).headers.get('etag')!;
  expect((await call(url, 'PUT', `/api/v1/services/${name}`, { ...admin, json: spec(name), headers: { 'if-match': etag } })).status).toBe(
    200,
  );
  const instance = { id: `${name}-1`, address: '10.0.0.1', port: 8080, platform: 'vm', ttlSeconds: 30 };
  await expect201(call(url, 'POST', `/api/v1/services/${name}/instances`, { ...admin, json: instance }));
  expect((await call(url, 'PUT', `/api/v1/services/${name}/instances/${name}-1/heartbeat`, admin)).status).toBe(204);
  expect((await call(url, 'DELETE', `/api/v1/services/${name}/instances/${name}-1`, admin)).status).toBe(204);
  for (const path of [
    `/api/v1/services/${name}/instances`,
    `/api/v1/services/${name}/history`,
    `/api/v1/services?q=${name}`,
    `/ui/services/${name}`,
    `/ui/services/${name}/history`,
  ]) {
    expect((await call(url, 'GET', path)).status).toBe(200);
  }
  expect((await call(url, 'DELETE', `/api/v1/services/${name}`, admin)).status).toBe(204);
  // What a caller makes up: names that do not exist, invalid ones, paths no route declares.
  expect((await call(url, 'GET', `/api/v1/services/${name}`)).status).toBe(404);
  expect((await call(url, 'GET', `/ui/services/${name}`)).status).toBe(404);
  expect((await call(url, 'GET', `/api/v1/services/${name.toUpperCase()}_`)).status).toBe(400);
  expect((await call(url, 'GET', `/api/v1/no-such-${tag}/${tag}`)).status).toBe(404);
  expect((await call(url, 'GET', `/no-such-${tag}`)).status).toBe(404);
  expect((await call(url, 'PUT', `/api/v1/services/${name}`, { token: `not-a-token-${tag}`, json: spec(name) })).status).toBe(401);
}

it('keeps the same metric series however many names, ids and paths it is asked about', async () => {
  await registrySeries(); // the scrape counts itself from the next one on
  await round('first');
  const first = await registrySeries();
  expect(first.some((series) => series.includes('route="unmatched"'))).toBe(true);
  for (const tag of ['second', 'third', 'fourth']) await round(tag);
  expect(await registrySeries()).toEqual(first);
  // And none of them names what the rounds made up.
  expect((await registrySeries()).filter((series) => /card-|no-such|not-a-token/.test(series))).toEqual([]);
}, 120_000);

it('exports no etcd client certificate expiry where etcd is reached without one (an unset gauge would read as long expired)', async () => {
  expect((await registrySeries()).filter((series) => series.startsWith('trellis_registry_etcd_client_cert'))).toEqual([]);
});

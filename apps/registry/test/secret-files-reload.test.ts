// TRELLIS_ADMIN_TOKEN_FILE and TRELLIS_CSRF_SECRET_FILE: rotating the admin token or the CSRF secret is a Secret
// update, no restart. After a rotation the old token is refused and the new one accepted (on the poll, or at once on
// SIGHUP); a CSRF token signed with the old secret is refused. A Secret emptied or broken by mistake keeps the last
// good secret, never an empty one: fail closed. The Secret is updated as the kubelet does (updateSecretVolume).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, updateSecretVolume } from '@trellis/testing';
import { call, spec, startRegistry, type TestRegistry } from './harness';

const OLD_TOKEN = 'old-admin-token-0123456789abcdef';
const NEW_TOKEN = 'new-admin-token-0123456789abcdef';
const OLD_CSRF = 'old-csrf-secret-0123456789abcdef0123456789';
const NEW_CSRF = 'new-csrf-secret-0123456789abcdef0123456789';

async function metric(registry: TestRegistry, series: string): Promise<number | undefined> {
  const { text } = await call(registry.url, 'GET', '/metrics');
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('the admin token and the CSRF secret, followed from their files', () => {
  let dir: string;
  let registry: TestRegistry;
  const createService = (token: string, name: string) => call(registry.url, 'PUT', `/api/v1/services/${name}`, { token, json: spec(name) });
  const reloads = (secret: string, result: string) =>
    metric(registry, `trellis_registry_secret_file_reloads_total{secret="${secret}",result="${result}"}`);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'registry-secrets-'));
    await updateSecretVolume(dir, { 'admin-token': `${OLD_TOKEN}\n`, 'csrf-secret': `${OLD_CSRF}\n` });
    registry = await startRegistry({
      adminTokenFile: join(dir, 'admin-token'),
      csrfSecretFile: join(dir, 'csrf-secret'),
      serviceCredentialsReloadSeconds: 1,
    });
  }, 60_000);
  afterAll(async () => {
    await registry?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('after a rotation refuses the old admin token and accepts the new one; an emptied or short file keeps the new one', async () => {
    // Exported at 0 from the start, so an alert's increase() counts the first refusal.
    for (const secret of ['admin_token', 'csrf_secret']) expect(await reloads(secret, 'invalid')).toBe(0);
    expect((await createService(OLD_TOKEN, 'before-rotation')).status).toBe(201);
    expect((await createService(NEW_TOKEN, 'too-early')).status).toBe(401);

    await updateSecretVolume(dir, { 'admin-token': `${NEW_TOKEN}\n`, 'csrf-secret': `${OLD_CSRF}\n` });
    await eventually('the old admin token to be refused', async () => (await createService(OLD_TOKEN, 'old-token')).status === 401);
    expect((await createService(NEW_TOKEN, 'after-rotation')).status).toBe(201);
    expect(await reloads('admin_token', 'ok')).toBe(1);

    // Emptied by mistake: no empty token is ever accepted, and the old one does not come back.
    await updateSecretVolume(dir, { 'admin-token': '\n', 'csrf-secret': `${OLD_CSRF}\n` });
    await eventually('the emptied file to be refused', async () => (await reloads('admin_token', 'invalid')) === 1);
    expect(
      (
        await call(registry.url, 'PUT', '/api/v1/services/empty-token', {
          headers: { authorization: 'Bearer ' },
          json: spec('empty-token'),
        })
      ).status,
    ).toBe(401);
    expect((await createService(OLD_TOKEN, 'old-after-empty')).status).toBe(401);
    expect((await createService(NEW_TOKEN, 'new-after-empty')).status).toBe(201);

    // Too short (and carrying the old token on a second line): refused whole, the new token stays.
    await updateSecretVolume(dir, { 'admin-token': `short\n${OLD_TOKEN}\n`, 'csrf-secret': `${OLD_CSRF}\n` });
    await eventually('the broken file to be refused', async () => (await reloads('admin_token', 'invalid')) === 2);
    expect((await createService(OLD_TOKEN, 'old-after-broken')).status).toBe(401);
    expect((await createService(NEW_TOKEN, 'new-after-broken')).status).toBe(201);
    expect(await reloads('admin_token', 'ok')).toBe(1);
  });

  it('on SIGHUP (reloadFiles) rotates the CSRF secret: a form token signed with the old one is refused, a fresh one works', async () => {
    // The login form's CSRF token, signed with the old secret, bound to its cookie.
    const loginForm = async () => {
      const res = await fetch(`${registry.url}/ui/login`, { redirect: 'manual' });
      const cookie = res.headers
        .getSetCookie()
        .map((c) => c.split(';')[0])
        .join('; ');
      const csrf = /name="_csrf" value="([^"]+)"/.exec(await res.text())?.[1];
      expect(csrf).toBeDefined();
      return { cookie, csrf: csrf! };
    };
    const logIn = (form: { cookie: string; csrf: string }) =>
      fetch(`${registry.url}/ui/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: form.cookie },
        body: new URLSearchParams({ _csrf: form.csrf, token: NEW_TOKEN, next: '/ui/services' }).toString(),
        redirect: 'manual',
      });
    const issuedBefore = await loginForm();

    await updateSecretVolume(dir, { 'admin-token': `${NEW_TOKEN}\n`, 'csrf-secret': `${NEW_CSRF}\n` });
    await registry.reloadFiles();
    expect(await reloads('csrf_secret', 'ok')).toBe(1);

    expect((await logIn(issuedBefore)).status).toBe(403);
    expect((await logIn(await loginForm())).status).toBe(303);
  });
});

describe('a Secret without the optional admin-token key (the Helm chart mounts its Secret as files)', () => {
  let dir: string;
  let registry: TestRegistry;
  const createService = (token: string, name: string) => call(registry.url, 'PUT', `/api/v1/services/${name}`, { token, json: spec(name) });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'registry-secrets-'));
    await updateSecretVolume(dir, { 'csrf-secret': `${OLD_CSRF}\n` });
    registry = await startRegistry({
      adminTokenFile: join(dir, 'admin-token'),
      csrfSecretFile: join(dir, 'csrf-secret'),
      serviceCredentialsReloadSeconds: 1,
    });
  }, 60_000);
  afterAll(async () => {
    await registry?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('starts with no admin token, refusing every bearer, and accepts one once the Secret gains the key', async () => {
    expect((await createService(NEW_TOKEN, 'no-admin-token-yet')).status).toBe(401);
    expect(
      (
        await call(registry.url, 'PUT', '/api/v1/services/empty-bearer', {
          headers: { authorization: 'Bearer ' },
          json: spec('empty-bearer'),
        })
      ).status,
    ).toBe(401);

    await updateSecretVolume(dir, { 'admin-token': `${NEW_TOKEN}\n`, 'csrf-secret': `${OLD_CSRF}\n` });
    await eventually(
      'the added admin token to be accepted',
      async () => (await createService(NEW_TOKEN, 'admin-token-added')).status === 201,
    );
    expect(await metric(registry, 'trellis_registry_secret_file_reloads_total{secret="admin_token",result="ok"}')).toBe(1);
    expect(await metric(registry, 'trellis_registry_secret_file_reloads_total{secret="admin_token",result="invalid"}')).toBe(0);
  });
});

// TRELLIS_ADMIN_TOKEN_FILE: rotating the control plane's admin token (for /debug and /bootstrap) is a Secret
// update, no restart. After a rotation the old token is refused and the new one accepted (at once on SIGHUP,
// reloadFiles); a Secret emptied or broken by mistake keeps the last good token, never none or an empty one.
// The Secret is updated as the kubelet does (updateSecretVolume).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEtcd, updateSecretVolume, type TestEtcd } from '@trellis/testing';
import { startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';

jest.setTimeout(120_000);

const OLD_TOKEN = 'old-cp-admin-token-0123456789';
const NEW_TOKEN = 'new-cp-admin-token-0123456789';

// One etcd for the file: a start that fails leaves nothing of its own running.
let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.close();
});

describe('the admin token, followed from its file', () => {
  let dir: string;
  let h: ControlPlaneHarness;
  const debugStatus = async (token?: string) =>
    (await fetch(`${h.httpUrl}/debug/streams`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } })).status;
  const reloads = async (result: 'ok' | 'invalid') => {
    const text = await (await fetch(`${h.httpUrl}/metrics`)).text();
    const series = `trellis_control_plane_admin_token_reloads_total{result="${result}"}`;
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cp-admin-token-'));
    await updateSecretVolume(dir, { 'admin-token': `${OLD_TOKEN}\n` });
    h = await startControlPlaneHarness({ TRELLIS_ADMIN_TOKEN_FILE: join(dir, 'admin-token') }, undefined, etcd);
  });
  afterAll(async () => {
    await h?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('on SIGHUP (reloadFiles) refuses the old token and accepts the new one; an emptied or short file keeps the new one', async () => {
    // A token configured: /debug needs it even from loopback.
    expect(await debugStatus()).toBe(401);
    expect(await debugStatus(OLD_TOKEN)).toBe(200);
    expect(await reloads('invalid')).toBe(0);

    await updateSecretVolume(dir, { 'admin-token': `${NEW_TOKEN}\n` });
    await h.cp.reloadFiles();
    expect(await debugStatus(OLD_TOKEN)).toBe(401);
    expect(await debugStatus(NEW_TOKEN)).toBe(200);
    expect(await reloads('ok')).toBe(1);

    // Emptied by mistake: not an empty token, not loopback-only, not the old one back.
    await updateSecretVolume(dir, { 'admin-token': '\n' });
    await h.cp.reloadFiles();
    expect((await fetch(`${h.httpUrl}/debug/streams`, { headers: { authorization: 'Bearer ' } })).status).toBe(401);
    expect(await debugStatus()).toBe(401);
    expect(await debugStatus(OLD_TOKEN)).toBe(401);
    expect(await debugStatus(NEW_TOKEN)).toBe(200);

    // Too short, with the old token on a second line: refused whole.
    await updateSecretVolume(dir, { 'admin-token': `short\n${OLD_TOKEN}\n` });
    await h.cp.reloadFiles();
    expect(await debugStatus(OLD_TOKEN)).toBe(401);
    expect(await debugStatus(NEW_TOKEN)).toBe(200);
    expect(await reloads('invalid')).toBe(2);

    // A bootstrap takes the admin token in force too.
    const bootstrap = await fetch(`${h.httpUrl}/bootstrap/a?app_port=18081`, { headers: { authorization: `Bearer ${NEW_TOKEN}` } });
    expect(bootstrap.status).not.toBe(401);
  });
});

describe('TRELLIS_ADMIN_TOKEN_FILE at start', () => {
  it('refuses to start on a missing or broken file, naming the variable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cp-admin-token-'));
    try {
      await expect(startControlPlaneHarness({ TRELLIS_ADMIN_TOKEN_FILE: join(dir, 'absent') }, undefined, etcd)).rejects.toThrow(
        /TRELLIS_ADMIN_TOKEN_FILE: .*ENOENT/,
      );
      await updateSecretVolume(dir, { 'admin-token': 'short\n' });
      await expect(startControlPlaneHarness({ TRELLIS_ADMIN_TOKEN_FILE: join(dir, 'admin-token') }, undefined, etcd)).rejects.toThrow(
        /TRELLIS_ADMIN_TOKEN_FILE: the secret must be at least 16 characters/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

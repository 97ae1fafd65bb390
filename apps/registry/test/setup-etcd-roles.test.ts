// `registry main.js setup-etcd-roles` as the Helm hook Job runs it on every install and
// upgrade: the same environment (no TRELLIS_ETCD_USERNAME) against an etcd whose auth
// is off (the first run) and then on (every later run), against a real etcd.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectEtcd, etcdRoleName, KeyLayout, MeshStore } from '@trellis/mesh-schema';
import { startEtcd, type TestEtcd } from '@trellis/testing';
import { setupEtcdRoles } from '../src/setup-etcd-roles';

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startEtcd({ exclusive: true });
}, 60_000);
afterAll(async () => {
  await etcd?.close();
});

it('enables auth on the first run and, run again the same way, applies the roles as root', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'etcd-roles-'));
  const file = async (name: string, value: string) => {
    await writeFile(join(dir, name), `${value}\n`);
    return join(dir, name);
  };
  const env = {
    TRELLIS_ETCD_ENDPOINTS: etcd.endpoints.join(','),
    TRELLIS_ETCD_PREFIX: etcd.prefix,
    TRELLIS_ETCD_ROOT_PASSWORD_FILE: await file('root', 'root-etcd-secret-01'),
    TRELLIS_ETCD_REGISTRY_PASSWORD_FILE: await file('registry', 'registry-etcd-secret-01'),
    TRELLIS_ETCD_CONTROL_PLANE_PASSWORD_FILE: await file('control-plane', 'control-plane-etcd-secret-01'),
    TRELLIS_ETCD_AUTHZ_PASSWORD_FILE: await file('authz', 'authz-etcd-secret-02'),
  };
  await setupEtcdRoles(env);
  // The upgrade: auth is on now, and a password changed.
  env.TRELLIS_ETCD_AUTHZ_PASSWORD_FILE = await file('authz', 'authz-etcd-secret-03');
  await setupEtcdRoles(env);

  const layout = new KeyLayout(etcd.prefix);
  const anonymous = connectEtcd({ endpoints: etcd.endpoints });
  const registry = connectEtcd({
    endpoints: etcd.endpoints,
    auth: { username: etcdRoleName('registry'), password: 'registry-etcd-secret-01' },
  });
  const authz = connectEtcd({ endpoints: etcd.endpoints, auth: { username: etcdRoleName('authz'), password: 'authz-etcd-secret-03' } });
  try {
    await expect(anonymous.get(layout.service('x'))).rejects.toThrow(/user name is empty|permission denied|invalid auth token/i);
    await new MeshStore(registry, layout).createService({ name: 'web', team: 'core', protocol: 'http', port: 8080 }, 'test');
    expect(await new MeshStore(authz, layout).listServices()).toHaveLength(1);
  } finally {
    for (const client of [anonymous, registry, authz]) client.close();
  }
}, 60_000);

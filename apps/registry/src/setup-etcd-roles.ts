// `registry setup-etcd-roles`: gives each app its own etcd user and role
// (libs/mesh-schema etcd-roles.ts) and enables etcd auth. Run once per cluster
// and again after upgrades: by the local mesh, the Helm hook Job, or by hand on
// a VM. Connects with the usual TRELLIS_ETCD_* variables. Without
// TRELLIS_ETCD_USERNAME it connects as root with the root password, and, when etcd
// answers that auth is not enabled yet (the first run), without auth: so the same
// command (the Helm hook Job on every install and upgrade) works before and after.
import { readFileSync } from 'node:fs';
import { applyEtcdRoles, connectEtcd, etcdOptionsFromEnv, KeyLayout, type EtcdApp } from '@trellis/mesh-schema';
import { etcdEnvSchema, loadConfig } from '@trellis/runtime';
import { z } from 'zod';

const file = z.string().min(1);
export const setupEtcdRolesEnvSchema = etcdEnvSchema.extend({
  TRELLIS_ETCD_ROOT_PASSWORD_FILE: file,
  TRELLIS_ETCD_REGISTRY_PASSWORD_FILE: file,
  TRELLIS_ETCD_CONTROL_PLANE_PASSWORD_FILE: file,
  TRELLIS_ETCD_AUTHZ_PASSWORD_FILE: file,
});

export async function setupEtcdRoles(source: NodeJS.ProcessEnv = process.env): Promise<void> {
  const config = loadConfig(setupEtcdRolesEnvSchema, source);
  const read = (path: string) => readFileSync(path, 'utf8').trim();
  const passwords: Record<EtcdApp, string> = {
    registry: read(config.TRELLIS_ETCD_REGISTRY_PASSWORD_FILE),
    'control-plane': read(config.TRELLIS_ETCD_CONTROL_PLANE_PASSWORD_FILE),
    authz: read(config.TRELLIS_ETCD_AUTHZ_PASSWORD_FILE),
  };
  const rootPassword = read(config.TRELLIS_ETCD_ROOT_PASSWORD_FILE);
  const base = etcdOptionsFromEnv(config);
  const setup = { rootPassword, passwords };
  const layout = new KeyLayout(config.TRELLIS_ETCD_PREFIX);
  const apply = async (options: typeof base) => {
    const client = connectEtcd(options);
    try {
      await applyEtcdRoles(client, layout, setup);
    } finally {
      client.close();
    }
  };
  if (base.auth) {
    await apply(base);
  } else {
    try {
      await apply({ ...base, auth: { username: 'root', password: rootPassword } });
    } catch (err) {
      if (!/authentication is not enabled/i.test((err as Error).message)) throw err;
      await apply(base); // the first run: auth is still off
    }
  }
  process.stdout.write('etcd: users trellis-registry, trellis-control-plane, trellis-authz and their roles are set; auth is enabled\n');
}

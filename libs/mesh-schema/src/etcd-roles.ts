// Least privilege in etcd: each app has its own etcd user and role with the
// least it needs, so holding one app's credentials does not let anyone publish
// a verification key (authz/keys/) or rewrite the topology (services/).
// One definition, applied by `registry setup-etcd-roles` (local mesh, Helm hook
// Job, VMs) and checked by tests against etcd with auth enabled.
import { Range, type Etcd3 } from 'etcd3';
import { prefixEnd } from './etcd-client';
import type { KeyLayout } from './keys';

export type EtcdApp = 'registry' | 'control-plane' | 'authz';
export const ETCD_APPS: readonly EtcdApp[] = ['registry', 'control-plane', 'authz'];

export interface EtcdGrant {
  /** A key prefix under the Trellis prefix. */
  prefix: string;
  permission: 'Read' | 'Readwrite';
}

/** The etcd role (and user) name of an app. */
export const etcdRoleName = (app: EtcdApp): string => `trellis-${app}`;

/** What each app may do, as key-prefix grants. Readers of the whole prefix hold a MeshWatcher (one watch over all of it but the status records). */
export function etcdGrants(layout: KeyLayout): Record<EtcdApp, EtcdGrant[]> {
  const all = layout.prefix;
  return {
    // Writes services, their history, instances and ingress host claims; reads the mesh
    // (its view watches the whole prefix) and proxy status for its UI.
    registry: [
      { prefix: all, permission: 'Read' },
      { prefix: layout.services(), permission: 'Readwrite' },
      { prefix: `${all}history/`, permission: 'Readwrite' },
      { prefix: layout.instances(), permission: 'Readwrite' },
      { prefix: layout.deregistrations(), permission: 'Readwrite' },
      { prefix: layout.hostClaims(), permission: 'Readwrite' },
    ],
    // Reads everything (the mesh model); writes only proxy status. The legacy range is for replicas of a version
    // before the status range still running in a rolling upgrade (their records go with their leases).
    'control-plane': [
      { prefix: all, permission: 'Read' },
      { prefix: layout.proxyStatuses(), permission: 'Readwrite' },
      { prefix: layout.legacyProxyStatuses(), permission: 'Readwrite' },
    ],
    // Reads the mesh (its watcher watches the whole prefix); writes its keys and the mesh settings.
    authz: [
      { prefix: all, permission: 'Read' },
      { prefix: layout.authzKeys(), permission: 'Readwrite' },
      { prefix: `${all}mesh/`, permission: 'Readwrite' },
    ],
  };
}

export interface EtcdRolesSetup {
  /** The password of etcd's root user (created when absent; auth needs it). */
  rootPassword: string;
  /** Each app's password; an app left out gets its role but no user change. */
  passwords: Partial<Record<EtcdApp, string>>;
}

/**
 * Creates or updates the root user, each app's role (its grants replaced by
 * etcdGrants) and user, then enables auth. Idempotent: run it again after an
 * upgrade. `client` must be able to administer etcd: unauthenticated while auth
 * is off, or root once it is on.
 */
export async function applyEtcdRoles(client: Etcd3, layout: KeyLayout, setup: EtcdRolesSetup): Promise<void> {
  await ensureUser(client, 'root', setup.rootPassword);
  await client.user('root').addRole('root');
  const grants = etcdGrants(layout);
  for (const app of ETCD_APPS) {
    const name = etcdRoleName(app);
    const role = client.role(name);
    await ignoreExists(() => role.create());
    const current = await role.permissions();
    // One by one: etcd3's revoke of an array grants each permission again instead.
    for (const { permission, range } of current) await role.revoke({ permission, range });
    await role.grant(grants[app].map(({ prefix, permission }) => ({ permission, range: new Range(prefix, prefixEnd(prefix)) })));
    const password = setup.passwords[app];
    if (password !== undefined) {
      await ensureUser(client, name, password);
      await client.user(name).addRole(name);
    }
  }
  await client.auth.authEnable();
}

async function ensureUser(client: Etcd3, name: string, password: string): Promise<void> {
  const created = await ignoreExists(() => client.user(name).create(password));
  if (!created) await client.user(name).setPassword(password);
}

/** Runs a create; false when etcd says it already exists. */
async function ignoreExists(create: () => Promise<unknown>): Promise<boolean> {
  try {
    await create();
    return true;
  } catch (err) {
    if (/already exists/i.test((err as Error).message)) return false;
    throw err;
  }
}

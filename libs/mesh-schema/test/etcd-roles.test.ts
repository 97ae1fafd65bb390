// Least privilege in etcd, against a real etcd with auth enabled: each app's
// credentials can do what it needs and nothing that would let it forge tokens
// or rewrite the topology.
import { generateKeyPairSync } from 'node:crypto';
import { Range, type Etcd3 } from 'etcd3';
import { startEtcd, type TestEtcd } from '@trellis/testing';
import { applyEtcdRoles, connectEtcd, etcdRoleName, KeyLayout, MeshStore, MeshWatcher, prefixEnd, type EtcdApp } from '../src';

const PASSWORDS: Record<EtcdApp, string> = {
  registry: 'registry-etcd-secret-01',
  'control-plane': 'control-plane-etcd-secret-01',
  authz: 'authz-etcd-secret-01',
};

const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
const at = new Date().toISOString();
const attackerKey = {
  kid: 'attacker',
  jwk: { kty: 'RSA' as const, kid: 'attacker', alg: 'RS256' as const, use: 'sig' as const, n: jwk.n!, e: jwk.e! },
  publishedAt: at,
  activeFrom: at,
};
const service = (name: string) => ({ name, team: 'core', protocol: 'http' as const, port: 8080 });
const permissionDenied = /permission denied/i;

describe('etcd roles (auth enabled)', () => {
  let etcd: TestEtcd;
  let layout: KeyLayout;
  const clients: Etcd3[] = [];
  const as = (app: EtcdApp | 'root', password = app === 'root' ? 'root-etcd-secret-01' : PASSWORDS[app]) => {
    const client = connectEtcd({ endpoints: etcd.endpoints, auth: { username: app === 'root' ? 'root' : etcdRoleName(app), password } });
    clients.push(client);
    return { client, store: new MeshStore(client, layout) };
  };

  beforeAll(async () => {
    etcd = await startEtcd({ exclusive: true });
    layout = new KeyLayout(etcd.prefix);
    const admin = connectEtcd({ endpoints: etcd.endpoints });
    clients.push(admin);
    await applyEtcdRoles(admin, layout, { rootPassword: 'root-etcd-secret-01', passwords: PASSWORDS });
    // Idempotent: a second run (an upgrade) as root changes nothing that matters.
    await applyEtcdRoles(as('root').client, layout, { rootPassword: 'root-etcd-secret-01', passwords: PASSWORDS });
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.close();
    await etcd?.close();
  });

  it('refuses anonymous clients once auth is on', async () => {
    const anonymous = connectEtcd({ endpoints: etcd.endpoints });
    clients.push(anonymous);
    await expect(new MeshStore(anonymous, layout).listServices()).rejects.toThrow(/user name is empty|permission denied|authentication/i);
  });

  it('registry: writes services, history, instances and host claims; watches the mesh; cannot publish a key or write proxy status', async () => {
    const { client, store } = as('registry');
    await store.createService({ ...service('web'), ingress: { host: 'web.example.com' } }, 'test');
    await store.registerInstance({ service: 'web', id: 'web-1', address: '10.0.0.1', port: 8080, platform: 'vm' }, 30);
    expect((await store.listServices()).map((s) => s.value.spec.name)).toEqual(['web']);
    await expect(store.putAuthzKey(attackerKey)).rejects.toThrow(permissionDenied);
    await expect(store.ensureMeshSettings({ tokenIssuer: 'evil', clockSkewSeconds: 30 })).rejects.toThrow(permissionDenied);
    const watcher = MeshWatcher.start(client, layout);
    try {
      await watcher.whenReady();
      expect([...watcher.state.services.keys()]).toEqual(['web']);
    } finally {
      await watcher.close();
    }
  });

  it('control plane: reads everything and writes proxy status; cannot write a service or a key', async () => {
    const { client, store } = as('control-plane');
    const lease = await client.leaseClient.leaseGrant({ TTL: 30 });
    await store.putProxyStatus(
      { service: 'web', nodeId: 'web-1', controlPlane: 'cp', stream: 'cp/1', connectedAt: at, updatedAt: at, types: {} },
      lease.ID,
    );
    // Where a replica of the version before the status range writes, during a rolling upgrade.
    await client
      .put(`${layout.legacyProxyStatusesOf('web')}web-0/cp-old%2F1`)
      .value('{}')
      .lease(lease.ID)
      .exec();
    await expect(store.createService(service('evil'), 'cp')).rejects.toThrow(permissionDenied);
    await expect(store.putAuthzKey(attackerKey)).rejects.toThrow(permissionDenied);
    await expect(client.put(`${layout.statusRecords()}other/x`).value('{}').exec()).rejects.toThrow(permissionDenied);
    const watcher = MeshWatcher.start(client, layout);
    try {
      await watcher.whenReady();
      expect([...watcher.state.services.keys()]).toEqual(['web']);
    } finally {
      await watcher.close();
    }
  });

  it('authz: reads the mesh, publishes its keys and settings; cannot write a service or an instance', async () => {
    const { client, store } = as('authz');
    await store.putAuthzKey(attackerKey);
    await store.ensureMeshSettings({ tokenIssuer: 'trellis', clockSkewSeconds: 30 });
    await expect(store.createService(service('evil'), 'authz')).rejects.toThrow(permissionDenied);
    await expect(
      store.registerInstance({ service: 'web', id: 'evil-1', address: '10.6.6.6', port: 8080, platform: 'vm' }, 30),
    ).rejects.toThrow(permissionDenied);
    const watcher = MeshWatcher.start(client, layout);
    try {
      await watcher.whenReady();
      expect([...watcher.state.authzKeys.keys()]).toEqual(['attacker']);
    } finally {
      await watcher.close();
    }
  });

  it('run again, takes back a permission the role held beyond its grants (an older, wider role, or one granted by hand)', async () => {
    const root = as('root').client;
    const wider = [layout.services(), `${layout.prefix}history/`].map((p) => ({
      permission: 'Readwrite' as const,
      range: new Range(p, prefixEnd(p)),
    }));
    for (const grant of wider) await root.role(etcdRoleName('control-plane')).grant(grant);
    await as('control-plane').store.createService(service('widened'), 'cp');

    await applyEtcdRoles(root, layout, { rootPassword: 'root-etcd-secret-01', passwords: PASSWORDS });
    await expect(as('control-plane').store.createService(service('narrowed'), 'cp')).rejects.toThrow(permissionDenied);
  });
});

// etcd with auth, restarted: its simple auth tokens live in its memory, so every
// token the apps hold dies with it. etcd3 fetches a new one for unary calls, but a
// watch stream keeps the token it was opened with and every watch created on it
// is cancelled ("invalid auth token"). The mesh mirror must come back live on its
// own, and a replica's lease must stay alive.
import type { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import { startEtcd, type TestEtcd } from '@trellis/testing';
import { applyEtcdRoles, connectEtcd, etcdRoleName, keptAliveLease, KeyLayout, MeshStore, MeshWatcher, type EtcdApp } from '../src';
import { aService } from './fixtures';

const ROOT_PASSWORD = 'root-etcd-secret-02';
const PASSWORDS: Record<EtcdApp, string> = {
  registry: 'registry-etcd-secret-02',
  'control-plane': 'control-plane-etcd-secret-02',
  authz: 'authz-etcd-secret-02',
};

let etcd: TestEtcd;
let layout: KeyLayout;
const clients: Etcd3[] = [];
const as = (user: EtcdApp | 'root'): Etcd3 => {
  const client = connectEtcd({
    endpoints: etcd.endpoints,
    auth: user === 'root' ? { username: 'root', password: ROOT_PASSWORD } : { username: etcdRoleName(user), password: PASSWORDS[user] },
  });
  clients.push(client);
  return client;
};

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // etcd still coming back: try again
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  etcd = await startEtcd({ exclusive: true });
  layout = new KeyLayout(etcd.prefix);
  const admin = connectEtcd({ endpoints: etcd.endpoints });
  try {
    await applyEtcdRoles(admin, layout, { rootPassword: ROOT_PASSWORD, passwords: PASSWORDS });
  } finally {
    admin.close();
  }
}, 60_000);

afterAll(async () => {
  for (const client of clients) client.close();
  await etcd?.close();
});

it('after etcd restarts, the mirror sees later writes and a kept-alive lease stays alive', async () => {
  if (!etcd.canRestart) {
    console.warn('skipped: this etcd cannot be restarted (a container)');
    return;
  }
  const registry = new MeshStore(as('registry'), layout);
  await registry.createService(aService('before'), 'test');

  // The control plane's view of the mesh and its replica lease (proxy status lives under it).
  const controlPlane = as('control-plane');
  const watcher = MeshWatcher.start(controlPlane, layout);
  const lease = keptAliveLease(controlPlane, 3);
  const lost: Error[] = [];
  lease.on('lost', (err) => lost.push(err));
  let renewals = 0;
  (lease as unknown as EventEmitter).on('keepaliveSucceeded', () => (renewals += 1));
  const leaseId = await lease.grant();
  const leasedKey = layout.proxyStatuses() + 'restart-test';
  await controlPlane.kv.put({ key: Buffer.from(leasedKey), value: Buffer.from('{}'), lease: leaseId });
  try {
    await watcher.whenReady();
    expect([...watcher.state.services.keys()]).toEqual(['before']);

    await etcd.restart();
    const renewalsBeforeRestart = renewals;

    // A write after the restart (the registry's own client re-authenticates: a unary call).
    await eventually('the registry to write after the restart', async () => {
      if (!(await registry.getService('after'))) await registry.createService(aService('after'), 'test');
      return true;
    });
    await eventually('the mirror to see the write made after the restart', () => watcher.state.services.has('after'));
    await eventually('the mirror to be live again', () => watcher.live);

    // Renewed by etcd after its restart, several times, so over more than one TTL.
    await eventually('lease renewals after the restart', () => renewals >= renewalsBeforeRestart + 6);
    const root = as('root');
    const leased = await root.kv.range({ key: Buffer.from(leasedKey) });
    expect(leased.kvs.map((kv) => kv.key.toString())).toEqual([leasedKey]);
    expect(lost).toEqual([]);

    // And the watch keeps flowing: another write arrives too.
    await registry.createService(aService('later'), 'test');
    await eventually('the mirror to see a second write', () => watcher.state.services.has('later'));
  } finally {
    await lease.revoke().catch(() => undefined);
    await watcher.close();
  }
}, 180_000);

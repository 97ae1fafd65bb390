// etcd with auth, restarted. A client logs in and sends a token; etcd reads a
// stream's token once, when the stream opens, and refuses every watch created
// on a stream whose token it no longer accepts. Simple tokens (etcd's default)
// live in etcd's memory and die with it; JWT tokens survive a restart but expire.
// etcd3 logs in again for unary calls only, so the mesh mirror must come back
// live on its own, and a replica's lease must stay alive.
import { generateKeyPairSync } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { eventually, startEtcd, type TestEtcd } from '@trellis/testing';
import { applyEtcdRoles, connectEtcd, etcdRoleName, keptAliveLease, KeyLayout, MeshStore, MeshWatcher, type EtcdApp } from '../src';
import { aService } from './fixtures';

const ROOT_PASSWORD = 'root-etcd-secret-02';
const PASSWORDS: Record<EtcdApp, string> = {
  registry: 'registry-etcd-secret-02',
  'control-plane': 'control-plane-etcd-secret-02',
  authz: 'authz-etcd-secret-02',
};
const JWT_TTL_SECONDS = 2;

/** Waits across the restart: a call that fails while etcd comes back means "not yet". */
const etcdComingBack = { retryErrors: true, intervalMs: 100 };
const keyDir = mkdtempSync(join(tmpdir(), 'etcd-jwt-'));
afterAll(() => rmSync(keyDir, { recursive: true, force: true }));

/** The flags deploy/README.md recommends, with a short ttl so a token expires during the test. */
function jwtTokenArgs(): string[] {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pub = join(keyDir, 'jwt.pub');
  const priv = join(keyDir, 'jwt.key');
  writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return [`--auth-token=jwt,pub-key=${pub},priv-key=${priv},sign-method=RS256,ttl=${JWT_TTL_SECONDS}s`];
}

describe.each([
  { tokens: 'simple tokens (they die with etcd)', args: (): string[] => [], beforeRestart: async () => undefined },
  {
    tokens: 'JWT tokens, expired by the time the streams reopen',
    args: jwtTokenArgs,
    // No unary call renews the control plane's token meanwhile: its streams reopen with an expired one.
    beforeRestart: () => new Promise<void>((r) => setTimeout(r, (JWT_TTL_SECONDS + 1) * 1_000)),
  },
])('etcd with auth and $tokens', ({ args, beforeRestart }) => {
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

  beforeAll(async () => {
    etcd = await startEtcd({ extraArgs: args() });
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

  it('after etcd restarts, the mirror sees later writes and goes live again; a kept-alive lease stays alive', async () => {
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

      await beforeRestart();
      await etcd.restart();
      const renewalsBeforeRestart = renewals;

      // A write after the restart (the registry's own client logs in again: a unary call).
      await eventually(
        'the registry to write after the restart',
        async () => {
          if (!(await registry.getService('after'))) await registry.createService(aService('after'), 'test');
          return true;
        },
        60_000,
        etcdComingBack,
      );
      await eventually(
        'the mirror to see the write made after the restart',
        () => watcher.state.services.has('after'),
        60_000,
        etcdComingBack,
      );
      await eventually('the mirror to be live again', () => watcher.live, 60_000, etcdComingBack);

      // Renewed by etcd after its restart, several times, so over more than one TTL.
      await eventually('lease renewals after the restart', () => renewals >= renewalsBeforeRestart + 6, 60_000, etcdComingBack);
      const leased = await as('root').kv.range({ key: Buffer.from(leasedKey) });
      expect(leased.kvs.map((kv) => kv.key.toString())).toEqual([leasedKey]);
      expect(lost).toEqual([]);

      // And the watch keeps flowing: another write arrives too.
      await registry.createService(aService('later'), 'test');
      await eventually('the mirror to see a second write', () => watcher.state.services.has('later'), 60_000, etcdComingBack);
    } finally {
      await lease.revoke().catch(() => undefined);
      await watcher.close();
    }
  }, 180_000);
});

import { generateKeyPairSync } from 'node:crypto';
// MeshStore against a real etcd (see @trellis/testing for how it is chosen).
import type { Etcd3 } from 'etcd3';
import { startEtcd, type TestEtcd } from '@trellis/testing';
import { AlreadyExistsError, HasDependentsError, InvalidRecordError, NotFoundError, RevisionMismatchError } from '../src/errors';
import { KeyLayout } from '../src/keys';
import { MeshStore } from '../src/store';
import { aService, anInstance } from './fixtures';

/** The modulus of a real RSA-2048 key: AuthzPublicKey refuses anything weaker. */
const TEST_RSA_N = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }).n!;

let etcd: TestEtcd;
let client: Etcd3;
let layout: KeyLayout;
let store: MeshStore;
const warnings: unknown[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  client = etcd.client();
  layout = new KeyLayout(etcd.prefix);
  store = new MeshStore(client, layout, { logger: { warn: (obj: unknown) => warnings.push(obj) } as never });
});
afterAll(async () => {
  await etcd?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The same etcd client, with every KV call it makes (range, put, txn, deleteRange) recorded in `calls`. */
function countingKv(real: Etcd3, calls: string[]): Etcd3 {
  const kv = new Proxy(real.kv, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.push(String(property));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return new Proxy(real, { get: (target, property, receiver) => (property === 'kv' ? kv : Reflect.get(target, property, receiver)) });
}

describe('services', () => {
  it('creates generation 1 with a create history entry, and refuses a second create', async () => {
    const created = await store.createService(aService('checkout'), 'team-a');
    expect(created.value.generation).toBe(1);
    expect(created.value.spec).toMatchObject({ name: 'checkout', dependencies: [], policy: {}, description: '' });
    expect(created.modRevision).toBe(created.createRevision);

    await expect(store.createService(aService('checkout'), 'team-b')).rejects.toBeInstanceOf(AlreadyExistsError);
    const history = await store.listHistory('checkout');
    expect(history.map((h) => [h.generation, h.action, h.actor])).toEqual([[1, 'create', 'team-a']]);
    expect(await store.getService('checkout')).toEqual(created);
  });

  it('lists history with the etcd revision of each change', async () => {
    const created = await store.createService(aService('billing'), 'team-a');
    const updated = await store.updateService(aService('billing', { port: 9100 }), 'alice');
    await store.deleteService('billing', 'bob');
    const history = await store.listHistoryVersioned('billing');
    expect(history.map((h) => [h.value.generation, h.value.action])).toEqual([
      [1, 'create'],
      [2, 'update'],
      [3, 'delete'],
    ]);
    // Written in the service change's own txn: the same revision as the service record.
    expect(history[0]!.modRevision).toBe(created.modRevision);
    expect(history[1]!.modRevision).toBe(updated.modRevision);
    expect(BigInt(history[2]!.modRevision)).toBeGreaterThan(BigInt(updated.modRevision));
    expect(await store.listHistory('billing')).toEqual(history.map((h) => h.value));
  });

  it('lets exactly one of two concurrent updates with the same ETag win', async () => {
    const created = await store.createService(aService('cart'), 'team-a');
    const results = await Promise.allSettled([
      store.updateService(aService('cart', { port: 9001 }), 'alice', { ifModRevision: created.modRevision }),
      store.updateService(aService('cart', { port: 9002 }), 'bob', { ifModRevision: created.modRevision }),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toBeInstanceOf(RevisionMismatchError);
    const current = await store.getService('cart');
    expect((lost[0]!.reason as RevisionMismatchError).actualModRevision).toBe(current!.modRevision);
    expect(current!.value.generation).toBe(2);
    expect(await store.listHistory('cart')).toHaveLength(2);
  });

  it('builds an update from a record the caller holds, and still refuses it once that record is stale', async () => {
    const created = await store.createService(aService('journal'), 'team-a');
    const v2 = await store.updateService(aService('journal', { port: 9001 }), 'alice', {
      ifModRevision: created.modRevision,
      known: created,
    });
    expect(v2.value.generation).toBe(2);
    expect(v2.value.created).toEqual(created.value.created);
    // Someone else's write moved the record on; an update built from the old copy must lose.
    const v3 = await store.updateService(aService('journal', { port: 9002 }), 'bob', { ifModRevision: v2.modRevision });
    await expect(
      store.updateService(aService('journal', { port: 9666 }), 'mallory', { ifModRevision: v2.modRevision, known: v2 }),
    ).rejects.toMatchObject({ actualModRevision: v3.modRevision });
    // A held copy of another version than the one named is not used: the store reads.
    const v4 = await store.updateService(aService('journal', { port: 9003 }), 'carol', { ifModRevision: v3.modRevision, known: v2 });
    expect(v4.value.generation).toBe(4);
    expect((await store.getService('journal'))!.value.spec.port).toBe(9003);
    expect((await store.listHistory('journal')).map((h) => h.actor)).toEqual(['team-a', 'alice', 'bob', 'carol']);
  });

  it('retries an unconditional update that races another writer instead of failing', async () => {
    await store.createService(aService('search'), 'team-a');
    const updates = await Promise.all([1, 2, 3, 4].map((i) => store.updateService(aService('search', { port: 9000 + i }), `writer-${i}`)));
    expect(updates.map((u) => u.value.generation).sort()).toEqual([2, 3, 4, 5]);
    const history = await store.listHistory('search');
    expect(history.map((h) => h.generation)).toEqual([1, 2, 3, 4, 5]);
  });

  it('creates a never-used name in one etcd round trip, and a deleted one in two, continuing its generations', async () => {
    const calls: string[] = [];
    const counted = countingKv(client, calls);
    const counting = new MeshStore(counted, layout);
    const created = await counting.createService(aService('tally'), 'team-a');
    expect(created.value.generation).toBe(1);
    expect(calls).toEqual(['txn']);

    await store.deleteService('tally', 'team-a');
    calls.length = 0;
    const again = await counting.createService(aService('tally', { port: 9100 }), 'team-b');
    // The first txn fails on the history left by the deleted service and returns its last key.
    expect(calls).toEqual(['txn', 'txn']);
    expect(again.value.generation).toBe(3);
    expect((await store.listHistory('tally')).map((h) => [h.generation, h.action])).toEqual([
      [1, 'create'],
      [2, 'delete'],
      [3, 'create'],
    ]);
    calls.length = 0;
    await expect(counting.createService(aService('tally'), 'team-c')).rejects.toBeInstanceOf(AlreadyExistsError);
    expect(calls).toEqual(['txn']);
  });

  it('lets exactly one of several concurrent creates of a new name win', async () => {
    const results = await Promise.allSettled(
      [1, 2, 3, 4].map((i) => store.createService(aService('racer', { port: 9000 + i }), `writer-${i}`)),
    );
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected').every((r) => r.reason instanceof AlreadyExistsError)).toBe(true);
    expect((await store.listHistory('racer')).map((h) => h.generation)).toEqual([1]);
  });

  it('keeps history through update, rollback, delete and re-create', async () => {
    await store.createService(aService('orders', { port: 1000 }), 'a');
    const v2 = await store.updateService(aService('orders', { port: 2000 }), 'b');
    const first = await store.getHistory('orders', 1);
    const v3 = await store.updateService(first!.spec!, 'c', { ifModRevision: v2.modRevision, action: 'rollback', restoredGeneration: 1 });
    expect(v3.value.spec.port).toBe(1000);
    expect(v3.value.created.actor).toBe('a');
    expect(v3.value.updated.actor).toBe('c');

    await expect(store.deleteService('orders', 'd', { ifModRevision: v2.modRevision })).rejects.toBeInstanceOf(RevisionMismatchError);
    await store.deleteService('orders', 'd', { ifModRevision: v3.modRevision });
    expect(await store.getService('orders')).toBeUndefined();
    await expect(store.deleteService('orders', 'd')).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.updateService(aService('orders'), 'd')).rejects.toBeInstanceOf(NotFoundError);

    const again = await store.createService(aService('orders', { port: 3000 }), 'e');
    expect(again.value.generation).toBe(5);
    const history = await store.listHistory('orders');
    expect(history.map((h) => [h.generation, h.action, h.spec?.port ?? null, h.restoredGeneration])).toEqual([
      [1, 'create', 1000, undefined],
      [2, 'update', 2000, undefined],
      [3, 'rollback', 1000, 1],
      [4, 'delete', null, undefined],
      [5, 'create', 3000, undefined],
    ]);
  });

  it('records since which generation each dependency has been declared without a break', async () => {
    const deps = (...names: string[]) => names.map((service) => ({ service }));
    await store.createService({ ...aService('caller'), dependencies: deps('ledger', 'search') }, 't');
    expect((await store.getService('caller'))!.value.dependencySince).toEqual({ ledger: 1, search: 1 });
    await store.updateService({ ...aService('caller'), dependencies: deps('ledger') }, 't'); // generation 2 drops search
    await store.updateService({ ...aService('caller'), dependencies: deps('ledger', 'search'), port: 9999 }, 't'); // 3 declares it again
    const record = (await store.getService('caller'))!.value;
    expect(record.generation).toBe(3);
    // ledger was never dropped; search came back at generation 3.
    expect(record.dependencySince).toEqual({ ledger: 1, search: 3 });
  });

  it('refuses to delete a service others still depend on, naming them, in the same txn as the check', async () => {
    await store.createService(aService('inventory'), 't');
    await store.createService({ ...aService('shop'), dependencies: [{ service: 'inventory' }] }, 't');
    await store.createService({ ...aService('admin-ui'), dependencies: [{ service: 'inventory' }] }, 't');
    const refused = await store.deleteService('inventory', 't', { refuseIfDepended: true }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(HasDependentsError);
    expect((refused as HasDependentsError).dependents).toEqual(['admin-ui', 'shop']);
    expect(await store.getService('inventory')).toBeDefined();

    await store.deleteService('shop', 't');
    await store.deleteService('admin-ui', 't');
    await store.deleteService('inventory', 't', { refuseIfDepended: true });
    expect(await store.getService('inventory')).toBeUndefined();
  });

  it('refuses invalid specs without writing, naming the field', async () => {
    const bad = store.createService(aService('loop', { dependencies: [{ service: 'loop' }] }), 'a');
    await expect(bad).rejects.toBeInstanceOf(InvalidRecordError);
    await expect(bad).rejects.toThrow(/dependencies\.0\.service: a service cannot depend on itself/);
    expect(await store.getService('loop')).toBeUndefined();
    await expect(store.createService(aService('a/b'), 'a')).rejects.toThrow(/invalid record at service "a\/b": name: must be a DNS label/);
    await expect(store.registerInstance(anInstance('ship', '../x'), 5)).rejects.toBeInstanceOf(InvalidRecordError);
  });

  it('names the key of a corrupt stored record, and list calls skip it with a warning', async () => {
    await client.put(layout.service('corrupt')).value('{"spec": 42}');
    await expect(store.getService('corrupt')).rejects.toThrow(layout.service('corrupt'));
    const names = (await store.listServices()).map((s) => s.value.spec.name);
    expect(names).not.toContain('corrupt');
    expect(names).toEqual(expect.arrayContaining(['checkout', 'cart']));
    expect(warnings).toContainEqual(expect.objectContaining({ key: layout.service('corrupt') }));
    await client.delete().key(layout.service('corrupt'));
  });

  it('can repair or delete a record that no longer parses, continuing its generations', async () => {
    await store.createService(aService('mangled'), 'a');
    await store.updateService(aService('mangled', { port: 81 }), 'a');
    await client.put(layout.service('mangled')).value('{"broken":');
    const repaired = await store.updateService(aService('mangled', { port: 82 }), 'ops');
    expect(repaired.value).toMatchObject({ generation: 3, created: { actor: 'ops' }, spec: { port: 82 } });

    await client.put(layout.service('mangled')).value('not json');
    await store.deleteService('mangled', 'ops');
    expect(await store.getService('mangled')).toBeUndefined();
    expect((await store.listHistory('mangled')).map((h) => h.action)).toEqual(['create', 'update', 'update', 'delete']);
  });
});

describe('deleting a service', () => {
  const leaseTtl = async (lease: string) => Number((await client.leaseClient.leaseTimeToLive({ ID: lease, keys: false })).TTL);

  it('deletes its instances in the same txn and revokes their leases; a re-created service starts empty', async () => {
    await store.createService(aService('ledger'), 't');
    const { leaseId } = await store.registerInstance(anInstance('ledger', 'l-1'), 600);
    await store.registerInstance(anInstance('ledger', 'l-2'), 600);
    await store.registerInstance(anInstance('ledger-two', 'x-1'), 600); // a prefix-sharing neighbour survives
    await store.deleteService('ledger', 't');
    const deleted = (await store.listHistoryVersioned('ledger')).at(-1)!;
    expect(await store.listInstances('ledger')).toEqual([]);
    // The instances went at exactly the revision of the delete's history entry: one txn.
    const watchedAt = await client.kv.range({
      key: Buffer.from(layout.instance('ledger', 'l-1')),
      revision: String(BigInt(deleted.modRevision) - 1n),
    });
    expect(watchedAt.kvs).toHaveLength(1);
    const atDelete = await client.kv.range({ key: Buffer.from(layout.instance('ledger', 'l-1')), revision: deleted.modRevision });
    expect(atDelete.kvs).toHaveLength(0);
    expect(await leaseTtl(leaseId)).toBe(-1);
    expect(await store.heartbeatInstance('ledger', 'l-1')).toBe(false);
    await store.createService(aService('ledger'), 't');
    expect(await store.listInstances('ledger')).toEqual([]);
    expect((await store.listInstances('ledger-two')).map((i) => i.id)).toEqual(['x-1']);
  });

  it('refuses a registration that requires the service once it is gone', async () => {
    await expect(store.registerInstance(anInstance('never-there', 'n-1'), 30, { requireService: true })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    expect(await store.listInstances('never-there')).toEqual([]);
  });

  it('refuses a registration that requires a version of the service once it changed, naming the current one', async () => {
    const v1 = await store.createService(aService('versioned'), 't');
    const v2 = await store.updateService(aService('versioned', { port: 9200 }), 't');
    await expect(
      store.registerInstance(anInstance('versioned', 'v-1'), 30, { requireService: { modRevision: v1.modRevision } }),
    ).rejects.toMatchObject({ name: 'RevisionMismatchError', actualModRevision: v2.modRevision });
    expect(await store.listInstances('versioned')).toEqual([]);
    await store.registerInstance(anInstance('versioned', 'v-1'), 30, { requireService: { modRevision: v2.modRevision } });
    expect((await store.listInstances('versioned')).map((i) => i.id)).toEqual(['v-1']);
    await store.deleteService('versioned', 't');
    await expect(
      store.registerInstance(anInstance('versioned', 'v-2'), 30, { requireService: { modRevision: v2.modRevision } }),
    ).rejects.toBeInstanceOf(NotFoundError);
  });

  it("releases a first host claim with the host's last service, never an admin's assignment", async () => {
    const withHost = (name: string, host: string) => aService(name, { ingress: { host, pathPrefix: `/${name}` } });
    await store.createService(withHost('shop-a', 'shop.example.com'), 't');
    await store.createService(withHost('shop-b', 'shop.example.com'), 't');
    await store.deleteService('shop-a', 't');
    expect(await store.getHostClaim('shop.example.com')).toMatchObject({ team: 'payments' });
    await store.deleteService('shop-b', 't');
    expect(await store.getHostClaim('shop.example.com')).toBeUndefined();

    await store.assignHost('kept.example.com', 'payments', 'admin');
    await store.createService(withHost('kept', 'kept.example.com'), 't');
    await store.deleteService('kept', 't');
    expect(await store.getHostClaim('kept.example.com')).toMatchObject({ team: 'payments', assigned: true });
  });
});

describe('instances', () => {
  it('expires an instance whose heartbeats stop, and keeps one that heartbeats', async () => {
    // etcd rounds TTLs up to its minimum (1.5 election timeouts: about 2 s with default settings).
    const started = Date.now();
    await store.registerInstance(anInstance('pay', 'silent'), 1);
    await store.registerInstance(anInstance('pay', 'alive', { address: '10.0.0.2' }), 2);
    let ids: string[] = [];
    do {
      await sleep(250);
      expect(await store.heartbeatInstance('pay', 'alive')).toBe(true);
      ids = (await store.listInstances('pay')).map((i) => i.id);
    } while (ids.includes('silent') && Date.now() - started < 60_000);
    expect(ids).toEqual(['alive']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900); // not gone before its TTL
    expect(await store.heartbeatInstance('pay', 'silent')).toBe(false);
  });

  it('deregisters: deletes the key and revokes the lease', async () => {
    const { leaseId } = await store.registerInstance(anInstance('ship', 'vm-1'), 30);
    expect(await store.deregisterInstance('ship', 'vm-1')).toBe(true);
    expect(await store.listInstances('ship')).toEqual([]);
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: leaseId });
    expect(Number(ttl.TTL)).toBe(-1); // etcd's answer for a lease that no longer exists
    expect(await store.deregisterInstance('ship', 'vm-1')).toBe(false);
  });

  it('leaves a tombstone under its own lease when deregistering, and registering again removes it', async () => {
    await store.registerInstance(anInstance('ship', 'vm-3'), 30);
    expect(await store.deregisterInstance('ship', 'vm-3')).toBe(true);
    const tombstone = await client.kv.range({ key: Buffer.from(layout.deregistration('ship', 'vm-3')) });
    expect(JSON.parse(tombstone.kvs[0]!.value.toString())).toMatchObject({ service: 'ship', id: 'vm-3' });
    const ttl = Number((await client.leaseClient.leaseTimeToLive({ ID: tombstone.kvs[0]!.lease })).TTL);
    expect(ttl).toBeGreaterThan(60); // outlives any endpoint retention grace period
    // A lease expiry of the next registration must not read as a deregistration.
    await store.registerInstance(anInstance('ship', 'vm-3'), 30);
    expect((await client.kv.range({ key: Buffer.from(layout.deregistration('ship', 'vm-3')) })).kvs).toEqual([]);
    await store.deregisterInstance('ship', 'vm-3');
  });

  it('moves a re-registered instance to its new lease and revokes the old one', async () => {
    const first = await store.registerInstance(anInstance('ship', 'vm-2'), 30);
    const second = await store.registerInstance(anInstance('ship', 'vm-2', { port: 9090 }), 30);
    expect(second.leaseId).not.toBe(first.leaseId);
    expect(Number((await client.leaseClient.leaseTimeToLive({ ID: first.leaseId })).TTL)).toBe(-1);
    expect(await store.listInstances('ship')).toEqual([second.record]);
    expect(await store.heartbeatInstance('ship', 'vm-2')).toBe(true);
    await store.deregisterInstance('ship', 'vm-2');
  });

  it('drains an instance on its own lease, once, and a re-registration serves again', async () => {
    const { leaseId } = await store.registerInstance(anInstance('ship', 'vm-3'), 30);
    const drained = await store.drainInstance('ship', 'vm-3');
    expect(drained?.drainingSince).toBeDefined();
    const kv = await client.get(layout.instance('ship', 'vm-3')).exec();
    expect(kv.kvs[0]?.lease).toBe(leaseId); // still expires if its heartbeats stop
    expect((await store.drainInstance('ship', 'vm-3'))?.drainingSince).toBe(drained?.drainingSince);
    expect(await store.heartbeatInstance('ship', 'vm-3')).toBe(true);
    const again = await store.registerInstance(anInstance('ship', 'vm-3'), 30);
    expect(again.record.drainingSince).toBeUndefined();
    await store.deregisterInstance('ship', 'vm-3');
    expect(await store.drainInstance('ship', 'vm-3')).toBeUndefined();
  });

  it('validates instance records and fills defaults', async () => {
    await expect(store.registerInstance(anInstance('ship', 'x', { address: 'not-an-ip' }), 5)).rejects.toThrow(/address/);
    const { record } = await store.registerInstance(anInstance('ship', 'k8s-pod-1', { platform: 'k8s' }), 5);
    expect(record).toMatchObject({ weight: 1, labels: {}, locality: { region: '', zone: '', subZone: '' } });
    expect(Date.parse(record.registeredAt)).not.toBeNaN();
    expect(await store.listInstances()).toContainEqual(record);
  });
});

describe('mesh settings, authz keys and proxy status', () => {
  it('writes mesh settings only once', async () => {
    expect(await store.getMeshSettings()).toBeUndefined();
    expect(await store.ensureMeshSettings({ tokenIssuer: 'trellis', clockSkewSeconds: 30 })).toEqual({
      tokenIssuer: 'trellis',
      clockSkewSeconds: 30,
    });
    expect(await store.ensureMeshSettings({ tokenIssuer: 'other', clockSkewSeconds: 5 })).toEqual({
      tokenIssuer: 'trellis',
      clockSkewSeconds: 30,
    });
  });

  it('puts, lists and deletes authz keys', async () => {
    const key = {
      kid: 'k1',
      jwk: { kty: 'RSA' as const, kid: 'k1', alg: 'RS256' as const, use: 'sig' as const, n: TEST_RSA_N, e: 'AQAB' },
      publishedAt: '2026-01-01T00:00:00Z',
      activeFrom: '2026-01-01T00:05:00Z',
    };
    await store.putAuthzKey(key);
    expect(await store.listAuthzKeys()).toEqual([key]);
    await store.deleteAuthzKey('k1');
    expect(await store.listAuthzKeys()).toEqual([]);
  });

  it('stores proxy statuses under the given lease', async () => {
    const lease = await client.leaseClient.leaseGrant({ TTL: 30 });
    const status = {
      service: 'checkout',
      nodeId: 'checkout/pod-1.ns',
      controlPlane: 'cp-0',
      stream: 'cp-0/1',
      connectedAt: '2026-01-01T00:00:00Z',
      updatedAt: '2026-01-01T00:00:01Z',
      types: { cds: { lastSentVersion: '3', lastAckedVersion: '3' } },
    };
    await store.putProxyStatus(status, lease.ID);
    expect(await store.listProxyStatuses('checkout')).toEqual([status]);
    await client.leaseClient.leaseRevoke({ ID: lease.ID });
    expect(await store.listProxyStatuses()).toEqual([]);
  });

  it('lists the records replicas of the version before the status range still write (a rolling upgrade)', async () => {
    const lease = await client.leaseClient.leaseGrant({ TTL: 30 });
    const status = (nodeId: string, stream: string) => ({
      service: 'orders',
      nodeId,
      controlPlane: stream.split('/')[0]!,
      stream,
      connectedAt: '2026-01-01T00:00:00Z',
      updatedAt: '2026-01-01T00:00:01Z',
      types: { cds: { lastSentVersion: '3', lastAckedVersion: '3' } },
    });
    await store.putProxyStatus(status('orders/pod-1', 'cp-new/1'), lease.ID);
    // What an old replica writes: proxies/<service>/<node id>/<stream>, under its own lease.
    const old = status('orders/pod-2', 'cp-old/7');
    const oldKey = `${layout.legacyProxyStatusesOf('orders')}${encodeURIComponent(old.nodeId)}/${encodeURIComponent(old.stream)}`;
    await client.put(oldKey).value(JSON.stringify(old)).lease(lease.ID).exec();
    await client
      .put(`${layout.legacyProxyStatusesOf('orders')}broken/cp-old%2F8`)
      .value('{"nodeId":')
      .lease(lease.ID)
      .exec();
    const listed = (await store.listProxyStatuses('orders')).sort((a, b) => a.nodeId.localeCompare(b.nodeId));
    expect(listed).toEqual([status('orders/pod-1', 'cp-new/1'), old]);
    expect(await store.listProxyStatuses()).toHaveLength(2);
    await client.leaseClient.leaseRevoke({ ID: lease.ID });
    expect(await store.listProxyStatuses('orders')).toEqual([]);
  });

  it('deletes one proxy status and keeps a rejected config’s mesh revision', async () => {
    const lease = await client.leaseClient.leaseGrant({ TTL: 30 });
    const at = '2026-01-01T00:00:00Z';
    const status = (nodeId: string) => ({
      service: 'ledger',
      nodeId,
      controlPlane: 'cp-0',
      stream: `cp-0/${nodeId}`,
      connectedAt: at,
      updatedAt: at,
      types: { rds: { lastSentVersion: 'v2', lastNack: { version: 'v2', error: 'bad regex', at, meshRevision: '41' } } },
    });
    await store.putProxyStatus(status('ledger/pod-1'), lease.ID);
    await store.putProxyStatus(status('ledger/pod-2'), lease.ID);
    await store.deleteProxyStatus('ledger', 'ledger/pod-1', 'cp-0/ledger/pod-1');
    await store.deleteProxyStatus('ledger', 'ledger/pod-1', 'cp-0/ledger/pod-1'); // already gone: no error
    expect(await store.listProxyStatuses('ledger')).toEqual([status('ledger/pod-2')]);
    await expect(
      store.putProxyStatus(
        { ...status('ledger/pod-3'), types: { rds: { lastNack: { version: 'v2', error: 'x', at, meshRevision: 'latest' } } } },
        lease.ID,
      ),
    ).rejects.toBeInstanceOf(InvalidRecordError);
    await client.leaseClient.leaseRevoke({ ID: lease.ID });
  });

  it('writes and deletes many proxy statuses in one txn, leaving out an invalid one', async () => {
    const lease = await client.leaseClient.leaseGrant({ TTL: 30 });
    const at = '2026-01-01T00:00:00Z';
    const status = (nodeId: string) => ({
      service: 'batch',
      nodeId,
      controlPlane: 'cp-0',
      stream: `cp-0/${nodeId}`,
      connectedAt: at,
      updatedAt: at,
      types: { cds: { lastSentVersion: 'v1', lastAckedVersion: 'v1' } },
    });
    await store.writeProxyStatuses([status('pod-1'), status('pod-2')], [], lease.ID);
    const invalid = { ...status('pod-4'), types: { rds: { lastNack: { version: 'v2', error: 'x', at, meshRevision: 'latest' } } } };
    const { invalid: left } = await store.writeProxyStatuses(
      [status('pod-3'), invalid],
      [{ service: 'batch', nodeId: 'pod-1', stream: 'cp-0/pod-1' }],
      lease.ID,
    );
    expect(left.map((l) => l.status)).toEqual([invalid]);
    expect(left[0]!.error).toBeInstanceOf(InvalidRecordError);
    const stored = await store.listProxyStatuses('batch');
    expect(stored.map((s) => s.nodeId).sort()).toEqual(['pod-2', 'pod-3']);
    expect(stored.find((s) => s.nodeId === 'pod-2')).toEqual(status('pod-2'));
    await client.leaseClient.leaseRevoke({ ID: lease.ID });
    expect(await store.listProxyStatuses('batch')).toEqual([]);
  });

  it("writes a record object kept across writes at its stream's key, also after its node id and stream change", async () => {
    const lease = await client.leaseClient.leaseGrant({ TTL: 30 });
    const at = '2026-01-01T00:00:00.000Z';
    // As the status writer does: one object per stream, changed in place between writes.
    const record = {
      service: 'batch',
      nodeId: 'pod-1',
      controlPlane: 'cp-0',
      stream: 'cp-0/1',
      connectedAt: at,
      updatedAt: at,
      meshRevision: undefined as string | undefined,
      types: { cds: { lastSentVersion: 'v1', lastAckedVersion: undefined as string | undefined } },
    };
    await store.writeProxyStatuses([record], [], lease.ID);
    record.types.cds.lastAckedVersion = 'v1';
    await store.writeProxyStatuses([record], [], lease.ID);
    const keys = async () => (await client.getAll().prefix(layout.proxyStatusesOf('batch')).keys()).sort();
    expect(await keys()).toEqual([layout.proxyStatus('batch', 'pod-1', 'cp-0/1')]);
    expect((await store.listProxyStatuses('batch'))[0]?.types.cds?.lastAckedVersion).toBe('v1');
    record.nodeId = 'pod-2';
    record.stream = 'cp-0/2';
    await store.writeProxyStatuses([record], [], lease.ID);
    expect(await keys()).toEqual([layout.proxyStatus('batch', 'pod-1', 'cp-0/1'), layout.proxyStatus('batch', 'pod-2', 'cp-0/2')].sort());
    const second = JSON.parse((await client.get(layout.proxyStatus('batch', 'pod-2', 'cp-0/2')).string())!);
    expect(second).toMatchObject({ nodeId: 'pod-2', stream: 'cp-0/2' });
    await client.leaseClient.leaseRevoke({ ID: lease.ID });
  });
});

// The lease pool against a real etcd: registrations on pooled leases expire exactly as
// on leases granted for them, and no lease outlives the pool that granted it.
import type { Etcd3 } from 'etcd3';
import { eventually, startEtcd, type TestEtcd } from '@trellis/testing';
import { KeyLayout } from '../src/keys';
import { LeasePool, MeshStore } from '../src/store';
import { LeaseKeepAliveStream } from '../src/store/lease-keep-alive';
import { aService, anInstance } from './fixtures';

let etcd: TestEtcd;
let client: Etcd3;
let layout: KeyLayout;

beforeAll(async () => {
  etcd = await startEtcd();
  client = etcd.client();
  layout = new KeyLayout(etcd.prefix);
  await new MeshStore(client, layout).createService(aService('pool'), 'team-a');
});
afterAll(async () => {
  await etcd?.close();
});

/** Seconds etcd says the lease has left; -1 once it no longer exists. */
const remaining = async (leaseId: string) => Number((await client.leaseClient.leaseTimeToLive({ ID: leaseId })).TTL);

/** Waits on etcd's lease clock: a minute, probing etcd every 100 ms. */
const until = <T>(what: string, probe: () => Promise<T | undefined | false>) => eventually(what, probe, 60_000, { intervalMs: 100 });

/** A pool and a store registering through it; the first registration of a TTL fills its pool. */
async function pooledStore(ttl: number, opts: ConstructorParameters<typeof LeasePool>[1] = {}) {
  const pool = new LeasePool(client, { perTtl: 2, ...opts });
  const store = new MeshStore(client, layout, { leasePool: pool });
  await store.registerInstance(anInstance('pool', `primer-${ttl}`), ttl, { requireService: true });
  const ready = await until('the pool to fill', async () => {
    const leases = pool.pooled().get(ttl) ?? [];
    return leases.length === 2 ? leases : undefined;
  });
  return { pool, store, ready };
}

describe('lease pool', () => {
  it('registers on a pooled lease whose countdown restarts at the registration', async () => {
    // Never refreshed while pooled, so a pooled lease visibly ages before it is taken.
    const { pool, store, ready } = await pooledStore(30, { keepAliveEveryMs: () => 3_600_000 });
    const aged = await until('a pooled lease to age', async () => {
      const left = await remaining(ready[ready.length - 1]!);
      return left <= 26 ? left : undefined;
    });
    const { leaseId } = await store.registerInstance(anInstance('pool', 'aged'), 30, { requireService: true });
    expect(ready).toContain(leaseId);
    expect(await remaining(leaseId)).toBeGreaterThan(aged);
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: leaseId, keys: true });
    expect(Number(ttl.grantedTTL)).toBe(30);
    expect(ttl.keys.map((k) => k.toString())).toEqual([layout.instance('pool', 'aged')]);
    await pool.close();
  });

  it('lets an instance on a pooled lease expire when its heartbeats stop, and never keeps it alive', async () => {
    // The pool refreshes what it holds every 500 ms; a lease it handed out must lapse all the same.
    const { pool, store } = await pooledStore(2, { keepAliveEveryMs: () => 500 });
    const { leaseId } = await store.registerInstance(anInstance('pool', 'silent'), 2, { requireService: true });
    await until('the silent instance to expire', async () => !(await store.listInstances('pool')).some((i) => i.id === 'silent'));
    expect(await remaining(leaseId)).toBe(-1);
    expect(await store.heartbeatInstance('pool', 'silent')).toBe(false);
    await pool.close();
  });

  it('registers on a fresh lease when the pooled one lapsed behind its back', async () => {
    const { pool, store, ready } = await pooledStore(30, { keepAliveEveryMs: () => 3_600_000 });
    for (const lease of ready) await client.leaseClient.leaseRevoke({ ID: lease });
    const { leaseId } = await store.registerInstance(anInstance('pool', 'after-lapse'), 30, { requireService: true });
    expect(ready).not.toContain(leaseId);
    expect(await remaining(leaseId)).toBeGreaterThan(0);
    expect((await store.listInstances('pool')).map((i) => i.id)).toContain('after-lapse');
    await pool.close();
  });

  it('revokes a pooled lease whose registration is refused, and every waiting lease on close', async () => {
    const { pool, store, ready } = await pooledStore(30);
    await expect(store.registerInstance(anInstance('no-such-service', 'x'), 30, { requireService: true })).rejects.toThrow(
      /no-such-service/,
    );
    // The refused registration took the newest lease and must not have left it behind.
    const taken = ready[ready.length - 1]!;
    await until('the refused lease to be revoked', async () => (await remaining(taken)) === -1);
    const waiting = await until('the pool to fill again', async () => {
      const leases = pool.pooled().get(30) ?? [];
      return leases.length === 2 ? leases : undefined;
    });
    await pool.close();
    for (const lease of waiting) expect(await remaining(lease)).toBe(-1);
    expect(pool.pooled().size).toBe(0);
    // A closed pool hands out nothing: registrations grant their own.
    const { leaseId } = await store.registerInstance(anInstance('pool', 'after-close'), 30, { requireService: true });
    expect(await remaining(leaseId)).toBeGreaterThan(0);
  });

  it('revokes an idle pool and hands no lease out twice to concurrent registrations', async () => {
    const takes: string[] = [];
    const { pool, store } = await pooledStore(30, { keepAliveEveryMs: () => 200, onTake: (result) => takes.push(result) });
    takes.length = 0; // the primer's
    const registered = await Promise.all(
      Array.from({ length: 6 }, (_, i) => store.registerInstance(anInstance('pool', `burst-${i}`), 30, { requireService: true })),
    );
    expect(new Set(registered.map((r) => r.leaseId)).size).toBe(6);
    // Two were waiting; the other four granted their own.
    expect(takes.sort()).toEqual(['empty', 'empty', 'empty', 'empty', 'pooled', 'pooled']);
    for (const { leaseId } of registered) expect(await remaining(leaseId)).toBeGreaterThan(0);
    await pool.close();

    const idle = new LeasePool(client, { perTtl: 2, keepAliveEveryMs: () => 200, idleMs: 300 });
    await new MeshStore(client, layout, { leasePool: idle }).registerInstance(anInstance('pool', 'idle'), 30, { requireService: true });
    // Every lease the pool is seen holding until it drops itself must then be revoked.
    const seen = new Set<string>();
    await until('the idle pool to be dropped', async () => {
      for (const lease of idle.pooled().get(30) ?? []) seen.add(lease);
      return !idle.pooled().has(30);
    });
    for (const lease of seen) await until('an idle lease to be revoked', async () => (await remaining(lease)) === -1);
    await idle.close();
  });
});

describe('lease pool at its default size', () => {
  it("registers a rolling deploy's burst of replicas on pooled leases, one round trip each", async () => {
    const takes: string[] = [];
    const pool = new LeasePool(client, { onTake: (result) => takes.push(result) });
    const store = new MeshStore(client, layout, { leasePool: pool });
    await store.registerInstance(anInstance('pool', 'deploy-primer'), 30, { requireService: true });
    await until('the default pool to fill', async () => (pool.pooled().get(30)?.length ?? 0) === 32);
    takes.length = 0; // the primer's
    const registered = await Promise.all(
      Array.from({ length: 24 }, (_, i) => store.registerInstance(anInstance('pool', `replica-${i}`), 30, { requireService: true })),
    );
    expect(takes).toEqual(Array<string>(24).fill('pooled'));
    expect(new Set(registered.map((r) => r.leaseId)).size).toBe(24);
    for (const { leaseId } of registered) expect(await remaining(leaseId)).toBeGreaterThan(0);
    // The pool refills to its size and no further.
    await until('the pool to refill', async () => (pool.pooled().get(30)?.length ?? 0) === 32);
    await pool.close();
  });
});

describe('lease keep-alive stream', () => {
  it("heartbeats share one stream, the lease pool's when the store has one", async () => {
    const pool = new LeasePool(client, { perTtl: 2 });
    const stores = [new MeshStore(client, layout), new MeshStore(client, layout, { leasePool: pool })];
    try {
      for (const [s, store] of stores.entries())
        for (let i = 0; i < 10; i++) await store.registerInstance(anInstance('pool', `heartbeat-${s}-${i}`), 30, { requireService: true });
      const heartbeatAll = () =>
        Promise.all(
          stores.flatMap((store, s) => Array.from({ length: 10 }, (_, i) => store.heartbeatInstance('pool', `heartbeat-${s}-${i}`))),
        );
      expect(await heartbeatAll()).toEqual(Array<boolean>(20).fill(true)); // each store's stream is open
      const opened = jest.spyOn(client.leaseClient, 'leaseKeepAlive');
      try {
        for (let round = 0; round < 2; round++) expect(await heartbeatAll()).toEqual(Array<boolean>(20).fill(true));
        expect(opened).not.toHaveBeenCalled();
      } finally {
        opened.mockRestore();
      }
    } finally {
      await pool.close();
    }
  });

  it('answers each refresh for its own lease on one stream, false for a lease etcd no longer has', async () => {
    const stream = new LeaseKeepAliveStream(client);
    const [a, b, gone] = await Promise.all([30, 30, 30].map(async (TTL) => (await client.leaseClient.leaseGrant({ TTL })).ID));
    await client.leaseClient.leaseRevoke({ ID: gone! });
    expect(await Promise.all([stream.refresh(a!), stream.refresh(gone!), stream.refresh(b!), stream.refresh(a!)])).toEqual([
      true,
      false,
      true,
      true,
    ]);
    stream.close();
    // Closed, it opens a new stream for the next refresh.
    expect(await stream.refresh(b!)).toBe(true);
    stream.close();
    await Promise.all([a, b].map((ID) => client.leaseClient.leaseRevoke({ ID: ID! })));
  });
});

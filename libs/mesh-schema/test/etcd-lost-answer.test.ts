// A write etcd applied whose answer was lost. etcd3 retries a call that failed with a recoverable error (a dropped
// connection, a deadline) on a new connection; that second attempt meets the first one's write (a create finds its key,
// a delete finds the record gone, a grant would grant again). Here the network between the store and real etcd loses
// etcd's answers from the write's etcd call on until the write is in etcd, then drops the connection, as a broken link
// or a restarting proxy does; every write must answer as the write that happened, once.
import { eventually, startEtcd, startTcpProxy, type TcpProxy, type TestEtcd } from '@trellis/testing';
import { AlreadyExistsError, NotFoundError } from '../src/errors';
import { LeaseClient } from 'etcd3';
import { connectEtcd, keptAliveLease, type EtcdClient, type KeptAliveLease } from '../src/etcd-client';
import { KeyLayout } from '../src/keys';
import { LeasePool, MeshStore } from '../src/store';
import { aService, anInstance } from './fixtures';

jest.setTimeout(120_000);

let etcd: TestEtcd;
let proxy: TcpProxy;
let client: EtcdClient;
let layout: KeyLayout;
let store: MeshStore;
/** The revisions the store reported as committed (what the registry's view waits for: read-your-writes). */
const committed: string[] = [];
/** Straight to etcd, not through the proxy: what etcd holds. */
let direct: MeshStore;

beforeAll(async () => {
  etcd = await startEtcd();
  const target = new URL(etcd.endpoints[0]!);
  proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) });
  client = connectEtcd({ endpoints: [`http://${proxy.host}:${proxy.port}`], callTimeoutMs: 2_000 });
  layout = new KeyLayout(etcd.prefix);
  store = new MeshStore(client, layout, { onCommit: (revision) => committed.push(revision) });
  direct = new MeshStore(etcd.client(), layout);
  await store.listServices(); // the connection is up
});
afterAll(async () => {
  client?.close();
  await proxy?.close();
  await etcd?.close();
});

/**
 * Where the lost answers start: the write's next call of this method (still made to etcd; the spy only marks it).
 * Calls before it, such as the reads a delete makes first, are answered.
 */
type LostCall = { on: typeof client.kv; method: 'txn' } | { on: LeaseClient; method: 'leaseGrant' | 'leaseKeepAlive' };

/**
 * Runs `write`, losing etcd's answers from its first `from` call on (the reads a write makes first are answered), until
 * `applied` sees the write in etcd; then the connection drops, as a broken link or a restarting proxy drops it, and
 * etcd3 retries on a new one.
 */
async function withAnswerLost<T>(
  write: () => Promise<T>,
  applied: () => Promise<boolean>,
  from: LostCall = { on: client.kv, method: 'txn' },
): Promise<T> {
  const target = from.on as unknown as Record<string, (...args: unknown[]) => unknown>;
  const call = target[from.method]!;
  // Called on whatever `this` the caller calls it on (a prototype's spy sees each instance).
  const spy = jest.spyOn(target, from.method).mockImplementationOnce(function (this: unknown, ...args: unknown[]) {
    proxy.dropReplies = true;
    return call.apply(this, args);
  });
  try {
    const written = write();
    await eventually(`the ${from.method} sent`, async () => proxy.dropReplies, 60_000, { intervalMs: 20 });
    await eventually('the write applied in etcd', applied, 60_000, { intervalMs: 50 });
    proxy.dropReplies = false;
    proxy.pause();
    proxy.resume();
    return await written;
  } finally {
    proxy.dropReplies = false;
    spy.mockRestore();
  }
}

/** Every lease etcd holds. */
const leases = async () => new Set((await etcd.client().leaseClient.leaseLeases()).leases.map((l) => String(l.ID)));
const leaseTtl = async (lease: string) => Number((await etcd.client().leaseClient.leaseTimeToLive({ ID: lease })).TTL);

it('a create applied by etcd whose answer was lost succeeds on the retry, once', async () => {
  const answer = await withAnswerLost(
    () => store.createService(aService('answer-lost'), 'alice'),
    async () => (await direct.getService('answer-lost')) !== undefined,
  );
  const stored = (await direct.getService('answer-lost'))!;
  expect(answer.value).toEqual(stored.value);
  expect(answer.modRevision).toBe(stored.modRevision);
  expect(stored.value.generation).toBe(1);
  expect((await direct.listHistory('answer-lost')).map((h) => h.action)).toEqual(['create']);
});

it('an update applied by etcd whose answer was lost succeeds on the retry, once, and meets its own If-Match', async () => {
  const before = await direct.createService(aService('update-lost'), 'bob');
  // The record the client read (as the registry's view gives it): the update's first etcd call is its txn.
  const answer = await withAnswerLost(
    () => store.updateService(aService('update-lost', { port: 9090 }), 'alice', { ifModRevision: before.modRevision, known: before }),
    async () => (await direct.getService('update-lost'))!.value.generation > 1,
  );
  const stored = (await direct.getService('update-lost'))!;
  expect(answer.value).toEqual(stored.value);
  expect(answer.modRevision).toBe(stored.modRevision);
  expect(stored.value.generation).toBe(2);
  expect((await direct.listHistory('update-lost')).map((h) => h.action)).toEqual(['create', 'update']);
});

it('a create of a name another call created is still refused', async () => {
  await direct.createService(aService('taken'), 'bob');
  await expect(store.createService(aService('taken'), 'alice')).rejects.toThrow(AlreadyExistsError);
});

describe('a service delete applied by etcd whose answer was lost', () => {
  it.each([
    ['without If-Match', false],
    ['with the If-Match of the record it deleted', true],
  ])('%s succeeds on the retry, once, and revokes the instances’ leases', async (_, withIfMatch) => {
    const name = withIfMatch ? 'delete-lost-if-match' : 'delete-lost';
    const before = await direct.createService(aService(name), 'bob');
    const { leaseId } = await direct.registerInstance(anInstance(name, 'i-1'), 60);
    await withAnswerLost(
      () => store.deleteService(name, 'alice', withIfMatch ? { ifModRevision: before.modRevision } : {}),
      async () => (await direct.getService(name)) === undefined,
    );
    const history = await direct.listHistory(name);
    expect(history.map((h) => [h.action, h.actor])).toEqual([
      ['create', 'bob'],
      ['delete', 'alice'],
    ]);
    expect(await direct.listInstances(name)).toEqual([]);
    expect(await leaseTtl(leaseId)).toBe(-1); // revoked, not left to lapse
    expect(committed).toContain((await direct.listHistoryVersioned(name))[1]!.modRevision);
  });

  it('that another call deleted is still not found', async () => {
    await direct.createService(aService('deleted-by-another'), 'bob');
    await direct.deleteService('deleted-by-another', 'bob');
    await expect(store.deleteService('deleted-by-another', 'alice')).rejects.toThrow(NotFoundError);
  });
});

it('a heartbeat whose lease refresh etcd applied but whose answer was lost reports the instance alive', async () => {
  const { leaseId } = await direct.registerInstance(anInstance('heartbeat-lost', 'i-1'), 30);
  // Some of the lease's time passes, so that its refresh shows in etcd.
  await eventually('the lease counting down', async () => (await leaseTtl(leaseId)) <= 28, 60_000, { intervalMs: 200 });
  const alive = await withAnswerLost(
    () => store.heartbeatInstance('heartbeat-lost', 'i-1'),
    async () => (await leaseTtl(leaseId)) >= 29,
    { on: client.leaseClient, method: 'leaseKeepAlive' },
  );
  expect(alive).toBe(true);
});

describe('an instance registration whose txn etcd applied but whose answer was lost', () => {
  const instanceKv = async (service: string, id: string) =>
    (await etcd.client().kv.range({ key: Buffer.from(layout.instance(service, id)) })).kvs[0];

  it('succeeds on the retry, on the lease it was granted', async () => {
    await direct.createService(aService('register-lost'), 'bob');
    const registered = await withAnswerLost(
      () => store.registerInstance(anInstance('register-lost', 'i-1'), 60, { requireService: true }),
      async () => (await instanceKv('register-lost', 'i-1')) !== undefined,
    );
    expect((await instanceKv('register-lost', 'i-1'))!.lease).toBe(registered.leaseId);
    expect(await leaseTtl(registered.leaseId)).toBeGreaterThan(0);
  });

  it('a re-registration revokes the lease the instance was on before', async () => {
    await direct.createService(aService('reregister-lost'), 'bob');
    const first = await direct.registerInstance(anInstance('reregister-lost', 'i-1'), 60);
    const again = await withAnswerLost(
      () => store.registerInstance(anInstance('reregister-lost', 'i-1', { port: 9090 }), 60, { requireService: true }),
      async () => (await instanceKv('reregister-lost', 'i-1'))?.lease !== first.leaseId,
    );
    expect((await instanceKv('reregister-lost', 'i-1'))!.lease).toBe(again.leaseId);
    expect(await leaseTtl(first.leaseId)).toBe(-1); // revoked, not left to lapse
  });

  it('a re-registration whose service changed before the retry stays registered, and says so', async () => {
    const service = await direct.createService(aService('reregister-changed'), 'bob');
    const first = await direct.registerInstance(anInstance('reregister-changed', 'i-1'), 60);
    // Applied, and then the service is updated before etcd3 retries the txn: the retry fails its guard.
    const again = await withAnswerLost(
      () =>
        store.registerInstance(anInstance('reregister-changed', 'i-1', { port: 9090 }), 60, {
          requireService: { modRevision: service.modRevision },
        }),
      async () => {
        if ((await instanceKv('reregister-changed', 'i-1'))?.lease === first.leaseId) return false;
        await direct.updateService(aService('reregister-changed', { port: 9091 }), 'carol', { ifModRevision: service.modRevision });
        return true;
      },
    );
    const kv = (await instanceKv('reregister-changed', 'i-1'))!;
    expect(kv.lease).toBe(again.leaseId);
    expect(await leaseTtl(again.leaseId)).toBeGreaterThan(0);
    expect(await leaseTtl(first.leaseId)).toBe(-1); // revoked, not left to lapse
    expect(committed).toContain(kv.mod_revision);
  });

  it('a re-registration on a pooled lease (the registry’s path) ends on one live lease, every other revoked', async () => {
    await direct.createService(aService('reregister-pooled'), 'bob');
    const pool = new LeasePool(client, { perTtl: 2 });
    const pooled = new MeshStore(client, layout, { leasePool: pool });
    try {
      const first = await pooled.registerInstance(anInstance('reregister-pooled', 'i-1'), 60, { requireService: true });
      const ready = await eventually(
        'the pool to fill',
        async () => (pool.pooled().get(60)?.length === 2 ? pool.pooled().get(60) : undefined),
        60_000,
        {
          intervalMs: 50,
        },
      );
      const taken = ready[ready.length - 1]!;
      const again = await withAnswerLost(
        () => pooled.registerInstance(anInstance('reregister-pooled', 'i-1', { port: 9090 }), 60, { requireService: true }),
        async () => (await instanceKv('reregister-pooled', 'i-1'))?.lease !== first.leaseId,
      );
      expect((await instanceKv('reregister-pooled', 'i-1'))!.lease).toBe(again.leaseId);
      expect(await leaseTtl(again.leaseId)).toBeGreaterThan(0);
      // The pooled lease it was put on first is the instance's, or revoked once the instance moved to a fresh one
      // (its refresh, sent alongside the txn, may have lost its answer too).
      const others = [first.leaseId, taken].filter((lease) => lease !== again.leaseId);
      expect(await Promise.all(others.map(leaseTtl))).toEqual(others.map(() => -1));
    } finally {
      await pool.close();
    }
  });
});

describe('an instance deregistration etcd applied whose answer was lost', () => {
  it('succeeds on the retry, keeps its tombstone and revokes the instance’s lease', async () => {
    await direct.createService(aService('deregister-lost'), 'bob');
    const { leaseId } = await direct.registerInstance(anInstance('deregister-lost', 'i-1'), 60);
    const deregistered = await withAnswerLost(
      () => store.deregisterInstance('deregister-lost', 'i-1'),
      async () => (await direct.listInstances('deregister-lost')).length === 0,
    );
    expect(deregistered).toBe(true);
    const tombstone = (await etcd.client().kv.range({ key: Buffer.from(layout.deregistration('deregister-lost', 'i-1')) })).kvs[0];
    expect(tombstone).toBeDefined();
    expect(await leaseTtl(tombstone!.lease)).toBeGreaterThan(0);
    expect(await leaseTtl(leaseId)).toBe(-1);
  });

  it('of an instance another call deregistered is still not found', async () => {
    await direct.createService(aService('deregistered-by-another'), 'bob');
    await direct.registerInstance(anInstance('deregistered-by-another', 'i-1'), 60);
    await direct.deregisterInstance('deregistered-by-another', 'i-1');
    await expect(store.deregisterInstance('deregistered-by-another', 'i-1')).resolves.toBe(false);
  });
});

it('a registration whose lease grant etcd applied but whose answer was lost leaves no second lease behind', async () => {
  await direct.createService(aService('grant-lost'), 'bob');
  const before = await leases();
  const { leaseId } = await withAnswerLost(
    () => store.registerInstance(anInstance('grant-lost', 'i-1'), 60, { requireService: true }),
    async () => [...(await leases())].some((l) => !before.has(l)),
    { on: client.leaseClient, method: 'leaseGrant' },
  );
  expect([...(await leases())].filter((l) => !before.has(l))).toEqual([leaseId]);
});

it('a drain etcd applied whose answer was lost answers with the drained record it wrote', async () => {
  await direct.createService(aService('drain-lost'), 'bob');
  await direct.registerInstance(anInstance('drain-lost', 'i-1'), 60);
  const drained = await withAnswerLost(
    () => store.drainInstance('drain-lost', 'i-1'),
    async () => (await direct.listInstances('drain-lost'))[0]?.drainingSince !== undefined,
  );
  const [stored] = await direct.listInstances('drain-lost');
  expect(drained).toEqual(stored);
  const kv = (await etcd.client().kv.range({ key: Buffer.from(layout.instance('drain-lost', 'i-1')) })).kvs[0]!;
  expect(committed).toContain(kv.mod_revision);
});

it('a replica lease whose grant etcd applied but whose answer was lost leaves no second lease behind, and is kept alive', async () => {
  const before = await leases();
  let lease: KeptAliveLease | undefined;
  try {
    // On every LeaseClient's grant: a replica lease may hold its own.
    const leaseId = await withAnswerLost(
      () => (lease = keptAliveLease(client, 3)).grant(),
      async () => [...(await leases())].some((l) => !before.has(l)),
      { on: LeaseClient.prototype, method: 'leaseGrant' },
    );
    expect([...(await leases())].filter((l) => !before.has(l))).toEqual([leaseId]);
    // Refreshed in the background past its TTL.
    let renewals = 0;
    lease!.on('keepaliveSucceeded', () => (renewals += 1));
    await eventually('renewals over more than a TTL', async () => renewals >= 4, 60_000, { intervalMs: 100 });
    expect(await leaseTtl(leaseId)).toBeGreaterThan(0);
  } finally {
    await lease?.revoke();
  }
});

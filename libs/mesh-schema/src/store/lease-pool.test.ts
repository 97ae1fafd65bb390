// The pool's refill bookkeeping, against a fake lease client that answers (or refuses) every
// grant at once. Expiry and revocation against a real etcd: test/lease-pool.test.ts.
import type { Etcd3 } from 'etcd3';
import { setTimeout as sleep } from 'node:timers/promises';
import { LeasePool, refillWhen } from './lease-pool';

/** A lease client whose grants answer on the next microtask: every grant started is counted. */
function fakeClient(outcome: 'grant' | 'refuse') {
  const granted: string[] = [];
  let started = 0;
  const leaseClient = {
    leaseGrant: async ({ TTL }: { TTL: number }) => {
      started += 1;
      if (outcome === 'refuse') throw new Error('etcdserver: permission denied');
      const ID = `lease-${TTL}-${started}`;
      granted.push(ID);
      return { ID };
    },
    leaseRevoke: async () => ({}),
  };
  return { client: { leaseClient } as unknown as Etcd3, granted, started: () => started };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));
async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    if (check()) return;
    await turn();
  }
  throw new Error(`never: ${what}`);
}

describe('refillWhen', () => {
  it.each([
    [32, 32, 'not-yet'],
    [17, 32, 'not-yet'],
    [16, 32, 'when-quiet'],
    [9, 32, 'when-quiet'],
    [8, 32, 'now'],
    [0, 32, 'now'],
    [2, 2, 'not-yet'],
    [1, 2, 'when-quiet'],
    [0, 2, 'now'],
  ] as const)('a pool holding %i of %i refills %s', (held, perTtl, when) => {
    expect(refillWhen(held, perTtl)).toBe(when);
  });
});

describe('LeasePool refills', () => {
  it('keeps 32 leases ready by default, so a burst of 32 registrations all take pooled ones', async () => {
    const takes: string[] = [];
    const fake = fakeClient('grant');
    const pool = new LeasePool(fake.client, { onTake: (r) => takes.push(r) });
    expect(pool.take(30)).toBeUndefined(); // the first registration of a TTL starts its pool
    pool.refill(30);
    await until('the pool to fill', () => pool.size === 32);

    const burst = Array.from({ length: 32 }, () => pool.take(30));
    expect(burst.every((lease) => lease !== undefined)).toBe(true);
    expect(new Set(burst).size).toBe(32);
    expect(takes).toEqual(['empty', ...Array<string>(32).fill('pooled')]);
    // One past the pool's size grants its own.
    expect(pool.take(30)).toBeUndefined();

    for (let i = 0; i < 33; i++) pool.refill(30);
    await until('the pool to fill again', () => pool.size === 32);
    for (let i = 0; i < 20; i++) await turn();
    // Repeated refills never over-fill: 32, then 32 more, each lease handed out once.
    expect(fake.started()).toBe(64);
    expect(pool.size).toBe(32);
    expect(new Set([...burst, ...pool.pooled().get(30)!]).size).toBe(64);
    await pool.close();
  });

  it('spreads a refill over turns of the event loop, a few grants a turn', async () => {
    const fake = fakeClient('grant');
    const pool = new LeasePool(fake.client, { perTtl: 16 });
    pool.take(30);
    pool.refill(30);
    await turn(); // refill's own turn: the first grants
    const afterFirst = fake.started();
    expect(afterFirst).toBeGreaterThan(0);
    expect(afterFirst).toBeLessThan(16);
    await until('the pool to fill', () => pool.size === 16);
    expect(fake.started()).toBe(16);
    await pool.close();
  });

  it('holds a refill of a half-full pool back while registrations continue, and refills a nearly empty one at once', async () => {
    const fake = fakeClient('grant');
    // Registrations never pause for an hour in this test.
    const pool = new LeasePool(fake.client, { perTtl: 8, refillQuietMs: 3_600_000 });
    pool.take(30);
    pool.refill(30);
    await until('the pool to fill', () => pool.size === 8);
    for (let i = 0; i < 4; i++) {
      expect(pool.take(30)).toBeDefined();
      pool.refill(30);
    }
    for (let i = 0; i < 50; i++) await turn();
    expect(fake.started()).toBe(8); // down to half: waits for a pause
    for (let i = 0; i < 2; i++) {
      expect(pool.take(30)).toBeDefined();
      pool.refill(30);
    }
    // Down to a quarter: refills now, back to its size.
    await until('the pool to refill', () => pool.size === 8);
    expect(fake.started()).toBe(14);
    await pool.close();
  });

  it('refills a half-full pool once no registration has taken from it for the quiet window', async () => {
    const fake = fakeClient('grant');
    const pool = new LeasePool(fake.client, { perTtl: 8, refillQuietMs: 20 });
    pool.take(30);
    pool.refill(30);
    await until('the pool to fill', () => pool.size === 8);
    for (let i = 0; i < 4; i++) expect(pool.take(30)).toBeDefined();
    for (let i = 0; i < 3; i++) pool.refill(30);
    // One registration is still under way: however long that lasts, no grant competes with it.
    await sleep(100);
    expect(fake.started()).toBe(8);
    pool.refill(30);
    await until('the pool to refill after the pause', () => pool.size === 8);
    expect(fake.started()).toBe(12);
    await pool.close();
  });

  it('starts one refill of grants, not a loop of them, when etcd refuses every grant', async () => {
    const fake = fakeClient('refuse');
    const warnings: unknown[] = [];
    const pool = new LeasePool(fake.client, { logger: { warn: (obj: unknown) => warnings.push(obj) } });
    pool.take(30);
    pool.refill(30);
    await until('the refill to finish', () => warnings.length === 32);
    for (let i = 0; i < 50; i++) await turn();
    expect(fake.started()).toBe(32);
    expect(pool.size).toBe(0);
    await pool.close();
  });

  it('starts no grant once closed, even in the middle of a refill', async () => {
    const fake = fakeClient('grant');
    const pool = new LeasePool(fake.client);
    pool.take(30);
    pool.refill(30);
    await turn();
    const before = fake.started();
    const closing = pool.close();
    for (let i = 0; i < 20; i++) await turn();
    await closing;
    expect(fake.started()).toBe(before);
    expect(pool.size).toBe(0);
  });
});

// Leases granted ahead of the registrations that need them, so registering an instance
// is one etcd round trip (the txn) instead of two (a grant, then the txn).
//
// A pooled lease is kept alive by the pool until it is handed out; the registration
// then refreshes it once alongside its txn, so its countdown starts at the
// registration, as a lease granted for it would. From then on it is the instance's:
// the pool never touches it again, and it lapses when the instance's heartbeats stop.
// Pools exist only for TTLs in recent use, hold a few leases each, are revoked when
// idle and on close, and after a crash lapse on their own within their TTL.
//
// Refills wait for registrations to pause: a refill is a burst of grants (each an etcd raft
// write), and an etcd write sent just after it waits for them (16 grants: ~2.5 ms, 3x a put).
// A rollout's burst takes from the pool and the pool refills once it is over; only a pool
// nearly empty refills at once, so that sustained registrations never fall back to a grant each.
import type { Etcd3 } from 'etcd3';
import type { Logger } from '@trellis/runtime';
import { grantLease } from './lease-grant';
import { LeaseKeepAliveStream, type LeaseKeepAliveOptions } from './lease-keep-alive';

export interface LeasePoolOptions {
  /**
   * Leases kept ready per TTL (default 32): a burst of registrations up to this size (a
   * rolling deploy's new replicas) is one etcd round trip each; past it, each grants its own.
   */
  perTtl?: number;
  /** Distinct TTLs pooled at once; registrations with another TTL get a fresh grant (default 8). */
  maxTtls?: number;
  /** A TTL's pool is revoked after this long without a registration taking from it (default 10 min). */
  idleMs?: number;
  /**
   * How long registrations must pause before a refill starts (default 10 ms): long enough to
   * keep a burst's registrations apart from the grants, short enough to refill between bursts.
   */
  refillQuietMs?: number;
  /**
   * How often pooled leases are refreshed (default a third of their TTL): a lease handed
   * out always has most of its TTL left, and its refresh at hand-out restores the rest.
   */
  keepAliveEveryMs?: (ttlSeconds: number) => number;
  logger?: Pick<Logger, 'warn'>;
  /** Each `take`: a lease was waiting (`pooled`) or the caller grants its own (`empty`). */
  onTake?: (result: 'pooled' | 'empty') => void;
  /** Each time the keep-alive stream (pooled leases' and, in a MeshStore given this pool, heartbeats') was dropped. */
  onKeepAliveStreamDropped?: LeaseKeepAliveOptions['onStreamDropped'];
}

const DEFAULT_PER_TTL = 32;
const DEFAULT_REFILL_QUIET_MS = 10;
/**
 * Grant calls a refill starts per turn of the event loop. Building one is a few hundred
 * microseconds of gRPC client work; a refill of 16 built at once would hold every request
 * arriving meanwhile for several milliseconds, so it is spread over turns, which lets
 * them in between (the grants still reach etcd within a millisecond or two of each other).
 */
const GRANTS_PER_TURN = 4;

interface TtlPool {
  ttl: number;
  ready: string[];
  lastTaken: number;
  /** Grants under way, so a burst of takes does not over-fill the pool. */
  granting: number;
  /** Registrations that took from this pool (a lease or nothing) and have not called `refill` yet. */
  registering: number;
  /** A refill waiting for registrations to pause. */
  quietRefill: NodeJS.Timeout | undefined;
  timer: NodeJS.Timeout;
}

/**
 * When a pool holding `held` leases (waiting or being granted) of `perTtl` refills: not while it
 * holds more than half; at once when down to a quarter (it would soon run dry, and then each
 * registration pays a grant of its own); otherwise once registrations pause.
 */
export function refillWhen(held: number, perTtl: number): 'not-yet' | 'now' | 'when-quiet' {
  if (held > perTtl / 2) return 'not-yet';
  return held <= perTtl / 4 ? 'now' : 'when-quiet';
}

export class LeasePool {
  private readonly pools = new Map<number, TtlPool>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;
  private readonly perTtl: number;
  private readonly maxTtls: number;
  private readonly idleMs: number;
  private readonly refillQuietMs: number;
  private readonly keepAliveEveryMs: (ttlSeconds: number) => number;
  /** Refreshes of pooled, just-taken and heartbeating leases, as messages on one stream. */
  private readonly keepAlive: LeaseKeepAliveStream;

  constructor(
    private readonly client: Etcd3,
    private readonly opts: LeasePoolOptions = {},
  ) {
    this.perTtl = opts.perTtl ?? DEFAULT_PER_TTL;
    this.maxTtls = opts.maxTtls ?? 8;
    this.idleMs = opts.idleMs ?? 10 * 60_000;
    this.refillQuietMs = opts.refillQuietMs ?? DEFAULT_REFILL_QUIET_MS;
    this.keepAliveEveryMs = opts.keepAliveEveryMs ?? ((ttl) => (ttl * 1000) / 3);
    this.keepAlive = new LeaseKeepAliveStream(client, { onStreamDropped: opts.onKeepAliveStreamDropped });
  }

  /**
   * A pooled lease of `ttlSeconds`, now the caller's, or undefined (grant one yourself).
   * The caller must `refresh` it alongside the write that uses it, and call `refill` once
   * that write is done.
   */
  take(ttlSeconds: number): string | undefined {
    if (this.closed) return undefined;
    let pool = this.pools.get(ttlSeconds);
    if (!pool) {
      if (this.pools.size >= this.maxTtls) {
        this.opts.onTake?.('empty');
        return undefined;
      }
      pool = this.startPool(ttlSeconds);
    }
    pool.lastTaken = Date.now();
    pool.registering += 1;
    const lease = pool.ready.pop();
    this.opts.onTake?.(lease === undefined ? 'empty' : 'pooled');
    return lease;
  }

  /**
   * Called once the write of a registration that called `take` is done: grants what the pool
   * for `ttlSeconds` lacks, in the background (`refillWhen`). Never during that write, so the
   * grants do not compete with it; when the pool is nearly empty, on the next turn of the event
   * loop, so building their calls (a few hundred microseconds of gRPC each) does not delay its
   * answer; otherwise once no registration has taken from the pool for `refillQuietMs`.
   */
  refill(ttlSeconds: number): void {
    const pool = this.pools.get(ttlSeconds);
    if (!pool) return;
    if (pool.registering > 0) pool.registering -= 1;
    const when = refillWhen(pool.ready.length + pool.granting, this.perTtl);
    if (when === 'now') setImmediate(() => this.fill(pool));
    else if (when === 'when-quiet' && !pool.quietRefill) this.refillWhenQuiet(pool, this.refillQuietMs);
  }

  /** Restarts a taken (or any) lease's countdown at its full TTL; false when etcd no longer has it. */
  refresh(leaseId: string): Promise<boolean> {
    return this.keepAlive.refresh(leaseId);
  }

  /** How many leases wait in the pool, over every TTL (a gauge). */
  get size(): number {
    let size = 0;
    for (const pool of this.pools.values()) size += pool.ready.length;
    return size;
  }

  /** The leases waiting in the pool, by TTL (tests and diagnostics). */
  pooled(): Map<number, string[]> {
    return new Map([...this.pools].map(([ttl, pool]) => [ttl, [...pool.ready]]));
  }

  /** Stops refilling and revokes every lease still waiting, once grants under way have landed. */
  async close(): Promise<void> {
    this.closed = true;
    for (const pool of this.pools.values()) {
      clearInterval(pool.timer);
      clearTimeout(pool.quietRefill);
    }
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    const leases = [...this.pools.values()].flatMap((pool) => pool.ready.splice(0));
    this.pools.clear();
    await Promise.all(leases.map((lease) => this.revoke(lease)));
    this.keepAlive.close();
  }

  private startPool(ttl: number): TtlPool {
    const pool: TtlPool = {
      ttl,
      ready: [],
      lastTaken: Date.now(),
      granting: 0,
      registering: 0,
      quietRefill: undefined,
      timer: setInterval(() => this.maintain(pool), this.keepAliveEveryMs(ttl)),
    };
    pool.timer.unref();
    this.pools.set(ttl, pool);
    return pool;
  }

  /** Fills the pool once `refillQuietMs` passed with no registration taking from it or under way. */
  private refillWhenQuiet(pool: TtlPool, delayMs: number): void {
    pool.quietRefill = setTimeout(() => {
      pool.quietRefill = undefined;
      if (this.closed || this.pools.get(pool.ttl) !== pool) return;
      const quietFor = Date.now() - pool.lastTaken;
      // Still busy: look again when the last take is refillQuietMs old (the next refill call re-arms it too).
      if (pool.registering > 0 || quietFor < this.refillQuietMs) this.refillWhenQuiet(pool, Math.max(1, this.refillQuietMs - quietFor));
      else this.fill(pool);
    }, delayMs);
    pool.quietRefill.unref();
  }

  /**
   * Tops the pool up once it is down to half. The grants go out close together (GRANTS_PER_TURN
   * a turn): etcd commits concurrent grants in one batch (one disk sync), so a registration
   * costs a fraction of a grant.
   */
  private fill(pool: TtlPool): void {
    if (pool.ready.length + pool.granting > this.perTtl / 2) return;
    this.grant(pool, this.perTtl - pool.ready.length - pool.granting);
  }

  /**
   * Starts `count` grants, GRANTS_PER_TURN a turn; never past the pool's size. `count` is
   * fixed when the refill starts, so grants that fail at once are not retried in a loop.
   */
  private grant(pool: TtlPool, count: number): void {
    let left = count;
    for (let started = 0; started < GRANTS_PER_TURN && left > 0; started++, left--) {
      if (this.closed || this.pools.get(pool.ttl) !== pool || pool.ready.length + pool.granting >= this.perTtl) return;
      pool.granting += 1;
      this.track(
        grantLease(this.client, pool.ttl)
          .then(async (ID) => {
            if (this.closed || this.pools.get(pool.ttl) !== pool) await this.revoke(ID);
            else pool.ready.push(ID);
          })
          .catch((err: unknown) => this.opts.logger?.warn({ err, ttlSeconds: pool.ttl }, 'could not grant a lease for the pool'))
          .finally(() => (pool.granting -= 1)),
      );
    }
    if (left > 0) setImmediate(() => this.grant(pool, left));
  }

  /** Keeps the waiting leases alive, dropping any etcd lost; an idle pool is revoked. */
  private maintain(pool: TtlPool): void {
    if (Date.now() - pool.lastTaken > this.idleMs) {
      clearInterval(pool.timer);
      clearTimeout(pool.quietRefill);
      this.pools.delete(pool.ttl);
      for (const lease of pool.ready.splice(0)) this.track(this.revoke(lease));
      return;
    }
    for (const lease of [...pool.ready]) {
      this.track(
        this.refresh(lease)
          .catch(() => false)
          .then((alive) => {
            if (alive) return;
            // Lapsed (etcd was away longer than the TTL) or unreachable: never hand it out.
            // Taken meanwhile, it is the registration's, whose own refresh decides.
            const at = pool.ready.indexOf(lease);
            if (at < 0) return;
            pool.ready.splice(at, 1);
            return this.revoke(lease);
          }),
      );
    }
  }

  private async revoke(leaseId: string): Promise<void> {
    try {
      await this.client.leaseClient.leaseRevoke({ ID: leaseId });
    } catch (err) {
      if (!/lease not found/i.test((err as Error).message))
        this.opts.logger?.warn({ err, leaseId }, 'could not revoke a pooled lease; it lapses within its TTL');
    }
  }

  private track(work: Promise<unknown>): void {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }
}

// A replica's lease (the control plane's proxy statuses live under it), kept alive in the
// background until revoked. Granted under an ID chosen here (lease-grant.ts), so a grant whose
// answer was lost and that etcd3 retried meets its own lease instead of granting a second one
// left to idle out its TTL; refreshed as messages on one LeaseKeepAliveStream, every third of the TTL.
import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import { grantLease } from './lease-grant';
import { LeaseKeepAliveStream } from './lease-keep-alive';

/** Refreshes that failed (etcd unreachable) are tried again this soon, until the lease would have lapsed. */
const RETRY_MS = 500;

export class ReplicaLease extends EventEmitter {
  private readonly id: Promise<string>;
  private readonly keepAlive: LeaseKeepAliveStream;
  private timer: NodeJS.Timeout | undefined;
  private lastAlive = Date.now();
  private refreshing = false;
  private ended = false;

  constructor(
    private readonly client: Etcd3,
    private readonly ttlSeconds: number,
  ) {
    super();
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1)
      throw new RangeError(`lease TTL must be a whole number of seconds >= 1, got ${ttlSeconds}`);
    this.keepAlive = new LeaseKeepAliveStream(client);
    this.id = grantLease(client, ttlSeconds);
    this.id.then(
      (id) => {
        this.lastAlive = Date.now();
        if (this.ended) return;
        this.timer = setInterval(() => this.refresh(id), (ttlSeconds * 1000) / 3);
        this.timer.unref();
      },
      () => undefined, // grant() rejects with it
    );
  }

  /** Resolves with the lease ID once etcd granted it. */
  grant(): Promise<string> {
    return this.id;
  }

  /** Stops refreshing and revokes the lease: whatever was written under it disappears. */
  async revoke(): Promise<void> {
    this.stop();
    const id = await this.id.catch(() => undefined);
    if (id === undefined) return; // never granted
    try {
      await this.client.leaseClient.leaseRevoke({ ID: id });
    } catch (err) {
      if (!/lease not found/i.test((err as Error).message)) throw err;
    }
  }

  private refresh(id: string): void {
    if (this.refreshing || this.ended) return;
    this.refreshing = true;
    this.keepAlive
      .refresh(id)
      .then(
        (alive) => {
          if (!alive) return this.lose(new Error(`etcd no longer has lease ${id}`));
          this.lastAlive = Date.now();
          this.emit('keepaliveSucceeded');
        },
        (err: Error) => {
          // etcd unreachable: the lease may still be alive there until its TTL has passed (twice, as etcd3 allows).
          if (Date.now() - this.lastAlive > 2 * 1000 * this.ttlSeconds) return this.lose(err);
          setTimeout(() => this.refresh(id), RETRY_MS).unref();
        },
      )
      .finally(() => (this.refreshing = false));
  }

  private lose(err: Error): void {
    if (this.ended) return;
    this.stop();
    this.emit('lost', err);
  }

  private stop(): void {
    this.ended = true;
    clearInterval(this.timer);
    this.keepAlive.close();
  }
}

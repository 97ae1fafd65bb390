// One LeaseKeepAlive stream for many single refreshes: each refresh is one message on
// a stream already open, instead of a stream opened and closed per refresh (what a
// heartbeat does). etcd answers every request on the stream with its lease's ID.
import type { Etcd3, IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';
import { afterSocketsRead } from '@trellis/runtime';

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

interface Waiter {
  resolve: (alive: boolean) => void;
  reject: (err: Error) => void;
}

export class LeaseKeepAliveStream {
  private stream: Promise<KeepAliveStream> | undefined;
  /** Refreshes sent and not answered yet, by lease ID, oldest first. */
  private readonly waiting = new Map<string, Waiter[]>();

  constructor(
    private readonly client: Etcd3,
    /** A refresh unanswered this long fails, and the stream is replaced. */
    private readonly timeoutMs = 5_000,
  ) {}

  /** Restarts the lease's countdown at its full TTL; false when etcd no longer has the lease. */
  refresh(leaseId: string): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const stream = this.open();
      // No answer in time: the stream is stuck; replacing it fails what waits on it. Judged
      // after this process read its sockets: a busy turn is not a stuck stream.
      const cancelTimeout = afterSocketsRead(this.timeoutMs, () =>
        this.reset(new Error(`lease keep-alive for ${leaseId} got no answer in ${this.timeoutMs} ms`), stream),
      );
      const waiter: Waiter = {
        resolve: (alive) => (cancelTimeout(), resolve(alive)),
        reject: (err) => (cancelTimeout(), reject(err)),
      };
      const queue = this.waiting.get(leaseId);
      if (queue) queue.push(waiter);
      else this.waiting.set(leaseId, [waiter]);
      stream.then(
        (open) => open.write({ ID: leaseId }),
        (err: Error) => this.reset(err, stream),
      );
    });
  }

  /** Ends the stream; refreshes still waiting fail. */
  close(): void {
    this.reset(new Error('lease keep-alive stream closed'));
  }

  private open(): Promise<KeepAliveStream> {
    if (this.stream) return this.stream;
    const opening = this.client.leaseClient.leaseKeepAlive().then((stream) => {
      stream.on('data', (res: ILeaseKeepAliveResponse) => {
        const queue = this.waiting.get(res.ID);
        const waiter = queue?.shift();
        if (queue?.length === 0) this.waiting.delete(res.ID);
        waiter?.resolve(Number(res.TTL) > 0);
      });
      stream.on('error', (err: Error) => this.reset(err, opening));
      stream.on('end', () => this.reset(new Error('lease keep-alive stream ended'), opening));
      return stream;
    });
    this.stream = opening;
    return opening;
  }

  /**
   * Drops the stream (`only`: if it is still the current one) and fails every refresh
   * sent on it; the next refresh opens another.
   */
  private reset(err: Error, only?: Promise<KeepAliveStream>): void {
    const current = this.stream;
    if (!current || (only && only !== current)) return;
    this.stream = undefined;
    const waiters = [...this.waiting.values()].flat();
    this.waiting.clear();
    for (const waiter of waiters) waiter.reject(err);
    current.then(
      (stream) => stream.end(),
      () => undefined,
    );
  }
}

// One LeaseKeepAlive stream for many single refreshes: each refresh is one message on
// a stream already open, instead of a stream opened and closed per refresh (what a
// heartbeat does). etcd answers every request on the stream with its lease's ID.
import type { Etcd3, IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';

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
      const timer = setTimeout(
        () => this.reset(new Error(`lease keep-alive for ${leaseId} got no answer in ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      const waiter: Waiter = {
        resolve: (alive) => (clearTimeout(timer), resolve(alive)),
        reject: (err) => (clearTimeout(timer), reject(err)),
      };
      const queue = this.waiting.get(leaseId);
      if (queue) queue.push(waiter);
      else this.waiting.set(leaseId, [waiter]);
      this.open().then(
        (stream) => stream.write({ ID: leaseId }),
        (err: Error) => this.reset(err),
      );
    });
  }

  /** Ends the stream; refreshes still waiting fail. */
  close(): void {
    this.reset(new Error('lease keep-alive stream closed'));
  }

  private open(): Promise<KeepAliveStream> {
    this.stream ??= this.client.leaseClient.leaseKeepAlive().then((stream) => {
      stream.on('data', (res: ILeaseKeepAliveResponse) => {
        const queue = this.waiting.get(res.ID);
        const waiter = queue?.shift();
        if (queue?.length === 0) this.waiting.delete(res.ID);
        waiter?.resolve(Number(res.TTL) > 0);
      });
      stream.on('error', (err: Error) => this.reset(err, stream));
      stream.on('end', () => this.reset(new Error('lease keep-alive stream ended'), stream));
      return stream;
    });
    return this.stream;
  }

  /** Fails every waiting refresh and drops the stream (the next refresh opens another). */
  private reset(err: Error, only?: KeepAliveStream): void {
    const current = this.stream;
    if (!current) return;
    void current.then(
      (stream) => {
        if (only && stream !== only) return;
        this.fail(current, err);
        stream.end();
      },
      () => this.fail(current, err),
    );
  }

  private fail(stream: Promise<KeepAliveStream>, err: Error): void {
    if (this.stream !== stream) return;
    this.stream = undefined;
    const waiters = [...this.waiting.values()].flat();
    this.waiting.clear();
    for (const waiter of waiters) waiter.reject(err);
  }
}

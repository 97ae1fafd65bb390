// One LeaseKeepAlive stream for many single refreshes: each refresh is one message on
// a stream already open, instead of a stream opened and closed per refresh (what a
// heartbeat did). etcd answers every request on the stream with its lease's ID.
//
// A refresh is idempotent, so one whose stream broke (the connection dropped, no answer
// in time) is sent again on the next stream: etcd may have applied it and only its answer
// was lost, and the lease is then alive. It fails only after `attempts` streams, as etcd3
// retries a unary call, or at once on an error no retry can mend (the client closed).
import {
  castGrpcError,
  isRecoverableError,
  type Etcd3,
  type IDuplexStream,
  type ILeaseKeepAliveRequest,
  type ILeaseKeepAliveResponse,
} from 'etcd3';
import { afterSocketsRead } from '@trellis/runtime';

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

export interface LeaseKeepAliveOptions {
  /** A refresh unanswered this long (judged after this process read its sockets) replaces the stream (default 5 s). */
  timeoutMs?: number;
  /** Streams a refresh is sent on before it fails (default 3, as etcd3 makes of a unary call). */
  attempts?: number;
  /** Each stream dropped, and why: `timeout` (a refresh unanswered), `broken` (an error or end from etcd or the connection). */
  onStreamDropped?: (reason: 'timeout' | 'broken') => void;
}

/** No answer in time on an open stream: recoverable, as a lost answer is. */
class KeepAliveTimeoutError extends Error {}

/** A stream that ended without an error (etcd closed it): recoverable on the next stream. */
class KeepAliveStreamEndedError extends Error {}

interface Refresh {
  readonly leaseId: string;
  /** Streams it was sent on. */
  sent: number;
  cancelTimeout: () => void;
  readonly resolve: (alive: boolean) => void;
  readonly reject: (err: Error) => void;
}

/** Whether a refresh whose stream failed with `err` is worth sending on another. */
function worthResending(err: Error): boolean {
  return err instanceof KeepAliveTimeoutError || err instanceof KeepAliveStreamEndedError || isRecoverableError(err);
}

export class LeaseKeepAliveStream {
  private stream: Promise<KeepAliveStream> | undefined;
  /** Refreshes sent on the current stream and not answered yet, by lease ID, oldest first. */
  private readonly waiting = new Map<string, Refresh[]>();
  private readonly timeoutMs: number;
  private readonly attempts: number;

  constructor(
    private readonly client: Etcd3,
    private readonly opts: LeaseKeepAliveOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.attempts = opts.attempts ?? 3;
  }

  /** Restarts the lease's countdown at its full TTL; false when etcd no longer has the lease. */
  refresh(leaseId: string): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.send({ leaseId, sent: 0, cancelTimeout: () => undefined, resolve, reject });
    });
  }

  /** Ends the stream; refreshes still waiting fail (a refresh after it opens another). */
  close(): void {
    this.reset(new Error('lease keep-alive stream closed'), undefined, 'closed');
  }

  private send(refresh: Refresh): void {
    refresh.sent += 1;
    const stream = this.open();
    // No answer in time: the stream is stuck; replacing it resends what waits on it. Judged
    // after this process read its sockets: a busy turn is not a stuck stream.
    refresh.cancelTimeout = afterSocketsRead(this.timeoutMs, () =>
      this.reset(new KeepAliveTimeoutError(`lease keep-alive for ${refresh.leaseId} got no answer in ${this.timeoutMs} ms`), stream),
    );
    const queue = this.waiting.get(refresh.leaseId);
    if (queue) queue.push(refresh);
    else this.waiting.set(refresh.leaseId, [refresh]);
    stream.then(
      (open) => open.write({ ID: refresh.leaseId }),
      (err: Error) => this.reset(castGrpcError(err), stream),
    );
  }

  private open(): Promise<KeepAliveStream> {
    if (this.stream) return this.stream;
    const opening = this.client.leaseClient.leaseKeepAlive().then((stream) => {
      stream.on('data', (res: ILeaseKeepAliveResponse) => {
        // A late answer on a stream already replaced: its refresh was sent again on the new one.
        if (this.stream !== opening) return;
        const queue = this.waiting.get(res.ID);
        const refresh = queue?.shift();
        if (queue?.length === 0) this.waiting.delete(res.ID);
        if (!refresh) return;
        refresh.cancelTimeout();
        refresh.resolve(Number(res.TTL) > 0);
      });
      stream.on('error', (err: Error) => this.reset(castGrpcError(err), opening));
      stream.on('end', () => this.reset(new KeepAliveStreamEndedError('lease keep-alive stream ended'), opening));
      return stream;
    });
    this.stream = opening;
    return opening;
  }

  /**
   * Drops the stream (`only`: if it is still the current one). What waited on it is sent again
   * on a new one, unless the error is final or a refresh has had its attempts.
   */
  private reset(err: Error, only?: Promise<KeepAliveStream>, why: 'dropped' | 'closed' = 'dropped'): void {
    const current = this.stream;
    if (!current || (only && only !== current)) return;
    this.stream = undefined;
    const pending = [...this.waiting.values()].flat();
    this.waiting.clear();
    current.then(
      (stream) => stream.end(),
      () => undefined,
    );
    if (why === 'dropped') this.opts.onStreamDropped?.(err instanceof KeepAliveTimeoutError ? 'timeout' : 'broken');
    const resend = why === 'dropped' && worthResending(err);
    for (const refresh of pending) {
      refresh.cancelTimeout();
      if (resend && refresh.sent < this.attempts) this.send(refresh);
      else refresh.reject(err);
    }
  }
}

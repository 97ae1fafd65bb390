// EtcdProbe: asks etcd for a linearizable read with a short deadline (on each
// check(), and every second once started), so readiness follows a frozen or
// leaderless etcd within seconds. A
// watch stream alone notices only when gRPC keepalive gives up (ETCD_KEEPALIVE: up
// to 30 + 60 s), and a status call through the client's retry policy takes several
// deadlines. A busy process is not a silent etcd: the deadline is judged only after
// this process has read its sockets (afterSocketsRead).
import { afterSocketsRead } from '@trellis/runtime';
import type { EtcdClient } from './etcd-client';

/**
 * How much longer than the probe's own deadline the gRPC call may run: it only bounds a call
 * etcd never answers, since grpc-js's deadline is a plain timer and would fail a probe whose
 * answer waits unread behind a busy turn.
 */
const CALL_DEADLINE_SLACK_MS = 30_000;

export interface EtcdProbeOptions {
  /** Between probes. Default 1 s. */
  intervalMs?: number;
  /** A probe that takes longer fails. Default 2 s. */
  timeoutMs?: number;
  /** The key read (any key: only the answer matters). */
  key: string;
  onChange?: (healthy: boolean, err?: Error) => void;
}

export class EtcdProbe {
  private ok = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private inFlight: Promise<void> | undefined;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;

  constructor(
    private readonly client: EtcdClient,
    private readonly opts: EtcdProbeOptions,
  ) {
    this.intervalMs = opts.intervalMs ?? 1_000;
    this.timeoutMs = opts.timeoutMs ?? 2_000;
  }

  /** etcd answered a linearizable read within the deadline at the last probe. */
  get healthy(): boolean {
    return this.ok;
  }

  /** Probes at once, then every interval; resolves after the first probe. */
  start(): Promise<void> {
    this.stopped = false;
    const first = this.probe();
    const loop = (): void => {
      if (this.stopped) return;
      this.timer = setTimeout(() => void this.probe().finally(loop), this.intervalMs);
      this.timer.unref();
    };
    void first.finally(loop);
    return first;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Probes now (sharing a probe under way) and says whether etcd answered: for `/readyz`. */
  async check(): Promise<boolean> {
    await this.probe();
    return this.ok;
  }

  /** One probe now (concurrent callers share it). */
  probe(): Promise<void> {
    return (this.inFlight ??= this.runProbe().finally(() => (this.inFlight = undefined)));
  }

  private async runProbe(): Promise<void> {
    let cancelTimeout: (() => void) | undefined;
    const deadline = Date.now() + this.timeoutMs + CALL_DEADLINE_SLACK_MS;
    try {
      // Linearizable (serializable: false): answered only through a leader with quorum.
      // Raced against a timeout: the client's retry policy may try several times.
      await Promise.race([
        this.client.kv.range({ key: Buffer.from(this.opts.key), count_only: true, serializable: false }, { deadline }),
        new Promise<never>((_, reject) => {
          cancelTimeout = afterSocketsRead(this.timeoutMs, () => reject(new Error(`etcd did not answer within ${this.timeoutMs} ms`)));
        }),
      ]);
      this.set(true);
    } catch (err) {
      this.set(false, err as Error);
    } finally {
      cancelTimeout?.();
    }
  }

  private set(healthy: boolean, err?: Error): void {
    if (this.ok === healthy) return;
    this.ok = healthy;
    if (!this.stopped) this.opts.onChange?.(healthy, err);
  }
}

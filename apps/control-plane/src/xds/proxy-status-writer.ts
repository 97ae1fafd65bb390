// Writes each connected proxy's xDS status (last sent, last ACKed, last NACK with
// its error) to etcd at proxies/<service>/<nodeId>, under this replica's lease so
// the records vanish with the replica. Bounded and rate-limited: changes only mark
// a record dirty; a flush every `intervalMs` writes at most `maxWritesPerFlush`.
import { TYPE_SHORT_NAME, type XdsTypeUrl } from '@trellis/envoy-types';
import { keptAliveLease, type EtcdClient, type KeptAliveLease, type MeshStore, type ProxyStatus } from '@trellis/mesh-schema';
import type { Logger } from '@trellis/runtime';
import type { StreamInfo, XdsCallbacks } from './callbacks';

const MAX_ERROR_CHARS = 4096;

export interface ProxyStatusWriterOptions {
  client: EtcdClient;
  store: MeshStore;
  controlPlaneId: string;
  logger: Logger;
  intervalMs?: number;
  maxWritesPerFlush?: number;
  leaseTtlSeconds?: number;
  onWrite?: (result: 'ok' | 'error') => void;
}

interface Tracked {
  streamId: number;
  status: ProxyStatus;
}

/** Which proxy a record is about: the etcd key is the store's business. */
interface ProxyRef {
  service: string;
  nodeId: string;
}

export class ProxyStatusWriter implements XdsCallbacks {
  private readonly tracked = new Map<string, Tracked>();
  private readonly dirty = new Set<string>();
  /** Proxies whose stream closed; their records are deleted at the next flush unless a new stream took them. */
  private readonly gone = new Map<string, ProxyRef>();
  private lease: KeptAliveLease | undefined;
  private leaseId: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The flush under way; close() waits for it so no write races the lease revocation or the etcd client closing. */
  private inFlight: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: ProxyStatusWriterOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.options.intervalMs ?? 1000);
    this.timer.unref();
  }

  onStreamOpen(stream: StreamInfo): void {
    const key = this.key(stream);
    const now = new Date().toISOString();
    this.tracked.set(key, {
      streamId: stream.streamId,
      status: {
        service: stream.identity.service,
        nodeId: stream.nodeId.slice(0, 256),
        controlPlane: this.options.controlPlaneId.slice(0, 256),
        connectedAt: stream.connectedAt.toISOString(),
        updatedAt: now,
        types: {},
      },
    });
    this.gone.delete(key);
    this.dirty.add(key);
  }

  onStreamClosed(stream: StreamInfo): void {
    const key = this.key(stream);
    const tracked = this.tracked.get(key);
    if (tracked?.streamId !== stream.streamId) return; // a newer stream of the same node owns it
    this.tracked.delete(key);
    this.dirty.delete(key);
    this.gone.set(key, { service: tracked.status.service, nodeId: tracked.status.nodeId });
  }

  onResponse(stream: StreamInfo, response: { typeUrl: XdsTypeUrl; version: string; meshRevision: string }): void {
    this.update(stream, response.typeUrl, (t, status) => {
      t.lastSentVersion = response.version;
      status.meshRevision = response.meshRevision.slice(0, 32);
    });
  }

  onAck(stream: StreamInfo, typeUrl: XdsTypeUrl, version: string): void {
    this.update(stream, typeUrl, (t) => {
      t.lastAckedVersion = version;
    });
  }

  onNack(stream: StreamInfo, typeUrl: XdsTypeUrl, version: string, error: string, meshRevision: string): void {
    this.update(stream, typeUrl, (t) => {
      t.lastNack = {
        version,
        error: error.slice(0, MAX_ERROR_CHARS),
        at: new Date().toISOString(),
        // Kept here because the record-level meshRevision moves on with the next push.
        ...(meshRevision ? { meshRevision } : {}),
      };
    });
  }

  /** Writes what is dirty now (also called by tests); while a flush runs, waits for that one. */
  flush(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.inFlight ??= this.flushOnce().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async flushOnce(): Promise<void> {
    try {
      const budget = this.options.maxWritesPerFlush ?? 200;
      let writes = 0;
      // Deletions first: a closed stream's record must not outlive it behind a backlog of updates.
      for (const [key, proxy] of [...this.gone]) {
        if (writes >= budget || this.closed) break;
        writes++;
        this.gone.delete(key);
        if (this.tracked.has(key)) continue;
        await this.write(
          () => this.options.store.deleteProxyStatus(proxy.service, proxy.nodeId),
          () => this.gone.set(key, proxy),
        );
      }
      if (this.dirty.size > 0 && writes < budget) {
        const leaseId = await this.ensureLease();
        for (const key of [...this.dirty]) {
          if (writes >= budget || this.closed) break;
          writes++;
          this.dirty.delete(key);
          const tracked = this.tracked.get(key);
          if (!tracked) continue;
          await this.write(
            () => this.options.store.putProxyStatus(tracked.status, leaseId),
            () => this.tracked.has(key) && this.dirty.add(key),
          );
        }
      }
    } catch (err) {
      this.options.logger.warn({ err }, 'proxy status flush failed; will retry');
    }
  }

  /** Revokes the lease: every status this replica wrote disappears at once. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.inFlight;
    const lease = this.lease;
    this.lease = undefined;
    if (lease) await lease.revoke().catch((err: unknown) => this.options.logger.warn({ err }, 'proxy status lease revoke failed'));
  }

  /** One entry per proxy (service names hold no '/'); a reconnecting node takes over its entry. */
  private key(stream: StreamInfo): string {
    return `${stream.identity.service}/${stream.nodeId.slice(0, 256)}`;
  }

  private update(
    stream: StreamInfo,
    typeUrl: XdsTypeUrl,
    change: (t: NonNullable<ProxyStatus['types']['lds']>, status: ProxyStatus) => void,
  ): void {
    const key = this.key(stream);
    const tracked = this.tracked.get(key);
    if (!tracked || tracked.streamId !== stream.streamId) return;
    const short = TYPE_SHORT_NAME[typeUrl] as keyof ProxyStatus['types'];
    const type = (tracked.status.types[short] ??= {});
    change(type, tracked.status);
    tracked.status.updatedAt = new Date().toISOString();
    this.dirty.add(key);
  }

  /** One etcd operation; on failure the key is queued again and the flush stops (etcd is likely away). */
  private async write(op: () => Promise<unknown>, requeue: () => unknown): Promise<void> {
    try {
      await op();
      this.options.onWrite?.('ok');
    } catch (err) {
      this.options.onWrite?.('error');
      requeue();
      throw err;
    }
  }

  private async ensureLease(): Promise<string> {
    if (this.lease && this.leaseId) return this.leaseId;
    const lease = keptAliveLease(this.options.client, this.options.leaseTtlSeconds ?? 30);
    lease.on('lost', (err) => {
      if (this.lease !== lease) return;
      // etcd forgot the lease (long outage): start a new one and write every status again.
      this.options.logger.warn({ err }, 'proxy status lease lost; re-registering all statuses');
      this.lease = undefined;
      this.leaseId = undefined;
      for (const key of this.tracked.keys()) this.dirty.add(key);
    });
    this.lease = lease;
    try {
      this.leaseId = await lease.grant();
    } catch (err) {
      this.lease = undefined;
      throw err;
    }
    return this.leaseId;
  }
}

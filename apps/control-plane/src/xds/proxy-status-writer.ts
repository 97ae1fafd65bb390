// Writes each xDS stream's status (last sent, last ACKed, last NACK with its error)
// to etcd at proxies/<service>/<nodeId>/<stream>, under this replica's lease so the
// records vanish with the replica. A record belongs to the stream that wrote it: a
// second stream claiming a node id that is already streaming gets its own record,
// and its updates or its end never touch the first's. Bounded and rate-limited:
// changes only mark a record dirty (cheap: an ACK is one field set, the time kept as
// a number); a flush every `intervalMs` writes at most `maxWritesPerFlush` records,
// up to WRITES_PER_TXN of them in one etcd txn. The registry needs the records
// eventually right, not one etcd write per ACK. Records are observability, below
// configuration: a flush that falls due while the xDS fan-out has identities to
// translate (a connection storm, a change) or streams are still being answered yields
// to it, up to `maxDeferMs` in a row (statusFlushYields); nothing is dropped, the
// records wait in the backlog as they are.
import { ADS_PUSH_ORDER, TYPE_SHORT_NAME, type XdsTypeUrl } from '@trellis/envoy-types';
import {
  keptAliveLease,
  MAX_NACK_ERROR_CHARS,
  type EtcdClient,
  type KeptAliveLease,
  type MeshStore,
  type ProxyStatus,
  type ProxyStatusRef,
  type StreamProxyStatus,
} from '@trellis/mesh-schema';
import type { Logger } from '@trellis/runtime';
import type { StreamInfo, XdsCallbacks } from './callbacks';
import type { PushActivity } from './snapshot-cache';

export interface ProxyStatusWriterOptions {
  client: EtcdClient;
  store: MeshStore;
  controlPlaneId: string;
  logger: Logger;
  intervalMs?: number;
  maxWritesPerFlush?: number;
  leaseTtlSeconds?: number;
  onWrite?: (result: 'ok' | 'error') => void;
  /** What the xDS fan-out is doing (SnapshotCache.pushActivity); without it flushes never yield. */
  pushActivity?: () => PushActivity;
  /** Longest run of flushes yielding to pushes before one writes anyway (0: never yield). */
  maxDeferMs?: number;
  /**
   * A flush yields this long after the fan-out last built an identity (a storm's streams arrive between slices) and
   * after the last xDS response (a storm's streams ask for endpoints and routes after their identities are built).
   */
  settleMs?: number;
  /** Each flush that yielded to pushes. */
  onDeferred?: () => void;
}

export interface StatusFlushPolicy {
  settleMs: number;
  maxDeferMs: number;
}

/** What the pushes are doing when a flush falls due: the fan-out's activity and the streams'. */
export interface FlushActivity extends PushActivity {
  /** Since the last xDS response was written (Infinity if none ever was). */
  msSinceResponse: number;
}

/**
 * Whether a status flush that is due now yields to xDS pushes: while identities wait to be translated (new streams'
 * first pushes, a change's fan-out), one was built within `settleMs` or a response was written within `settleMs`
 * (the storm's streams still asking for endpoints and routes, ACKing), unless flushes have already yielded for
 * `maxDeferMs` in a row — a control plane that never settles still writes its records, one flush per `maxDeferMs`.
 */
export function statusFlushYields(activity: FlushActivity, deferredForMs: number, policy: StatusFlushPolicy): boolean {
  if (deferredForMs >= policy.maxDeferMs) return false;
  return activity.pendingBuilds > 0 || activity.msSinceBuild < policy.settleMs || activity.msSinceResponse < policy.settleMs;
}

/**
 * Records per etcd txn: etcd's default limit of operations in one txn (--max-txn-ops). Each txn is one unary call,
 * and a call costs the writer ~0.9 ms of CPU beside ~15 us a record (etcd3 against a local etcd: 29 us a record in
 * txns of 64, 22 in txns of 128). An etcd with a lower limit refuses the txn; the writer then halves its txns.
 */
export const WRITES_PER_TXN = 128;

/** etcd's refusal of a txn with more operations than its --max-txn-ops. */
export function isTooManyTxnOps(err: unknown): boolean {
  return err instanceof Error && /too many operations in txn request/i.test(err.message);
}

interface Tracked {
  status: StreamProxyStatus;
  /** When the status last changed (ms since epoch); `status.updatedAt` is set from it when written. */
  updatedAtMs: number;
  /**
   * The record's entry per xDS type, at the type's TYPE_SLOT: every response and ACK finds it by index. The record's
   * `types` object is made from them when the record is written (recordTypes), not kept up to date here: adding a
   * type's key to it as the type is first answered, in whatever order that happens, met objects of many shapes
   * (a megamorphic keyed store with a new hidden class, once per stream and type: in a first push, the writer's
   * most expensive line).
   */
  slots: (TypeStatus | undefined)[];
  /** A type got its first entry since `status.types` was last made. */
  typesAdded: boolean;
  /**
   * In the writer's `dirty` set (kept equal to `dirty.has(stream)` by markDirty and every take from the set): a storm's
   * responses and ACKs find their record already waiting and skip the set.
   */
  dirty: boolean;
}

/** Each served type's index into `Tracked.slots`. */
const TYPE_SLOT = new Map<XdsTypeUrl, number>(ADS_PUSH_ORDER.map((typeUrl, i) => [typeUrl, i]));
/** The record's key for each slot. */
const SLOT_KEY = ADS_PUSH_ORDER.map((typeUrl) => TYPE_SHORT_NAME[typeUrl] as keyof ProxyStatus['types']);

export class ProxyStatusWriter implements XdsCallbacks {
  /** By stream number: one record per stream. */
  private readonly tracked = new Map<number, Tracked>();
  private readonly dirty = new Set<number>();
  /** Streams that closed; their records are deleted at the next flush. */
  private readonly gone = new Map<number, ProxyStatusRef>();
  private lease: KeptAliveLease | undefined;
  private leaseId: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The flush under way; close() waits for it so no write races the lease revocation or the etcd client closing. */
  private inFlight: Promise<void> | undefined;
  private closed = false;
  /** When the current run of flushes yielding to pushes began (Date.now()), if one is under way. */
  private deferredSince: number | undefined;
  /** When the last xDS response was written (Date.now()). */
  private lastResponseAt = -Infinity;
  /** Records per txn: WRITES_PER_TXN, halved each time etcd refuses a txn as too large. */
  private writesPerTxn = WRITES_PER_TXN;

  constructor(private readonly options: ProxyStatusWriterOptions) {}

  /** Records waiting for a flush: changed or ended streams not yet written. */
  get backlog(): number {
    return this.dirty.size + this.gone.size;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.intervalMs ?? 1000);
    this.timer.unref();
  }

  onStreamOpen(stream: StreamInfo): void {
    const controlPlane = this.options.controlPlaneId.slice(0, 256);
    // The stream's status changes first as it opens: one date, formatted once (a flush writes updatedAt from updatedAtMs).
    const connectedAt = stream.connectedAt.toISOString();
    const tracked: Tracked = {
      updatedAtMs: stream.connectedAt.getTime(),
      slots: ADS_PUSH_ORDER.map(() => undefined),
      typesAdded: false,
      dirty: false,
      status: {
        service: stream.identity.service,
        nodeId: stream.nodeId.slice(0, 256),
        controlPlane,
        stream: `${controlPlane}/${stream.streamId}`,
        connectedAt,
        updatedAt: connectedAt,
        // Every key in the schema's order from the start: the store then serializes the record as it is
        // (ProxyStatusEncoder) instead of parsing it with the schema again at every write.
        meshRevision: undefined,
        types: {},
      },
    };
    this.tracked.set(stream.streamId, tracked);
    this.markDirty(stream.streamId, tracked);
  }

  onStreamClosed(stream: StreamInfo): void {
    const tracked = this.tracked.get(stream.streamId);
    if (!tracked) return;
    this.tracked.delete(stream.streamId);
    this.dirty.delete(stream.streamId);
    const { service, nodeId, stream: id } = tracked.status;
    this.gone.set(stream.streamId, { service, nodeId, stream: id });
  }

  onResponse(stream: StreamInfo, response: { typeUrl: XdsTypeUrl; version: string; meshRevision: string }): void {
    const now = Date.now();
    this.lastResponseAt = now;
    const tracked = this.tracked.get(stream.streamId);
    if (!tracked) return;
    typeStatus(tracked, response.typeUrl).lastSentVersion = response.version;
    if (tracked.status.meshRevision !== response.meshRevision) tracked.status.meshRevision = response.meshRevision.slice(0, 32);
    this.touch(stream.streamId, tracked, now);
  }

  onAck(stream: StreamInfo, typeUrl: XdsTypeUrl, version: string): void {
    const tracked = this.tracked.get(stream.streamId);
    if (!tracked) return;
    typeStatus(tracked, typeUrl).lastAckedVersion = version;
    this.touch(stream.streamId, tracked);
  }

  onNack(stream: StreamInfo, typeUrl: XdsTypeUrl, version: string, error: string, meshRevision: string): void {
    const tracked = this.tracked.get(stream.streamId);
    if (!tracked) return;
    typeStatus(tracked, typeUrl).lastNack = {
      version,
      error: boundedNackError(error),
      at: new Date().toISOString(),
      // Kept here because the record-level meshRevision moves on with the next push.
      ...(meshRevision ? { meshRevision } : {}),
    };
    this.touch(stream.streamId, tracked);
  }

  /** A flush falls due: it writes, or yields to the xDS pushes under way (statusFlushYields). */
  private tick(): void {
    const { pushActivity, maxDeferMs = 10_000, settleMs = 250 } = this.options;
    if (pushActivity && this.backlog > 0) {
      const now = Date.now();
      const activity = { ...pushActivity(), msSinceResponse: now - this.lastResponseAt };
      if (statusFlushYields(activity, now - (this.deferredSince ?? now), { settleMs, maxDeferMs })) {
        this.deferredSince ??= now;
        this.options.onDeferred?.();
        return;
      }
    }
    this.deferredSince = undefined;
    void this.flush();
  }

  /** Writes what is dirty now (also called by tests); while a flush runs, waits for that one. */
  flush(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.inFlight ??= this.flushOnce().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async flushOnce(): Promise<void> {
    try {
      let budget = this.options.maxWritesPerFlush ?? 200;
      while (budget > 0 && !this.closed && (this.gone.size > 0 || this.dirty.size > 0)) {
        const room = Math.min(budget, this.writesPerTxn);
        const leaseId = this.dirty.size > 0 && this.gone.size < room ? await this.ensureLease() : undefined;
        // Deletions first: a closed stream's record must not outlive it behind a backlog of updates.
        const deletes = take(this.gone, room);
        const taken = leaseId === undefined ? [] : take(this.dirty, room - deletes.length);
        budget -= deletes.length + taken.length;
        const puts: [number, StreamProxyStatus][] = [];
        for (const [key] of taken) {
          const tracked = this.tracked.get(key);
          if (!tracked) continue;
          tracked.dirty = false;
          tracked.status.updatedAt = new Date(tracked.updatedAtMs).toISOString();
          if (tracked.typesAdded) recordTypes(tracked);
          puts.push([key, tracked.status]);
        }
        if (deletes.length + puts.length === 0) continue;
        try {
          await this.write(deletes, puts, leaseId);
        } catch (err) {
          // The records are queued again; this flush goes on with smaller txns.
          if (!isTooManyTxnOps(err) || this.writesPerTxn === 1) throw err;
          this.writesPerTxn = Math.max(1, Math.floor(this.writesPerTxn / 2));
          this.options.logger.warn(
            { err, writesPerTxn: this.writesPerTxn },
            'etcd refused a proxy status txn as too large (its --max-txn-ops); writing smaller txns',
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

  /** Every response and ACK lands here (thousands a second in a connection storm): a field, a number, a set entry. */
  private touch(streamId: number, tracked: Tracked, now = Date.now()): void {
    tracked.updatedAtMs = now;
    if (!tracked.dirty) this.markDirty(streamId, tracked);
  }

  /** Queues a record for the next flush (a record already queued keeps its place: the longest waiting go first). */
  private markDirty(streamId: number, tracked: Tracked): void {
    tracked.dirty = true;
    this.dirty.add(streamId);
  }

  /** One etcd txn; on failure every record in it is queued again and the flush stops (etcd is likely away). */
  private async write(
    deletes: [number, ProxyStatusRef][],
    puts: [number, StreamProxyStatus][],
    leaseId: string | undefined,
  ): Promise<void> {
    const count = (result: 'ok' | 'error', n: number): void => {
      for (let i = 0; i < n; i++) this.options.onWrite?.(result);
    };
    try {
      const { invalid } = await this.options.store.writeProxyStatuses(
        puts.map(([, status]) => status),
        deletes.map(([, ref]) => ref),
        leaseId,
      );
      // Built from what the proxy sent (node id, NACK text) and cut to size: never expected, and never retried.
      for (const { status, error } of invalid)
        this.options.logger.warn({ err: error, service: status.service, nodeId: status.nodeId }, 'proxy status left out: invalid record');
      count('ok', deletes.length + puts.length - invalid.length);
      count('error', invalid.length);
    } catch (err) {
      count('error', deletes.length + puts.length);
      for (const [key, ref] of deletes) this.gone.set(key, ref);
      for (const [key] of puts) {
        const tracked = this.tracked.get(key);
        if (tracked) this.markDirty(key, tracked);
      }
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
      this.tracked.forEach((tracked, key) => this.markDirty(key, tracked));
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

type TypeStatus = NonNullable<ProxyStatus['types']['lds']>;

/** The record's entry for one xDS type, made on first use (it joins the record's `types` when that is next written). */
function typeStatus(tracked: Tracked, typeUrl: XdsTypeUrl): TypeStatus {
  const slot = TYPE_SLOT.get(typeUrl)!;
  let entry = tracked.slots[slot];
  if (entry === undefined) {
    entry = { lastSentVersion: undefined, lastAckedVersion: undefined, lastNack: undefined };
    tracked.slots[slot] = entry;
    tracked.typesAdded = true;
  }
  return entry;
}

/** The record's `types` from the stream's entries, keyed by short name in push order (the entries are shared, not copied). */
function recordTypes(tracked: Tracked): void {
  const types: ProxyStatus['types'] = {};
  tracked.slots.forEach((entry, slot) => {
    if (entry) types[SLOT_KEY[slot]!] = entry;
  });
  tracked.status.types = types;
  tracked.typesAdded = false;
}

/**
 * A NACK's error as stored: the proxy chose the text, so it is cut to
 * MAX_NACK_ERROR_CHARS and control characters other than newline and tab become spaces.
 */
export function boundedNackError(error: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is replaced
  const clean = error.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, ' ');
  return clean.length <= MAX_NACK_ERROR_CHARS ? clean : `${clean.slice(0, MAX_NACK_ERROR_CHARS - 1)}…`;
}

/** Removes and returns the first `n` entries (insertion order: the longest waiting first). */
function take<K, V>(from: Map<K, V> | Set<K>, n: number): [K, V][] {
  const taken: [K, V][] = [];
  for (const entry of from.entries()) {
    if (taken.length >= n) break;
    taken.push(entry as [K, V]);
  }
  for (const [key] of taken) from.delete(key);
  return taken;
}

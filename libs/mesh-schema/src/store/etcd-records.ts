// The etcd side every record family shares: one client, one key layout, and the
// three write paths (txn, put, delete) that report each committed revision once.
import {
  type Etcd3,
  type ICompare,
  type IDeleteRangeRequest,
  type IKeyValue,
  type IPutRequest,
  type IRequestOp,
  type ITxnRequest,
  type ITxnResponse,
} from 'etcd3';
import type { z } from 'zod';
import type { Logger } from '@trellis/runtime';
import { decodeKv, encodeValue, type Versioned } from '../codec';
import { prefixEnd, rangePrefix } from '../etcd-client';
import { InvalidRecordError } from '../errors';
import type { KeyLayout } from '../keys';
import type { WrittenValues } from '../written-values';
import { LeaseKeepAliveStream } from './lease-keep-alive';
import type { LeasePool } from './lease-pool';

export interface MeshStoreOptions {
  /** Where skipped invalid records are reported. */
  logger?: Pick<Logger, 'warn'>;
  /** Clock for change timestamps. */
  now?: () => Date;
  /**
   * Called with the etcd revision of every write this store commits (a txn that
   * wrote nothing is not reported): a reader serving from a watch mirror waits
   * for the mirror to reach it, so a writer reads its own writes.
   */
  onCommit?: (revision: string) => void;
  /** Leases granted ahead for instance registrations (the registry's); without it each registration grants its own. */
  leasePool?: LeasePool;
  /**
   * Where service and instance records are remembered, checked, just before they are
   * written: the same object as this process's MeshWatcher's, whose mirror then takes
   * them instead of parsing the watch event's bytes again.
   */
  writtenValues?: WrittenValues;
}

/**
 * Schema check before any key is built from the value, so a bad name is reported
 * as an InvalidRecordError naming the field rather than as a refused key segment.
 */
export function validateFirst<S extends z.ZodType>(schema: S, what: string, value: z.input<S>): z.output<S> {
  return encodeValue(schema, what, value).value;
}

/** Attempts of an unconditional read-modify-write before giving up on a contended key. */
export const MAX_RACE_RETRIES = 10;

/** `key` as bytes is written as it is (etcd3 only reads it): a caller may keep a key it writes often. */
export const put = (key: string | Buffer, value: Buffer, lease?: string): IRequestOp => ({
  request_put: { key: typeof key === 'string' ? Buffer.from(key) : key, value, ...(lease ? { lease } : {}) },
});
export const modRevisionIs = (key: string, revision: string): ICompare => ({
  key: Buffer.from(key),
  target: 'Mod',
  result: 'Equal',
  mod_revision: revision,
});
/** No key under `prefix` was written after `revision` (etcd compares every key in the range). */
export const rangeUnchangedSince = (prefix: string, revision: string): ICompare => ({
  key: Buffer.from(prefix),
  range_end: Buffer.from(prefixEnd(prefix)),
  target: 'Mod',
  result: 'Less',
  mod_revision: (BigInt(revision) + 1n).toString(),
});
export const absent = (key: string): ICompare => ({ key: Buffer.from(key), target: 'Create', result: 'Equal', create_revision: 0 });
/** No key exists under `prefix` (etcd compares every key in the range; an empty range compares as absent). */
export const noKeyUnder = (prefix: string): ICompare => ({
  key: Buffer.from(prefix),
  range_end: Buffer.from(prefixEnd(prefix)),
  target: 'Create',
  result: 'Equal',
  create_revision: 0,
});

export class EtcdRecords {
  readonly logger: Pick<Logger, 'warn'> | undefined;
  readonly now: () => Date;
  private readonly onCommit: ((revision: string) => void) | undefined;
  readonly leasePool: LeasePool | undefined;
  readonly writtenValues: WrittenValues | undefined;
  /**
   * Where heartbeats refresh leases: one long-lived stream, the lease pool's when there is one (the registry's), so
   * the registry keeps one keep-alive stream for every heartbeat and pooled lease rather than a stream per heartbeat.
   */
  private readonly keepAlive: Pick<LeaseKeepAliveStream, 'refresh'>;

  constructor(
    readonly client: Etcd3,
    readonly layout: KeyLayout,
    opts: MeshStoreOptions = {},
  ) {
    this.logger = opts.logger;
    this.now = opts.now ?? (() => new Date());
    this.onCommit = opts.onCommit;
    this.leasePool = opts.leasePool;
    this.writtenValues = opts.writtenValues;
    this.keepAlive = opts.leasePool ?? new LeaseKeepAliveStream(client);
  }

  // Every write goes through these three, so each committed revision is reported once.
  async txn(req: ITxnRequest): Promise<ITxnResponse> {
    const res = await this.client.kv.txn(req);
    const wrote = res.responses.some((r) => r.response_put || Number(r.response_delete_range?.deleted ?? 0) > 0);
    if (res.succeeded && wrote) this.onCommit?.(res.header.revision);
    return res;
  }
  /** A write of this store that etcd committed at `revision`, whose answer was lost and that a retry found. */
  committedEarlier(revision: string): void {
    this.onCommit?.(revision);
  }
  async putKv(req: IPutRequest): Promise<void> {
    const res = await this.client.kv.put(req);
    this.onCommit?.(res.header.revision);
  }
  async deleteKv(req: IDeleteRangeRequest): Promise<void> {
    const res = await this.client.kv.deleteRange(req);
    if (Number(res.deleted) > 0) this.onCommit?.(res.header.revision);
  }
  async getKv(key: string): Promise<IKeyValue | undefined> {
    const res = await this.client.kv.range({ key: Buffer.from(key) });
    return res.kvs[0];
  }
  /** Every valid record under `prefix`; invalid ones are logged and skipped so one bad key cannot hide the rest. */
  async listVersioned<S extends z.ZodType>(schema: S, prefix: string): Promise<Versioned<z.output<S>>[]> {
    const { kvs } = await rangePrefix(this.client, prefix);
    const out: Versioned<z.output<S>>[] = [];
    for (const kv of kvs) {
      try {
        out.push(decodeKv(schema, kv));
      } catch (err) {
        if (!(err instanceof InvalidRecordError)) throw err;
        this.logger?.warn({ key: err.key, issues: err.issues }, 'skipping invalid record in etcd');
      }
    }
    return out;
  }
  /**
   * Restarts the lease's countdown; false when etcd no longer has it. A refresh whose answer was lost (the connection
   * dropped, no answer in time) is sent again on a new stream: etcd may have applied it, and the lease is then alive.
   */
  keepAliveOnce(leaseId: string): Promise<boolean> {
    return this.keepAlive.refresh(leaseId);
  }
  async revokeLease(leaseId: string): Promise<void> {
    try {
      await this.client.leaseClient.leaseRevoke({ ID: leaseId });
    } catch (err) {
      // Already expired or revoked: the outcome we wanted.
      if (!/lease not found/i.test((err as Error).message)) throw err;
    }
  }
}

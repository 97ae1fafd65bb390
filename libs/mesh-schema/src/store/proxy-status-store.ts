// Proxy status: what each xDS stream last ACKed or NACKed, under the control
// plane replica's lease, one key per stream.
import type { IRequestOp } from 'etcd3';
import { InvalidRecordError } from '../errors';
import { ProxyStatus } from '../records';
import { put, type EtcdRecords } from './etcd-records';
import { ProxyStatusEncoder } from './proxy-status-encoder';

/** A stream's status record: the status and the stream it belongs to. */
export type StreamProxyStatus = ProxyStatus & { stream: string };

/** Which stream's record (the etcd key is the store's business). */
export interface ProxyStatusRef {
  service: string;
  nodeId: string;
  stream: string;
}

/** A record's etcd key as written, and the fields it was built from. */
interface RecordKey {
  service: string;
  nodeId: string;
  stream: string;
  bytes: Buffer;
}

export class ProxyStatusStore {
  /** Parses a record with the schema once; its later writes check only what can have changed. */
  private readonly encoder = new ProxyStatusEncoder();
  /**
   * Each record object's key, built once: a writer keeps one object per stream and writes it at every flush its
   * stream is dirty in (at 5,000 streams, a change rewrites the records of every affected stream), and the key's
   * escaping, string and bytes were part of what each change left in the old generation.
   */
  private readonly keys = new WeakMap<object, RecordKey>();

  constructor(private readonly records: EtcdRecords) {}

  /**
   * Writes a stream's proxy status under the control plane replica's lease (gone when the
   * replica is), at a key of its own stream: another stream's record is never touched.
   */
  async putProxyStatus(status: ProxyStatus & { stream: string }, leaseId: string): Promise<void> {
    const bytes = this.encoder.encode(status);
    const key = this.records.layout.proxyStatus(status.service, status.nodeId, status.stream);
    await this.records.putKv({ key: Buffer.from(key), value: bytes, lease: leaseId });
  }
  /** Removes one stream's proxy status (it closed); a status that is already gone is fine. */
  async deleteProxyStatus(service: string, nodeId: string, stream: string): Promise<void> {
    await this.records.deleteKv({ key: Buffer.from(this.records.layout.proxyStatus(service, nodeId, stream)) });
  }
  /**
   * Writes several streams' statuses and removes several closed streams' records in one
   * etcd txn: one round trip for a whole flush of the control plane's status writer, not
   * one per stream. A status that fails the schema is left out (returned with the reason);
   * the rest is written. At most etcd's txn limit (128 operations by default) in one call.
   */
  async writeProxyStatuses(
    puts: readonly StreamProxyStatus[],
    deletes: readonly ProxyStatusRef[],
    leaseId: string | undefined,
  ): Promise<{ invalid: { status: StreamProxyStatus; error: InvalidRecordError }[] }> {
    const invalid: { status: StreamProxyStatus; error: InvalidRecordError }[] = [];
    const ops: IRequestOp[] = deletes.map((ref) => ({
      request_delete_range: { key: Buffer.from(this.records.layout.proxyStatus(ref.service, ref.nodeId, ref.stream)) },
    }));
    for (const status of puts) {
      try {
        const value = this.encoder.encode(status);
        ops.push(put(this.keyOf(status), value, leaseId));
      } catch (error) {
        if (!(error instanceof InvalidRecordError)) throw error;
        invalid.push({ status, error });
      }
    }
    if (ops.length > 0) await this.records.txn({ compare: [], success: ops });
    return { invalid };
  }
  /** The record's key, reused while the record's service, node id and stream are the strings it was built from. */
  private keyOf(status: StreamProxyStatus): Buffer {
    const known = this.keys.get(status);
    if (known !== undefined && known.service === status.service && known.nodeId === status.nodeId && known.stream === status.stream)
      return known.bytes;
    const { service, nodeId, stream } = status;
    const bytes = Buffer.from(this.records.layout.proxyStatus(service, nodeId, stream));
    this.keys.set(status, { service, nodeId, stream, bytes });
    return bytes;
  }
  /** Every stream's record, also those replicas before the move to the status range still write (legacyProxyStatuses). */
  async listProxyStatuses(service?: string): Promise<ProxyStatus[]> {
    const { layout } = this.records;
    const prefixes =
      service === undefined
        ? [layout.proxyStatuses(), layout.legacyProxyStatuses()]
        : [layout.proxyStatusesOf(service), layout.legacyProxyStatusesOf(service)];
    const listed = await Promise.all(prefixes.map((prefix) => this.records.listVersioned(ProxyStatus, prefix)));
    return listed.flat().map((v) => v.value);
  }
}

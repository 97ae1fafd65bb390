// Instances under their leases: registration, heartbeat, drain, deregistration
// (with a tombstone, so readers can tell it from a lease expiry).
import type { IKeyValue } from 'etcd3';
import { decodeKv, encodeValue } from '../codec';
import { NotFoundError, RevisionMismatchError } from '../errors';
import { DEREGISTRATION_TTL_SECONDS, InstanceDeregistration, InstanceRecord, type InstanceRecordInput } from '../records';
import { MAX_RACE_RETRIES, modRevisionIs, put, validateFirst, type EtcdRecords } from './etcd-records';

/** An instance to register; `registeredAt` defaults to now. */
export type RegisterInstanceInput = Omit<InstanceRecordInput, 'registeredAt'> & { registeredAt?: string };

export class InstanceStore {
  constructor(private readonly records: EtcdRecords) {}

  /**
   * Puts the instance under a fresh lease of `ttlSeconds`; it disappears unless heartbeats
   * refresh that lease. With `requireService`, the txn also requires the service record to
   * exist (NotFoundError otherwise), so a registration racing the service's deletion
   * cannot leave an instance behind it. `requireService: { modRevision }` requires that very
   * version of it — the one the caller decided ownership on — and a newer one is a
   * RevisionMismatchError, so the caller can decide again.
   */
  async registerInstance(
    input: RegisterInstanceInput,
    ttlSeconds: number,
    opts: { requireService?: boolean | { modRevision: string } } = {},
  ): Promise<{ record: InstanceRecord; leaseId: string }> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1)
      throw new RangeError(`instance lease TTL must be a whole number of seconds >= 1, got ${ttlSeconds}`);
    const valid = validateFirst(InstanceRecord, `instance ${JSON.stringify(`${input.service}/${input.id}`)}`, {
      ...input,
      registeredAt: input.registeredAt ?? this.records.now().toISOString(),
    });
    const key = this.records.layout.instance(valid.service, valid.id);
    const record = encodeValue(InstanceRecord, key, valid);
    const lease = await this.records.client.leaseClient.leaseGrant({ TTL: ttlSeconds });
    let previousLease: string | undefined;
    try {
      // The tombstone of an earlier deregistration goes with it: this registration's
      // lease may lapse later, and that must read as an expiry, not a deregistration.
      const serviceKey = this.records.layout.service(valid.service);
      const required = opts.requireService;
      const res = await this.records.txn({
        compare: !required
          ? []
          : required === true
            ? [{ key: Buffer.from(serviceKey), target: 'Version', result: 'Greater', version: 0 }]
            : [modRevisionIs(serviceKey, required.modRevision)],
        success: [
          { request_put: { key: Buffer.from(key), value: record.bytes, lease: lease.ID, prev_kv: true } },
          { request_delete_range: { key: Buffer.from(this.records.layout.deregistration(valid.service, valid.id)) } },
        ],
        failure: [{ request_range: { key: Buffer.from(serviceKey), keys_only: true } }],
      });
      if (!res.succeeded) {
        const now = res.responses[0]?.response_range.kvs[0];
        if (now && typeof required === 'object') throw new RevisionMismatchError(serviceKey, required.modRevision, now.mod_revision);
        throw new NotFoundError(serviceKey, `service "${valid.service}"`);
      }
      previousLease = res.responses[0]?.response_put?.prev_kv?.lease;
    } catch (err) {
      await this.records.revokeLease(lease.ID);
      throw err;
    }
    // Registering again (a restarted VM, a re-sent registration) moves the key to the
    // new lease; the old one holds nothing of ours any more, so do not leave it to idle out.
    if (previousLease && previousLease !== '0' && previousLease !== lease.ID) await this.records.revokeLease(previousLease);
    return { record: record.value, leaseId: lease.ID };
  }
  /** Refreshes the lease the instance's key is bound to; false when the instance (or its lease) is gone. */
  async heartbeatInstance(service: string, id: string): Promise<boolean> {
    const kv = await this.records.getKv(this.records.layout.instance(service, id));
    if (!kv) return false;
    if (kv.lease === '0') return true; // not leased: nothing can expire
    return this.records.keepAliveOnce(kv.lease);
  }
  /**
   * Marks the instance draining, keeping its lease (a draining instance still expires if
   * its heartbeats stop). Idempotent: an instance already draining keeps its first
   * `drainingSince`. Undefined when the instance is gone.
   */
  async drainInstance(service: string, id: string): Promise<InstanceRecord | undefined> {
    const key = this.records.layout.instance(service, id);
    for (let attempt = 0; attempt < MAX_RACE_RETRIES; attempt++) {
      const kv = await this.records.getKv(key);
      if (!kv) return undefined;
      const current = decodeKv(InstanceRecord, kv).value;
      if (current.drainingSince) return current;
      const drained = encodeValue(InstanceRecord, key, { ...current, drainingSince: this.records.now().toISOString() });
      const lease = kv.lease === '0' ? undefined : kv.lease;
      // Conditional on the record not having changed (a re-registration moves it to a new lease).
      const res = await this.records.txn({ compare: [modRevisionIs(key, kv.mod_revision)], success: [put(key, drained.bytes, lease)] });
      if (res.succeeded) return drained.value;
    }
    throw new Error(`instance "${service}/${id}": gave up after ${MAX_RACE_RETRIES} conflicting writes`);
  }
  /**
   * Deletes the instance and revokes its lease; false when it was already gone.
   * The delete commits with a tombstone (`deregistered/<service>/<id>`, own lease)
   * so readers can tell it from a lease expiry, which etcd reports the same way.
   */
  async deregisterInstance(service: string, id: string): Promise<boolean> {
    const key = this.records.layout.instance(service, id);
    const tombstoneKey = this.records.layout.deregistration(service, id);
    const tombstone = encodeValue(InstanceDeregistration, tombstoneKey, { service, id, at: this.records.now().toISOString() });
    const lease = await this.records.client.leaseClient.leaseGrant({ TTL: DEREGISTRATION_TTL_SECONDS });
    let prev: IKeyValue | undefined;
    try {
      const res = await this.records.txn({
        compare: [{ key: Buffer.from(key), target: 'Version', result: 'Greater', version: 0 }],
        success: [{ request_delete_range: { key: Buffer.from(key), prev_kv: true } }, put(tombstoneKey, tombstone.bytes, lease.ID)],
        failure: [],
      });
      prev = res.succeeded ? res.responses[0]?.response_delete_range?.prev_kvs[0] : undefined;
    } catch (err) {
      await this.records.revokeLease(lease.ID);
      throw err;
    }
    if (!prev) {
      await this.records.revokeLease(lease.ID);
      return false;
    }
    if (prev.lease !== '0') await this.records.revokeLease(prev.lease);
    return true;
  }
  async listInstances(service?: string): Promise<InstanceRecord[]> {
    const prefix = service === undefined ? this.records.layout.instances() : this.records.layout.instancesOf(service);
    return (await this.records.listVersioned(InstanceRecord, prefix)).map((v) => v.value);
  }
}

// Instances under their leases: registration, heartbeat, drain, deregistration
// (with a tombstone, so readers can tell it from a lease expiry).
import { EtcdLeaseInvalidError, type IKeyValue } from 'etcd3';
import { decodeKv, encodeValue } from '../codec';
import { NotFoundError, RevisionMismatchError } from '../errors';
import { DEREGISTRATION_TTL_SECONDS, InstanceDeregistration, InstanceRecord, type InstanceRecordInput } from '../records';
import { instanceRecordOf, type CheckedInstanceInput } from './checked-instance';
import { MAX_RACE_RETRIES, modRevisionIs, put, type EtcdRecords } from './etcd-records';
import { grantLease } from './lease-grant';

/**
 * An instance to register; `registeredAt` defaults to now. Either the whole record, checked
 * here, or a registration's fields as CheckedInstanceRegistration produced them, which are not
 * checked again.
 */
export type RegisterInstanceInput =
  | (Omit<InstanceRecordInput, 'registeredAt'> & { registeredAt?: string })
  | (Omit<CheckedInstanceInput, 'registeredAt'> & { registeredAt?: string });

export class InstanceStore {
  constructor(private readonly records: EtcdRecords) {}

  /**
   * Puts the instance under a lease of its own of `ttlSeconds` (granted now, or taken from
   * the lease pool and refreshed in the same round trip as the txn); it disappears unless
   * heartbeats refresh that lease. With `requireService`, the txn also requires the service record to
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
    const registeredAt = input.registeredAt ?? this.records.now().toISOString();
    const id = 'instance' in input ? input.instance.id : input.id;
    const valid = instanceRecordOf(
      { ...input, registeredAt },
      `instance ${JSON.stringify(`${input.service}/${id}`)}`,
      input.registeredAt === undefined,
    );
    const key = this.records.layout.instance(valid.service, valid.id);
    // InstanceRecord's output parses to itself: these are the bytes encodeValue would write (instance-store.test.ts).
    const bytes = Buffer.from(JSON.stringify(valid));
    this.records.writtenValues?.remember(key, bytes, valid);
    const putOn = (leaseId: string) => this.putOnLease(key, bytes, valid, leaseId, opts.requireService);
    /** The leases the key was on before (a re-registration): ours no more, revoked at the end. */
    const replaced: string[] = [];
    let leaseId: string | undefined;
    const pool = this.records.leasePool;
    try {
      const pooled = pool?.take(ttlSeconds);
      if (pool && pooled !== undefined) {
        // Its countdown restarts with a keep-alive sent alongside the txn, so the instance
        // expires ttlSeconds after registering, as on a lease granted for it.
        const refreshed = pool.refresh(pooled).catch(() => false);
        let put = false;
        try {
          replaced.push(await putOn(pooled));
          put = true;
        } catch (err) {
          await refreshed;
          await this.records.revokeLease(pooled);
          // A lease that lapsed in the pool is no reason to refuse: grant one below.
          if (!(err instanceof EtcdLeaseInvalidError)) throw err;
        }
        // Put on it, but etcd did not confirm the refresh: register again on a fresh lease
        // below, which moves the key there; this one is then revoked with the replaced ones.
        if (put && (await refreshed)) leaseId = pooled;
        else {
          if (put) replaced.push(pooled);
          this.records.logger?.warn(
            { leaseId: pooled, instance: `${valid.service}/${valid.id}` },
            'a pooled lease had lapsed or could not be refreshed; registering on a fresh lease',
          );
        }
      }
      if (leaseId === undefined) {
        const granted = await grantLease(this.records.client, ttlSeconds);
        try {
          replaced.push(await putOn(granted));
        } catch (err) {
          await this.records.revokeLease(granted);
          throw err;
        }
        leaseId = granted;
      }
    } finally {
      pool?.refill(ttlSeconds);
    }
    // Registering again (a restarted VM, a re-sent registration) moves the key to the
    // new lease; the old one holds nothing of ours any more, so do not leave it to idle out.
    for (const old of new Set(replaced)) if (old && old !== '0' && old !== leaseId) await this.records.revokeLease(old);
    return { record: valid, leaseId };
  }
  /**
   * The registration's txn: the record on `leaseId`, its tombstone gone, under the
   * service guard. Returns the lease the key was on before ('' when it was absent).
   */
  private async putOnLease(
    key: string,
    bytes: Buffer,
    valid: InstanceRecord,
    leaseId: string,
    required: boolean | { modRevision: string } | undefined,
  ): Promise<string> {
    // The tombstone of an earlier deregistration goes with it: this registration's
    // lease may lapse later, and that must read as an expiry, not a deregistration.
    const serviceKey = this.records.layout.service(valid.service);
    const res = await this.records.txn({
      compare: !required
        ? []
        : required === true
          ? [{ key: Buffer.from(serviceKey), target: 'Version', result: 'Greater', version: 0 }]
          : [modRevisionIs(serviceKey, required.modRevision)],
      success: [
        { request_put: { key: Buffer.from(key), value: bytes, lease: leaseId, prev_kv: true } },
        { request_delete_range: { key: Buffer.from(this.records.layout.deregistration(valid.service, valid.id)) } },
      ],
      failure: [{ request_range: { key: Buffer.from(serviceKey), keys_only: true } }, { request_range: { key: Buffer.from(key) } }],
    });
    if (!res.succeeded) {
      const mine = res.responses[1]?.response_range.kvs[0];
      // Our record on this very lease: an earlier attempt of this txn that etcd applied, whose answer was lost, before
      // the service changed (etcd3 retried it into the guard). The registration happened: answer as it, never undo it.
      if (mine?.lease === leaseId && mine.value.equals(bytes)) {
        this.records.committedEarlier(mine.mod_revision);
        return this.leaseBefore(key, mine, valid);
      }
      const now = res.responses[0]?.response_range.kvs[0];
      if (now && typeof required === 'object') throw new RevisionMismatchError(serviceKey, required.modRevision, now.mod_revision);
      throw new NotFoundError(serviceKey, `service "${valid.service}"`);
    }
    const prev = res.responses[0]?.response_put?.prev_kv;
    // On this very lease (granted or taken for this call), the key was put by an earlier attempt of this txn that etcd
    // applied and whose answer was lost (etcd3 retried it): the lease replaced is the one the key was on before that.
    return prev?.lease === leaseId ? this.leaseBefore(key, prev, valid) : (prev?.lease ?? '');
  }
  /**
   * The lease `key` was on before it was put onto `ours.lease` (read at the revisions before; '' when it was absent).
   * Also '' when etcd compacted those revisions away: that lease then lapses within its TTL.
   */
  private async leaseBefore(key: string, ours: IKeyValue, valid: InstanceRecord): Promise<string> {
    let kv: IKeyValue | undefined = ours;
    try {
      for (let attempt = 0; kv?.lease === ours.lease && attempt < MAX_RACE_RETRIES; attempt++) {
        if (kv.version === '1') return ''; // created by this call
        const before = (BigInt(kv.mod_revision) - 1n).toString();
        kv = (await this.records.client.kv.range({ key: Buffer.from(key), revision: before })).kvs[0];
      }
    } catch (err) {
      this.records.logger?.warn(
        { instance: `${valid.service}/${valid.id}`, err },
        'cannot read the lease a re-registration replaced; it lapses within its TTL',
      );
      return '';
    }
    return kv?.lease === ours.lease ? '' : (kv?.lease ?? '');
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
      if (current.drainingSince) {
        // Maybe this call's own drain, applied by etcd with its answer lost (etcd3 retried the txn into a failed
        // compare): a read after this answer waits for it, as after a drain answered at once.
        this.records.committedEarlier(kv.mod_revision);
        return current;
      }
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
    const tombstoneLease = await grantLease(this.records.client, DEREGISTRATION_TTL_SECONDS);
    /** The instance's lease, once this call deleted it ('0' when it had none or it can no longer be read). */
    let deleted: string | undefined;
    try {
      const res = await this.records.txn({
        compare: [{ key: Buffer.from(key), target: 'Version', result: 'Greater', version: 0 }],
        success: [{ request_delete_range: { key: Buffer.from(key), prev_kv: true } }, put(tombstoneKey, tombstone.bytes, tombstoneLease)],
        failure: [{ request_range: { key: Buffer.from(tombstoneKey) } }],
      });
      if (res.succeeded) deleted = res.responses[0]?.response_delete_range?.prev_kvs[0]?.lease;
      else {
        const found = res.responses[0]?.response_range.kvs[0];
        // A tombstone on the lease granted for this call: an earlier attempt that etcd applied, whose answer was lost
        // (etcd3 retried the txn). Revoking that lease as for an instance already gone would remove the tombstone too.
        if (found?.lease === tombstoneLease) {
          this.records.committedEarlier(found.mod_revision);
          deleted = await this.leaseAt(key, (BigInt(found.mod_revision) - 1n).toString(), `${service}/${id}`);
        }
      }
    } catch (err) {
      await this.records.revokeLease(tombstoneLease);
      throw err;
    }
    if (deleted === undefined) {
      await this.records.revokeLease(tombstoneLease);
      return false;
    }
    if (deleted !== '0') await this.records.revokeLease(deleted);
    return true;
  }
  /** The lease `key` was on at `revision`; '0' when it was absent or etcd compacted that revision away (it then lapses). */
  private async leaseAt(key: string, revision: string, instance: string): Promise<string> {
    try {
      return (await this.records.client.kv.range({ key: Buffer.from(key), revision })).kvs[0]?.lease ?? '0';
    } catch (err) {
      this.records.logger?.warn({ instance, revision, err }, "cannot read a deregistered instance's lease; it lapses within its TTL");
      return '0';
    }
  }
  async listInstances(service?: string): Promise<InstanceRecord[]> {
    const prefix = service === undefined ? this.records.layout.instances() : this.records.layout.instancesOf(service);
    return (await this.records.listVersioned(InstanceRecord, prefix)).map((v) => v.value);
  }
}

// MeshStore: typed, validated reads and conditional writes of every Trellis
// record in etcd. Service changes and their history entry commit in one txn.
import type { Etcd3, ICompare, IDeleteRangeRequest, IKeyValue, IPutRequest, IRequestOp, ITxnRequest, ITxnResponse } from 'etcd3';
import type { z } from 'zod';
import type { Logger } from '@trellis/runtime';
import { decodeKv, encodeValue, type Versioned } from './codec';
import { prefixEnd, rangePrefix } from './etcd-client';
import { AlreadyExistsError, HasDependentsError, HostOwnedError, InvalidRecordError, NotFoundError, RevisionMismatchError } from './errors';
import type { KeyLayout } from './keys';
import {
  AuthzPublicKey,
  dependencySince,
  DEREGISTRATION_TTL_SECONDS,
  HistoryEntry,
  HostClaim,
  InstanceDeregistration,
  InstanceRecord,
  MeshSettings,
  ProxyStatus,
  ServiceRecord,
  ServiceSpec,
  type HistoryAction,
  type InstanceRecordInput,
  type ServiceSpecInput,
} from './records';

export interface UpdateServiceOptions {
  /** Write only if the record's modRevision is still this (the ETag the caller read). */
  ifModRevision?: string;
  action?: Extract<z.infer<typeof HistoryAction>, 'update' | 'rollback'>;
  /** For a rollback: the generation whose spec is being restored. */
  restoredGeneration?: number;
  /**
   * The record the caller already holds (a watch mirror's). When its modRevision is
   * `ifModRevision` the change is built from it without reading etcd first: the txn's
   * modRevision guard still decides, and a failed guard reads and decides as usual.
   */
  known?: Versioned<ServiceRecord>;
}

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
}

/** An instance to register; `registeredAt` defaults to now. */
export type RegisterInstanceInput = Omit<InstanceRecordInput, 'registeredAt'> & { registeredAt?: string };

/** What a change needs to know about the record it replaces. */
interface CurrentService {
  generation: number;
  /** Absent when the stored record no longer parses. */
  created?: ServiceRecord['created'];
  /** The stored record, when it parses. */
  record?: ServiceRecord;
  modRevision: string;
  createRevision: string;
}

/**
 * Schema check before any key is built from the value, so a bad name is reported
 * as an InvalidRecordError naming the field rather than as a refused key segment.
 */
function validateFirst<S extends z.ZodType>(schema: S, what: string, value: z.input<S>): z.output<S> {
  return encodeValue(schema, what, value).value;
}

/** Attempts of an unconditional read-modify-write before giving up on a contended key. */
const MAX_RACE_RETRIES = 10;

const put = (key: string, value: Buffer, lease?: string): IRequestOp => ({
  request_put: { key: Buffer.from(key), value, ...(lease ? { lease } : {}) },
});
const modRevisionIs = (key: string, revision: string): ICompare => ({
  key: Buffer.from(key),
  target: 'Mod',
  result: 'Equal',
  mod_revision: revision,
});
/** No key under `prefix` was written after `revision` (etcd compares every key in the range). */
const rangeUnchangedSince = (prefix: string, revision: string): ICompare => ({
  key: Buffer.from(prefix),
  range_end: Buffer.from(prefixEnd(prefix)),
  target: 'Mod',
  result: 'Less',
  mod_revision: (BigInt(revision) + 1n).toString(),
});
const absent = (key: string): ICompare => ({ key: Buffer.from(key), target: 'Create', result: 'Equal', create_revision: 0 });

export class MeshStore {
  private readonly logger: Pick<Logger, 'warn'> | undefined;
  private readonly now: () => Date;
  private readonly onCommit: ((revision: string) => void) | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly layout: KeyLayout,
    opts: MeshStoreOptions = {},
  ) {
    this.logger = opts.logger;
    this.now = opts.now ?? (() => new Date());
    this.onCommit = opts.onCommit;
  }

  // ---- services -------------------------------------------------------------

  async getService(name: string): Promise<Versioned<ServiceRecord> | undefined> {
    const kv = await this.getKv(this.layout.service(name));
    return kv ? decodeKv(ServiceRecord, kv) : undefined;
  }

  async listServices(): Promise<Versioned<ServiceRecord>[]> {
    return this.listVersioned(ServiceRecord, this.layout.services());
  }

  /**
   * Creates generation 1 (or the next generation after a deleted predecessor's history).
   * `opts.restoredGeneration`: the create restores a deleted service's definition from
   * that generation (a rollback past a delete), and history records it as a rollback.
   */
  async createService(
    spec: ServiceSpecInput,
    actor: string,
    opts: { restoredGeneration?: number } = {},
  ): Promise<Versioned<ServiceRecord>> {
    const validSpec = validateFirst(ServiceSpec, `service ${JSON.stringify(spec.name)}`, spec);
    const key = this.layout.service(validSpec.name);
    const at = this.now().toISOString();
    for (let attempt = 0; attempt < MAX_RACE_RETRIES; attempt++) {
      const generation = (await this.lastGeneration(spec.name)) + 1;
      const record = encodeValue(ServiceRecord, key, {
        spec: validSpec,
        generation,
        created: { actor, at },
        updated: { actor, at },
        dependencySince: nextDependencySince(validSpec, generation, undefined),
      });
      const historyKey = this.layout.history(spec.name, generation);
      const history = this.historyEntry(historyKey, {
        service: spec.name,
        generation,
        action: opts.restoredGeneration !== undefined ? 'rollback' : 'create',
        actor,
        at,
        spec: record.value.spec,
        ...(opts.restoredGeneration !== undefined ? { restoredGeneration: opts.restoredGeneration } : {}),
      });
      const host = await this.hostClaimGuard(validSpec, actor, at);
      const res = await this.txn({
        compare: [absent(key), absent(historyKey), ...host.guards],
        success: [put(key, record.bytes), put(historyKey, history), ...host.ops],
      });
      if (res.succeeded) return { value: record.value, modRevision: res.header.revision, createRevision: res.header.revision };
      if (await this.getKv(key)) throw new AlreadyExistsError(key, `service "${spec.name}"`);
      // Another writer took this generation's history slot, or the host's claim changed; read again.
    }
    throw new Error(`createService(${spec.name}): gave up after ${MAX_RACE_RETRIES} conflicting attempts`);
  }

  async updateService(spec: ServiceSpecInput, actor: string, opts: UpdateServiceOptions = {}): Promise<Versioned<ServiceRecord>> {
    const validSpec = validateFirst(ServiceSpec, `service ${JSON.stringify(spec.name)}`, spec);
    const key = this.layout.service(validSpec.name);
    return this.changeService(spec.name, opts.ifModRevision, opts.known, async (current, at) => {
      const generation = current.generation + 1;
      // A corrupt record lost its creation metadata; this change becomes its creation.
      const created = current.created ?? { actor, at };
      const record = encodeValue(ServiceRecord, key, {
        spec: validSpec,
        generation,
        created,
        updated: { actor, at },
        dependencySince: nextDependencySince(validSpec, generation, current.record),
      });
      const historyKey = this.layout.history(spec.name, generation);
      const history = this.historyEntry(historyKey, {
        service: spec.name,
        generation,
        action: opts.action ?? 'update',
        actor,
        at,
        spec: validSpec,
        ...(opts.restoredGeneration !== undefined ? { restoredGeneration: opts.restoredGeneration } : {}),
      });
      const host = await this.hostClaimGuard(validSpec, actor, at);
      return { ops: [put(key, record.bytes), put(historyKey, history), ...host.ops], result: record.value, guards: host.guards };
    }).then(({ result, revision, current }) => ({ value: result, modRevision: revision, createRevision: current.createRevision }));
  }

  /**
   * Deletes the service, records a `delete` history entry, and deletes its instances in
   * the same txn (their leases are revoked right after: a heartbeat then finds nothing,
   * and re-creating the service starts with no instances). The ingress host claim goes
   * too when no other service declares that host and no admin assigned it. With
   * `refuseIfDepended`, a service that others still declare is not deleted
   * (HasDependentsError naming them). Every decision taken from the other services is
   * guarded in the txn: it fails and retries if any service record changed after the read.
   */
  async deleteService(name: string, actor: string, opts: { ifModRevision?: string; refuseIfDepended?: boolean } = {}): Promise<void> {
    const key = this.layout.service(name);
    const instances = this.layout.instancesOf(name);
    const { responses } = await this.changeService(name, opts.ifModRevision, undefined, async (current, at) => {
      const { revision, kvs } = await rangePrefix(this.client, this.layout.services());
      const others = kvs
        .flatMap((kv) => {
          try {
            return [decodeKv(ServiceRecord, kv).value.spec];
          } catch {
            return []; // a record that no longer parses declares nothing
          }
        })
        .filter((spec) => spec.name !== name);
      if (opts.refuseIfDepended) {
        const dependents = others
          .filter((spec) => spec.dependencies.some((d) => d.service === name))
          .map((spec) => spec.name)
          .sort();
        if (dependents.length > 0) throw new HasDependentsError(key, dependents);
      }
      const host = await this.hostReleaseOnDelete(current.record?.spec, others);
      const generation = current.generation + 1;
      const historyKey = this.layout.history(name, generation);
      const history = this.historyEntry(historyKey, { service: name, generation, action: 'delete', actor, at, spec: null });
      const ops: IRequestOp[] = [
        { request_delete_range: { key: Buffer.from(key) } },
        put(historyKey, history),
        // Index 2: its prev_kvs name the leases to revoke.
        { request_delete_range: { key: Buffer.from(instances), range_end: prefixEnd(instances), prev_kv: true } },
        ...host.ops,
      ];
      return { ops, result: undefined, guards: [rangeUnchangedSince(this.layout.services(), revision), ...host.guards] };
    });
    const leases = new Set((responses[2]?.response_delete_range?.prev_kvs ?? []).map((kv) => kv.lease).filter((l) => l !== '0'));
    await Promise.all([...leases].map((lease) => this.revokeLease(lease)));
  }

  async listHistory(name: string): Promise<HistoryEntry[]> {
    return (await this.listHistoryVersioned(name)).map((e) => e.value);
  }

  /**
   * The history by generation, each entry with its etcd revisions. An entry is written
   * in the same txn as the change it records, so its modRevision is the mesh revision
   * of that change: what a proxy's rejected config (`lastNack.meshRevision`) compares to.
   */
  async listHistoryVersioned(name: string): Promise<Versioned<HistoryEntry>[]> {
    const entries = await this.listVersioned(HistoryEntry, this.layout.historyOf(name));
    return entries.sort((a, b) => a.value.generation - b.value.generation);
  }

  async getHistory(name: string, generation: number): Promise<HistoryEntry | undefined> {
    const kv = await this.getKv(this.layout.history(name, generation));
    return kv ? decodeKv(HistoryEntry, kv).value : undefined;
  }

  // ---- instances ------------------------------------------------------------

  /**
   * Puts the instance under a fresh lease of `ttlSeconds`; it disappears unless heartbeats
   * refresh that lease. With `requireService`, the txn also requires the service record to
   * exist (NotFoundError otherwise), so a registration racing the service's deletion
   * cannot leave an instance behind it.
   */
  async registerInstance(
    input: RegisterInstanceInput,
    ttlSeconds: number,
    opts: { requireService?: boolean } = {},
  ): Promise<{ record: InstanceRecord; leaseId: string }> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1)
      throw new RangeError(`instance lease TTL must be a whole number of seconds >= 1, got ${ttlSeconds}`);
    const valid = validateFirst(InstanceRecord, `instance ${JSON.stringify(`${input.service}/${input.id}`)}`, {
      ...input,
      registeredAt: input.registeredAt ?? this.now().toISOString(),
    });
    const key = this.layout.instance(valid.service, valid.id);
    const record = encodeValue(InstanceRecord, key, valid);
    const lease = await this.client.leaseClient.leaseGrant({ TTL: ttlSeconds });
    let previousLease: string | undefined;
    try {
      // The tombstone of an earlier deregistration goes with it: this registration's
      // lease may lapse later, and that must read as an expiry, not a deregistration.
      const serviceKey = this.layout.service(valid.service);
      const res = await this.txn({
        compare: opts.requireService ? [{ key: Buffer.from(serviceKey), target: 'Version', result: 'Greater', version: 0 }] : [],
        success: [
          { request_put: { key: Buffer.from(key), value: record.bytes, lease: lease.ID, prev_kv: true } },
          { request_delete_range: { key: Buffer.from(this.layout.deregistration(valid.service, valid.id)) } },
        ],
        failure: [],
      });
      if (!res.succeeded) throw new NotFoundError(serviceKey, `service "${valid.service}"`);
      previousLease = res.responses[0]?.response_put?.prev_kv?.lease;
    } catch (err) {
      await this.revokeLease(lease.ID);
      throw err;
    }
    // Registering again (a restarted VM, a re-sent registration) moves the key to the
    // new lease; the old one holds nothing of ours any more, so do not leave it to idle out.
    if (previousLease && previousLease !== '0' && previousLease !== lease.ID) await this.revokeLease(previousLease);
    return { record: record.value, leaseId: lease.ID };
  }

  /** Refreshes the lease the instance's key is bound to; false when the instance (or its lease) is gone. */
  async heartbeatInstance(service: string, id: string): Promise<boolean> {
    const kv = await this.getKv(this.layout.instance(service, id));
    if (!kv) return false;
    if (kv.lease === '0') return true; // not leased: nothing can expire
    return this.keepAliveOnce(kv.lease);
  }

  /**
   * Marks the instance draining, keeping its lease (a draining instance still expires if
   * its heartbeats stop). Idempotent: an instance already draining keeps its first
   * `drainingSince`. Undefined when the instance is gone.
   */
  async drainInstance(service: string, id: string): Promise<InstanceRecord | undefined> {
    const key = this.layout.instance(service, id);
    for (let attempt = 0; attempt < MAX_RACE_RETRIES; attempt++) {
      const kv = await this.getKv(key);
      if (!kv) return undefined;
      const current = decodeKv(InstanceRecord, kv).value;
      if (current.drainingSince) return current;
      const drained = encodeValue(InstanceRecord, key, { ...current, drainingSince: this.now().toISOString() });
      const lease = kv.lease === '0' ? undefined : kv.lease;
      // Conditional on the record not having changed (a re-registration moves it to a new lease).
      const res = await this.txn({ compare: [modRevisionIs(key, kv.mod_revision)], success: [put(key, drained.bytes, lease)] });
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
    const key = this.layout.instance(service, id);
    const tombstoneKey = this.layout.deregistration(service, id);
    const tombstone = encodeValue(InstanceDeregistration, tombstoneKey, { service, id, at: this.now().toISOString() });
    const lease = await this.client.leaseClient.leaseGrant({ TTL: DEREGISTRATION_TTL_SECONDS });
    let prev: IKeyValue | undefined;
    try {
      const res = await this.txn({
        compare: [{ key: Buffer.from(key), target: 'Version', result: 'Greater', version: 0 }],
        success: [{ request_delete_range: { key: Buffer.from(key), prev_kv: true } }, put(tombstoneKey, tombstone.bytes, lease.ID)],
        failure: [],
      });
      prev = res.succeeded ? res.responses[0]?.response_delete_range?.prev_kvs[0] : undefined;
    } catch (err) {
      await this.revokeLease(lease.ID);
      throw err;
    }
    if (!prev) {
      await this.revokeLease(lease.ID);
      return false;
    }
    if (prev.lease !== '0') await this.revokeLease(prev.lease);
    return true;
  }

  async listInstances(service?: string): Promise<InstanceRecord[]> {
    const prefix = service === undefined ? this.layout.instances() : this.layout.instancesOf(service);
    return (await this.listVersioned(InstanceRecord, prefix)).map((v) => v.value);
  }

  // ---- mesh settings and authz keys ------------------------------------------

  async getMeshSettings(): Promise<MeshSettings | undefined> {
    const kv = await this.getKv(this.layout.meshSettings());
    return kv ? decodeKv(MeshSettings, kv).value : undefined;
  }

  /** Writes `defaults` only if no settings exist yet; returns what is stored either way. */
  async ensureMeshSettings(defaults: MeshSettings): Promise<MeshSettings> {
    const key = this.layout.meshSettings();
    const encoded = encodeValue(MeshSettings, key, defaults);
    const res = await this.txn({
      compare: [absent(key)],
      success: [put(key, encoded.bytes)],
      failure: [{ request_range: { key: Buffer.from(key) } }],
    });
    if (res.succeeded) return encoded.value;
    const kv = res.responses[0]?.response_range.kvs[0];
    if (!kv) return this.ensureMeshSettings(defaults); // deleted in between: try again
    return decodeKv(MeshSettings, kv).value;
  }

  async listAuthzKeys(): Promise<AuthzPublicKey[]> {
    return (await this.listVersioned(AuthzPublicKey, this.layout.authzKeys())).map((v) => v.value);
  }

  async putAuthzKey(key: AuthzPublicKey): Promise<void> {
    const etcdKey = this.layout.authzKey(validateFirst(AuthzPublicKey, `authz key ${JSON.stringify(key.kid)}`, key).kid);
    await this.putKv({ key: Buffer.from(etcdKey), value: encodeValue(AuthzPublicKey, etcdKey, key).bytes });
  }

  async deleteAuthzKey(kid: string): Promise<void> {
    await this.deleteKv({ key: Buffer.from(this.layout.authzKey(kid)) });
  }

  // ---- ingress host ownership -------------------------------------------------

  async getHostClaim(host: string): Promise<HostClaim | undefined> {
    const kv = await this.getKv(this.layout.hostClaim(host));
    return kv ? decodeKv(HostClaim, kv).value : undefined;
  }

  async listHostClaims(): Promise<HostClaim[]> {
    return (await this.listVersioned(HostClaim, this.layout.hostClaims())).map((v) => v.value);
  }

  /** An admin's decision: `host` now belongs to `team`, whoever claimed it first. */
  async assignHost(host: string, team: string, actor: string): Promise<HostClaim> {
    const valid = validateFirst(HostClaim, `host claim ${JSON.stringify(host)}`, {
      host,
      team,
      claimedBy: actor,
      at: this.now().toISOString(),
      assigned: true,
    });
    const key = this.layout.hostClaim(valid.host);
    await this.putKv({ key: Buffer.from(key), value: encodeValue(HostClaim, key, valid).bytes });
    return valid;
  }

  // ---- proxy status ----------------------------------------------------------

  /**
   * Writes a stream's proxy status under the control plane replica's lease (gone when the
   * replica is), at a key of its own stream: another stream's record is never touched.
   */
  async putProxyStatus(status: ProxyStatus & { stream: string }, leaseId: string): Promise<void> {
    const valid = validateFirst(ProxyStatus, `proxy status ${JSON.stringify(`${status.service}/${status.nodeId}`)}`, status);
    const key = this.layout.proxyStatus(valid.service, valid.nodeId, status.stream);
    await this.putKv({ key: Buffer.from(key), value: encodeValue(ProxyStatus, key, status).bytes, lease: leaseId });
  }

  /** Removes one stream's proxy status (it closed); a status that is already gone is fine. */
  async deleteProxyStatus(service: string, nodeId: string, stream: string): Promise<void> {
    await this.deleteKv({ key: Buffer.from(this.layout.proxyStatus(service, nodeId, stream)) });
  }

  async listProxyStatuses(service?: string): Promise<ProxyStatus[]> {
    const prefix = service === undefined ? this.layout.proxyStatuses() : this.layout.proxyStatusesOf(service);
    return (await this.listVersioned(ProxyStatus, prefix)).map((v) => v.value);
  }

  // ---- internals -------------------------------------------------------------

  // Every write goes through these three, so each committed revision is reported once.
  private async txn(req: ITxnRequest): Promise<ITxnResponse> {
    const res = await this.client.kv.txn(req);
    const wrote = res.responses.some((r) => r.response_put || Number(r.response_delete_range?.deleted ?? 0) > 0);
    if (res.succeeded && wrote) this.onCommit?.(res.header.revision);
    return res;
  }

  private async putKv(req: IPutRequest): Promise<void> {
    const res = await this.client.kv.put(req);
    this.onCommit?.(res.header.revision);
  }

  private async deleteKv(req: IDeleteRangeRequest): Promise<void> {
    const res = await this.client.kv.deleteRange(req);
    if (Number(res.deleted) > 0) this.onCommit?.(res.header.revision);
  }

  private async getKv(key: string): Promise<IKeyValue | undefined> {
    const res = await this.client.kv.range({ key: Buffer.from(key) });
    return res.kvs[0];
  }

  /** Every valid record under `prefix`; invalid ones are logged and skipped so one bad key cannot hide the rest. */
  private async listVersioned<S extends z.ZodType>(schema: S, prefix: string): Promise<Versioned<z.output<S>>[]> {
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
   * The txn conditions and writes that make a service's ingress host its team's: an
   * unclaimed host is claimed in the same txn (and the txn fails if someone claims it
   * first); a host the team owns must still be owned when the txn commits; another
   * team's host is refused here. A claim that no longer parses is treated as owned by
   * nobody we can name, so only an admin assignment repairs it.
   */
  private async hostClaimGuard(spec: ServiceSpec, actor: string, at: string): Promise<{ guards: ICompare[]; ops: IRequestOp[] }> {
    if (!spec.ingress) return { guards: [], ops: [] };
    const key = this.layout.hostClaim(spec.ingress.host);
    const kv = await this.getKv(key);
    if (!kv) {
      const claim = encodeValue(HostClaim, key, { host: spec.ingress.host, team: spec.team, claimedBy: actor, at, assigned: false });
      return { guards: [absent(key)], ops: [put(key, claim.bytes)] };
    }
    let owner: string;
    try {
      owner = decodeKv(HostClaim, kv).value.team;
    } catch (err) {
      if (!(err instanceof InvalidRecordError)) throw err;
      owner = '(unreadable claim)';
    }
    if (owner !== spec.team) throw new HostOwnedError(key, spec.ingress.host, owner);
    return { guards: [modRevisionIs(key, kv.mod_revision)], ops: [] };
  }

  /**
   * A deleted service's ingress host is released (its claim deleted, guarded by the
   * claim's revision) when it was the last service on that host and the claim came from
   * a first claim, not an admin's assignment, which stands until an admin changes it.
   */
  private async hostReleaseOnDelete(
    spec: ServiceSpec | undefined,
    others: ServiceSpec[],
  ): Promise<{ guards: ICompare[]; ops: IRequestOp[] }> {
    const host = spec?.ingress?.host;
    if (!host || others.some((o) => o.ingress?.host === host)) return { guards: [], ops: [] };
    const key = this.layout.hostClaim(host);
    const kv = await this.getKv(key);
    if (!kv) return { guards: [], ops: [] };
    try {
      if (decodeKv(HostClaim, kv).value.assigned) return { guards: [], ops: [] };
    } catch (err) {
      if (!(err instanceof InvalidRecordError)) throw err;
      return { guards: [], ops: [] }; // an unreadable claim is left for an admin to repair
    }
    return { guards: [modRevisionIs(key, kv.mod_revision)], ops: [{ request_delete_range: { key: Buffer.from(key) } }] };
  }

  private historyEntry(key: string, entry: z.input<typeof HistoryEntry>): Buffer {
    return encodeValue(HistoryEntry, key, entry).bytes;
  }

  /** Highest generation in the service's history (0 when it never existed). */
  private async lastGeneration(name: string): Promise<number> {
    const prefix = this.layout.historyOf(name);
    const res = await this.client.kv.range({
      key: Buffer.from(prefix),
      range_end: prefixEnd(prefix),
      limit: 1,
      sort_order: 'Descend',
      sort_target: 'Key',
    });
    const kv = res.kvs[0];
    if (!kv) return 0;
    // The key carries the generation, so even a corrupt last entry cannot stall new changes.
    const key = kv.key.toString('utf8');
    const generation = Number(this.layout.parse(key)?.id);
    if (!Number.isSafeInteger(generation) || generation < 1)
      throw new InvalidRecordError(key, ['history key does not end in a generation number']);
    return generation;
  }

  /**
   * Read-modify-write of a service record in one txn guarded by its modRevision:
   * the caller's ETag when given (a mismatch is the caller's conflict), else the
   * revision just read (a race is ours to retry). A record that no longer parses
   * can still be replaced or deleted (its generation then comes from history),
   * so an operator can always repair it through the API.
   */
  private async changeService<R>(
    name: string,
    ifModRevision: string | undefined,
    known: Versioned<ServiceRecord> | undefined,
    /** `guards`: further txn conditions; when one fails the change is read and built again. */
    build: (current: CurrentService, at: string) => Promise<{ ops: IRequestOp[]; result: R; guards?: ICompare[] }>,
  ): Promise<{ result: R; revision: string; current: CurrentService; responses: ITxnResponse['responses'] }> {
    const key = this.layout.service(name);
    for (let attempt = 0; attempt < MAX_RACE_RETRIES; attempt++) {
      const current =
        attempt === 0 && known && known.modRevision === ifModRevision
          ? knownService(known)
          : await this.readCurrentService(key, name, ifModRevision);
      const { ops, result, guards = [] } = await build(current, this.now().toISOString());
      const res = await this.txn({
        compare: [modRevisionIs(key, current.modRevision), ...guards],
        success: ops,
        failure: [{ request_range: { key: Buffer.from(key) } }],
      });
      if (res.succeeded) return { result, revision: res.header.revision, current, responses: res.responses };
      const recordChanged = res.responses[0]?.response_range.kvs[0]?.mod_revision !== current.modRevision;
      if (ifModRevision !== undefined && recordChanged) {
        const now = res.responses[0]?.response_range.kvs[0];
        throw new RevisionMismatchError(key, ifModRevision, now?.mod_revision);
      }
    }
    throw new Error(`service "${name}": gave up after ${MAX_RACE_RETRIES} conflicting writes`);
  }

  private async readCurrentService(key: string, name: string, ifModRevision: string | undefined): Promise<CurrentService> {
    const kv = await this.getKv(key);
    if (!kv) {
      if (ifModRevision !== undefined) throw new RevisionMismatchError(key, ifModRevision, undefined);
      throw new NotFoundError(key, `service "${name}"`);
    }
    if (ifModRevision !== undefined && kv.mod_revision !== ifModRevision)
      throw new RevisionMismatchError(key, ifModRevision, kv.mod_revision);
    return this.currentService(name, kv);
  }

  private async currentService(name: string, kv: IKeyValue): Promise<CurrentService> {
    const base = { modRevision: kv.mod_revision, createRevision: kv.create_revision };
    try {
      const { value } = decodeKv(ServiceRecord, kv);
      return { ...base, generation: value.generation, created: value.created, record: value };
    } catch (err) {
      if (!(err instanceof InvalidRecordError)) throw err;
      this.logger?.warn({ key: err.key, issues: err.issues }, 'replacing a service record that no longer parses');
      return { ...base, generation: await this.lastGeneration(name) };
    }
  }

  private async keepAliveOnce(leaseId: string): Promise<boolean> {
    const stream = await this.client.leaseClient.leaseKeepAlive({ deadline: Date.now() + 5_000 });
    try {
      const res = await new Promise<{ TTL: string }>((resolve, reject) => {
        stream.on('data', resolve);
        stream.on('error', reject);
        stream.on('end', () => reject(new Error(`lease keep-alive stream for ${leaseId} ended without a reply`)));
        stream.write({ ID: leaseId });
      });
      return Number(res.TTL) > 0;
    } finally {
      stream.end();
    }
  }

  private async revokeLease(leaseId: string): Promise<void> {
    try {
      await this.client.leaseClient.leaseRevoke({ ID: leaseId });
    } catch (err) {
      // Already expired or revoked: the outcome we wanted.
      if (!/lease not found/i.test((err as Error).message)) throw err;
    }
  }
}

function knownService({ value, modRevision, createRevision }: Versioned<ServiceRecord>): CurrentService {
  return { modRevision, createRevision, generation: value.generation, created: value.created, record: value };
}

/** Keeps each still-declared dependency's `since`; a newly declared one starts at this generation. */
function nextDependencySince(spec: ServiceSpec, generation: number, previous: ServiceRecord | undefined): Record<string, number> {
  const before = new Set(previous?.spec.dependencies.map((d) => d.service) ?? []);
  return Object.fromEntries(
    spec.dependencies.map((d) => [d.service, previous && before.has(d.service) ? dependencySince(previous, d.service) : generation]),
  );
}

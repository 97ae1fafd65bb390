// Services with their history and their ingress host claims: a service change,
// its history entry and its host claim commit in one txn.
import type { ICompare, IKeyValue, IRequestOp, ITxnResponse } from 'etcd3';
import type { z } from 'zod';
import { decodeKv, encodeValue, type Versioned } from '../codec';
import { prefixEnd, rangePrefix } from '../etcd-client';
import {
  AlreadyExistsError,
  HasDependentsError,
  HostOwnedError,
  InvalidRecordError,
  NotFoundError,
  RevisionMismatchError,
} from '../errors';
import {
  dependencySince,
  HistoryEntry,
  HostClaim,
  ServiceRecord,
  ServiceSpec,
  type HistoryAction,
  type ServiceSpecInput,
} from '../records';
import { HistoryEntryOfCheckedSpec, historyEntryOfRecord, isCheckedSpec, ServiceRecordOfCheckedSpec } from './checked-spec';
import {
  absent,
  MAX_RACE_RETRIES,
  modRevisionIs,
  noKeyUnder,
  put,
  rangeUnchangedSince,
  validateFirst,
  type EtcdRecords,
} from './etcd-records';

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

export class ServiceStore {
  constructor(private readonly records: EtcdRecords) {}

  async getService(name: string): Promise<Versioned<ServiceRecord> | undefined> {
    const kv = await this.records.getKv(this.records.layout.service(name));
    return kv ? decodeKv(ServiceRecord, kv) : undefined;
  }
  async listServices(): Promise<Versioned<ServiceRecord>[]> {
    return this.records.listVersioned(ServiceRecord, this.records.layout.services());
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
    const validSpec = isCheckedSpec(spec) ? spec : validateFirst(ServiceSpec, `service ${JSON.stringify(spec.name)}`, spec);
    const key = this.records.layout.service(validSpec.name);
    const historyPrefix = this.records.layout.historyOf(spec.name);
    const at = this.records.now().toISOString();
    // A name never used before has no history: the first attempt assumes generation 1 and
    // guards on an empty history prefix, so creating a new service is one etcd round trip.
    // Otherwise the failed txn returns the last history key and the next attempt continues it.
    let lastGeneration: number | undefined;
    for (let attempt = 0; attempt < MAX_RACE_RETRIES; attempt++) {
      const generation = (lastGeneration ?? 0) + 1;
      const record = encodeValue(ServiceRecordOfCheckedSpec, key, {
        spec: validSpec,
        generation,
        created: { actor, at },
        updated: { actor, at },
        dependencySince: nextDependencySince(validSpec, generation, undefined),
      });
      this.records.writtenValues?.remember(key, record.bytes, record.value);
      const historyKey = this.records.layout.history(spec.name, generation);
      const history =
        opts.restoredGeneration === undefined
          ? historyEntryOfRecord(record.value, 'create')
          : this.historyEntry(historyKey, {
              service: spec.name,
              generation,
              action: 'rollback',
              actor,
              at,
              spec: record.value.spec,
              restoredGeneration: opts.restoredGeneration,
            });
      const host = await this.hostClaimGuard(validSpec, actor, at);
      const res = await this.records.txn({
        compare: [absent(key), lastGeneration === undefined ? noKeyUnder(historyPrefix) : absent(historyKey), ...host.guards],
        success: [put(key, record.bytes), put(historyKey, history), ...host.ops],
        failure: [
          { request_range: { key: Buffer.from(key) } },
          {
            request_range: {
              key: Buffer.from(historyPrefix),
              range_end: Buffer.from(prefixEnd(historyPrefix)),
              limit: 1,
              sort_order: 'Descend',
              sort_target: 'Key',
              keys_only: true,
            },
          },
        ],
      });
      if (res.succeeded) return { value: record.value, modRevision: res.header.revision, createRevision: res.header.revision };
      const existing = res.responses[0]?.response_range.kvs[0];
      // The very bytes this call wrote (its actor, its time to the millisecond): an attempt etcd applied whose answer
      // was lost (a dropped connection), and etcd3's retry found it. The create succeeded; answering 409 would be false.
      if (existing?.value.equals(record.bytes)) {
        this.records.committedEarlier(existing.mod_revision);
        return { value: record.value, modRevision: existing.mod_revision, createRevision: existing.create_revision };
      }
      if (existing) throw new AlreadyExistsError(key, `service "${spec.name}"`);
      // The name has history (a deleted service), another writer took this generation's
      // history slot, or the host's claim changed: continue after the last generation now stored.
      const last = res.responses[1]?.response_range.kvs[0];
      lastGeneration = last ? this.generationOfHistoryKey(last.key.toString('utf8')) : 0;
    }
    throw new Error(`createService(${spec.name}): gave up after ${MAX_RACE_RETRIES} conflicting attempts`);
  }
  async updateService(spec: ServiceSpecInput, actor: string, opts: UpdateServiceOptions = {}): Promise<Versioned<ServiceRecord>> {
    const validSpec = isCheckedSpec(spec) ? spec : validateFirst(ServiceSpec, `service ${JSON.stringify(spec.name)}`, spec);
    const key = this.records.layout.service(validSpec.name);
    return this.changeService(spec.name, opts.ifModRevision, opts.known, async (current, at) => {
      const generation = current.generation + 1;
      // A corrupt record lost its creation metadata; this change becomes its creation.
      const created = current.created ?? { actor, at };
      const record = encodeValue(ServiceRecordOfCheckedSpec, key, {
        spec: validSpec,
        generation,
        created,
        updated: { actor, at },
        dependencySince: nextDependencySince(validSpec, generation, current.record),
      });
      this.records.writtenValues?.remember(key, record.bytes, record.value);
      const historyKey = this.records.layout.history(spec.name, generation);
      const action = opts.action ?? 'update';
      const history =
        action === 'update' && opts.restoredGeneration === undefined
          ? historyEntryOfRecord(record.value, 'update')
          : this.historyEntry(historyKey, {
              service: spec.name,
              generation,
              action,
              actor,
              at,
              spec: validSpec,
              ...(opts.restoredGeneration !== undefined ? { restoredGeneration: opts.restoredGeneration } : {}),
            });
      const host = await this.hostClaimGuard(validSpec, actor, at);
      return {
        ops: [put(key, record.bytes), put(historyKey, history), ...host.ops],
        result: record.value,
        guards: host.guards,
        written: { key, value: record.bytes },
      };
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
    const key = this.records.layout.service(name);
    const instances = this.records.layout.instancesOf(name);
    const { responses, revision: deleted } = await this.changeService(name, opts.ifModRevision, undefined, async (current, at) => {
      const { revision, kvs } = await rangePrefix(this.records.client, this.records.layout.services());
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
      const historyKey = this.records.layout.history(name, generation);
      const history = this.historyEntry(historyKey, { service: name, generation, action: 'delete', actor, at, spec: null });
      const ops: IRequestOp[] = [
        { request_delete_range: { key: Buffer.from(key) } },
        put(historyKey, history),
        // Index 2: its prev_kvs name the leases to revoke.
        { request_delete_range: { key: Buffer.from(instances), range_end: prefixEnd(instances), prev_kv: true } },
        ...host.ops,
      ];
      return {
        ops,
        result: undefined,
        guards: [rangeUnchangedSince(this.records.layout.services(), revision), ...host.guards],
        // The delete entry carries this call's actor and time to the millisecond: found on a retry, it is this delete.
        written: { key: historyKey, value: history },
      };
    });
    const deletedInstances = responses
      ? (responses[2]?.response_delete_range?.prev_kvs ?? [])
      : await this.instancesJustBefore(name, instances, deleted);
    const leases = new Set(deletedInstances.map((kv) => kv.lease).filter((l) => l !== '0'));
    await Promise.all([...leases].map((lease) => this.records.revokeLease(lease)));
  }
  /**
   * The instances a delete committed at `revision` removed, read as they were just before it (a delete whose answer,
   * with its prev_kvs, was lost). Empty when etcd compacted that revision away: their leases then lapse within their TTL.
   */
  private async instancesJustBefore(name: string, instances: string, revision: string): Promise<IKeyValue[]> {
    try {
      return (await rangePrefix(this.records.client, instances, (BigInt(revision) - 1n).toString())).kvs;
    } catch (err) {
      this.records.logger?.warn({ service: name, revision, err }, "cannot read a deleted service's instances; their leases lapse");
      return [];
    }
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
    const entries = await this.records.listVersioned(HistoryEntry, this.records.layout.historyOf(name));
    return entries.sort((a, b) => a.value.generation - b.value.generation);
  }
  async getHistory(name: string, generation: number): Promise<HistoryEntry | undefined> {
    const kv = await this.records.getKv(this.records.layout.history(name, generation));
    return kv ? decodeKv(HistoryEntry, kv).value : undefined;
  }
  async getHostClaim(host: string): Promise<HostClaim | undefined> {
    const kv = await this.records.getKv(this.records.layout.hostClaim(host));
    return kv ? decodeKv(HostClaim, kv).value : undefined;
  }
  async listHostClaims(): Promise<HostClaim[]> {
    return (await this.records.listVersioned(HostClaim, this.records.layout.hostClaims())).map((v) => v.value);
  }
  /** An admin's decision: `host` now belongs to `team`, whoever claimed it first. */
  async assignHost(host: string, team: string, actor: string): Promise<HostClaim> {
    const valid = validateFirst(HostClaim, `host claim ${JSON.stringify(host)}`, {
      host,
      team,
      claimedBy: actor,
      at: this.records.now().toISOString(),
      assigned: true,
    });
    const key = this.records.layout.hostClaim(valid.host);
    await this.records.putKv({ key: Buffer.from(key), value: encodeValue(HostClaim, key, valid).bytes });
    return valid;
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
    const key = this.records.layout.hostClaim(spec.ingress.host);
    const kv = await this.records.getKv(key);
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
    const key = this.records.layout.hostClaim(host);
    const kv = await this.records.getKv(key);
    if (!kv) return { guards: [], ops: [] };
    try {
      if (decodeKv(HostClaim, kv).value.assigned) return { guards: [], ops: [] };
    } catch (err) {
      if (!(err instanceof InvalidRecordError)) throw err;
      return { guards: [], ops: [] }; // an unreadable claim is left for an admin to repair
    }
    return { guards: [modRevisionIs(key, kv.mod_revision)], ops: [{ request_delete_range: { key: Buffer.from(key) } }] };
  }
  /** `entry.spec` is ServiceSpec's output (or null): see checked-spec.ts. */
  private historyEntry(key: string, entry: z.input<typeof HistoryEntryOfCheckedSpec>): Buffer {
    return encodeValue(HistoryEntryOfCheckedSpec, key, entry).bytes;
  }
  /** Highest generation in the service's history (0 when it never existed). */
  private async lastGeneration(name: string): Promise<number> {
    const prefix = this.records.layout.historyOf(name);
    const res = await this.records.client.kv.range({
      key: Buffer.from(prefix),
      range_end: prefixEnd(prefix),
      limit: 1,
      sort_order: 'Descend',
      sort_target: 'Key',
    });
    const kv = res.kvs[0];
    return kv ? this.generationOfHistoryKey(kv.key.toString('utf8')) : 0;
  }
  /** The key carries the generation, so even a corrupt last entry cannot stall new changes. */
  private generationOfHistoryKey(key: string): number {
    const generation = Number(this.records.layout.parse(key)?.id);
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
    /**
     * `guards`: further txn conditions; when one fails the change is read and built again. `written`: a key the change
     * puts and the bytes it puts there, unique to this call (its actor and time): the record, or a delete's history entry.
     */
    build: (
      current: CurrentService,
      at: string,
    ) => Promise<{ ops: IRequestOp[]; result: R; guards?: ICompare[]; written?: { key: string; value: Buffer } }>,
  ): Promise<{
    result: R;
    revision: string;
    current: CurrentService;
    /** The txn's responses; undefined when its answer was lost and a retry found the change applied. */
    responses: ITxnResponse['responses'] | undefined;
  }> {
    const key = this.records.layout.service(name);
    for (let attempt = 0; attempt < MAX_RACE_RETRIES; attempt++) {
      const current =
        attempt === 0 && known && known.modRevision === ifModRevision
          ? knownService(known)
          : await this.readCurrentService(key, name, ifModRevision);
      const { ops, result, guards = [], written } = await build(current, this.records.now().toISOString());
      const res = await this.records.txn({
        compare: [modRevisionIs(key, current.modRevision), ...guards],
        success: ops,
        failure: [
          { request_range: { key: Buffer.from(key) } },
          ...(written && written.key !== key ? [{ request_range: { key: Buffer.from(written.key) } }] : []),
        ],
      });
      if (res.succeeded) return { result, revision: res.header.revision, current, responses: res.responses };
      const stored = res.responses[0]?.response_range.kvs[0];
      // The very bytes this attempt wrote (its actor, its time to the millisecond): etcd applied it, its answer was lost
      // (a dropped connection) and etcd3's retry found it. Building again would apply the change twice, answer a
      // client's If-Match with a mismatch against its own write, or a delete with "not found".
      const mine = written?.key === key ? stored : res.responses[1]?.response_range.kvs[0];
      if (written && mine?.value.equals(written.value)) {
        this.records.committedEarlier(mine.mod_revision);
        return { result, revision: mine.mod_revision, current, responses: undefined };
      }
      const recordChanged = stored?.mod_revision !== current.modRevision;
      if (ifModRevision !== undefined && recordChanged) throw new RevisionMismatchError(key, ifModRevision, stored?.mod_revision);
    }
    throw new Error(`service "${name}": gave up after ${MAX_RACE_RETRIES} conflicting writes`);
  }
  private async readCurrentService(key: string, name: string, ifModRevision: string | undefined): Promise<CurrentService> {
    const kv = await this.records.getKv(key);
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
      this.records.logger?.warn({ key: err.key, issues: err.issues }, 'replacing a service record that no longer parses');
      return { ...base, generation: await this.lastGeneration(name) };
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

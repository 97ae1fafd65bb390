// The registry's operations on services and instances, shared by the REST API
// and the web UI: ownership checks, optimistic concurrency, dependents checks,
// rollback. Throws ProblemErrors; knows nothing about HTTP requests.
import { AlreadyExistsError, HasDependentsError, HostOwnedError, NotFoundError, RevisionMismatchError } from '@trellis/mesh-schema';
import type {
  CheckedInstanceRegistration,
  HistoryEntry,
  HostClaim,
  InstanceRecord,
  MeshStore,
  ProxyStatus,
  ServiceRecord,
  ServiceSpec,
  Versioned,
} from '@trellis/mesh-schema';
import type { Logger } from '@trellis/runtime';
import type { Principal } from './auth';
import { assertCanChange } from './auth';
import type { RegistryMetrics } from './metrics';
import { problems } from './problem';
import type { ServiceListQuery } from './api/schemas';
import { storeReads, viewReads, type MeshReads } from './reads';
import type { Topology } from './topology';
import type { RegistryView } from './view';

export class ServiceCatalog {
  constructor(
    /** Writes, and the reads a write decides on (owner, current revision), always go to etcd. */
    private readonly store: MeshStore,
    private readonly view: RegistryView,
    private readonly metrics: RegistryMetrics,
    private readonly logger: Logger,
  ) {}

  /**
   * Where this request's reads come from: the in-memory view once it holds every
   * write this process committed, else (the watch is behind or down) etcd.
   */
  async reads(): Promise<MeshReads> {
    const state = await this.view.caughtUp();
    if (state) return viewReads(this.view, state);
    this.metrics.viewFallbacks.inc();
    return storeReads(this.store);
  }

  async list(query: ServiceListQuery = {}): Promise<Versioned<ServiceRecord>[]> {
    return (await this.reads()).services(query);
  }

  async get(name: string): Promise<Versioned<ServiceRecord>> {
    return found(await (await this.reads()).service(name), name);
  }

  async find(name: string): Promise<Versioned<ServiceRecord> | undefined> {
    return (await this.reads()).service(name);
  }

  async create(principal: Principal, spec: ServiceSpec): Promise<Versioned<ServiceRecord>> {
    try {
      return await this.createRecord(principal, spec);
    } catch (err) {
      if (err instanceof AlreadyExistsError)
        throw problems.conflict(`service "${spec.name}" already exists; replace it with PUT and If-Match`);
      throw mapRevisionErrors(err, spec.name);
    }
  }

  /**
   * Creates the service when absent; replaces it when `ifMatch` names its current
   * revision. Replacing without `ifMatch` is refused (428) so no change is lost.
   */
  async put(
    principal: Principal,
    spec: ServiceSpec,
    ifMatch: string | undefined,
  ): Promise<{ created: boolean; service: Versioned<ServiceRecord> }> {
    // The version the caller names, when the view holds it, is the record the write's
    // modRevision guard will hold it to (a revision names one version of one key), so
    // ownership can be decided on it: the replace is then one etcd round trip.
    const seen = ifMatch !== undefined ? this.view.service(spec.name) : undefined;
    const current = seen && seen.modRevision === ifMatch ? seen : await this.store.getService(spec.name);
    if (!current) {
      if (ifMatch !== undefined) throw problems.preconditionFailed(`service "${spec.name}" does not exist, so it cannot match ${ifMatch}`);
      try {
        return { created: true, service: await this.createRecord(principal, spec) };
      } catch (err) {
        if (err instanceof AlreadyExistsError)
          throw problems.preconditionRequired(`service "${spec.name}" was created concurrently; fetch it and retry with If-Match`);
        throw mapRevisionErrors(err, spec.name);
      }
    }
    this.authorize(principal, [current.value.spec.team, spec.team], `service "${spec.name}"`);
    if (ifMatch === undefined) {
      throw problems.preconditionRequired(
        `service "${spec.name}" exists; send If-Match: "${current.modRevision}" (its ETag) to replace it`,
      );
    }
    return { created: false, service: await this.update(principal, spec, ifMatch, 'update', undefined, current) };
  }

  async delete(principal: Principal, name: string, ifMatch: string | undefined): Promise<void> {
    const current = found(await this.store.getService(name), name);
    this.authorize(principal, [current.value.spec.team], `service "${name}"`);
    try {
      // The store checks for dependents and deletes in one txn, so a dependency declared meanwhile is not missed.
      await this.store.deleteService(name, principal.actor, {
        refuseIfDepended: true,
        ...(ifMatch !== undefined ? { ifModRevision: ifMatch } : {}),
      });
      this.recordChange('delete', principal, name, current.value.generation + 1);
    } catch (err) {
      if (err instanceof HasDependentsError) {
        const { dependents } = err;
        throw problems.conflict(
          `service "${name}" is still called by ${dependents.map((d) => `"${d}"`).join(', ')}; remove those dependencies first`,
          {
            dependents,
          },
        );
      }
      throw mapRevisionErrors(err, name);
    }
  }

  async history(name: string): Promise<HistoryEntry[]> {
    const entries = await this.store.listHistory(name);
    if (entries.length === 0) throw problems.notFound(`service "${name}" has no history`);
    return entries.sort((a, b) => b.generation - a.generation);
  }

  /** Every change to the service with its etcd revision, oldest first; empty when it never existed. */
  async changes(name: string): Promise<Versioned<HistoryEntry>[]> {
    return this.store.listHistoryVersioned(name);
  }

  async historyEntry(name: string, generation: number): Promise<HistoryEntry> {
    const entry = await this.store.getHistory(name, generation);
    if (!entry) throw problems.notFound(`service "${name}" has no generation ${generation}`);
    return entry;
  }

  /** Restores the definition of `generation` as a new generation; a deleted service comes back. */
  async rollback(principal: Principal, name: string, generation: number, ifMatch: string | undefined): Promise<Versioned<ServiceRecord>> {
    const current = await this.store.getService(name);
    const target = await this.store.getHistory(name, generation);
    if (!current && !target) throw problems.notFound(`service "${name}" is not registered and has no history`);
    if (!target) {
      throw problems.validation(
        [{ field: 'generation', message: `service "${name}" has no generation ${generation}` }],
        'no such generation',
      );
    }
    if (!target.spec) {
      throw problems.validation([
        { field: 'generation', message: `generation ${generation} is a deletion; choose a generation with a definition` },
      ]);
    }
    if (!current) {
      // Deleted: restoring re-creates it (an If-Match cannot match a record that does not exist).
      if (ifMatch !== undefined)
        throw problems.preconditionFailed(`service "${name}" does not exist; roll back without If-Match to restore it`);
      this.authorize(principal, [target.spec.team], `service "${name}"`);
      try {
        const restored = await this.store.createService(target.spec, principal.actor, { restoredGeneration: generation });
        this.recordChange('rollback', principal, name, restored.value.generation);
        return restored;
      } catch (err) {
        throw mapRevisionErrors(err, name);
      }
    }
    this.authorize(principal, [current.value.spec.team, target.spec.team], `service "${name}"`);
    return this.update(principal, target.spec, ifMatch ?? current.modRevision, 'rollback', generation, current);
  }

  async hosts(): Promise<HostClaim[]> {
    return (await this.store.listHostClaims()).sort((a, b) => a.host.localeCompare(b.host));
  }

  /** Only an admin moves an ingress host to another team; the first claim otherwise stands. */
  async assignHost(principal: Principal, host: string, team: string): Promise<HostClaim> {
    if (principal.kind !== 'admin') {
      this.metrics.authFailures.inc({ reason: 'forbidden' });
      this.logger.warn({ actor: principal.actor, host }, 'refused host assignment: not an admin');
      throw problems.forbidden(`only an admin may assign ingress host "${host}" to a team`);
    }
    const claim = await this.store.assignHost(host, team, principal.actor);
    this.logger.info({ host, team, actor: principal.actor }, 'ingress host assigned');
    return claim;
  }

  async instances(service: string): Promise<InstanceRecord[]> {
    return (await this.reads()).instances(service);
  }

  /**
   * Instances belong to a registered service; only its team, its own credential (or admin) may
   * register them. The registration's txn requires the service, so only a team's right needs
   * the record. When the view's version says the team owns it, the txn requires that very
   * version (one etcd round trip after the lease); otherwise — the view has none, it says
   * another team, or the record changed meanwhile — it is read from etcd and decided on that.
   */
  async registerInstance(principal: Principal, service: string, input: CheckedInstanceRegistration): Promise<InstanceRecord> {
    this.authorizeInstances(principal, service);
    const { ttlSeconds, instance } = input;
    const register = async (requireService: true | { modRevision: string }) =>
      // Registered now, by the store's clock.
      (await this.store.registerInstance({ service, instance }, ttlSeconds, { requireService })).record;
    try {
      if (principal.kind !== 'team') return await register(true);
      const seen = this.view.service(service);
      if (seen?.value.spec.team === principal.team) {
        try {
          return await register({ modRevision: seen.modRevision });
        } catch (err) {
          if (!(err instanceof RevisionMismatchError)) throw err;
        }
      }
      const owner = found(await this.store.getService(service), service);
      this.authorizeInstances(principal, service, owner.value.spec.team);
      return await register({ modRevision: owner.modRevision });
    } catch (err) {
      if (err instanceof NotFoundError) throw problems.notFound(`service "${service}" is not registered`);
      if (err instanceof RevisionMismatchError) throw problems.conflict(`service "${service}" changed while registering; retry`);
      throw err;
    }
  }

  async heartbeatInstance(principal: Principal, service: string, id: string): Promise<void> {
    await this.assertOwnsInstances(principal, service);
    if (!(await this.store.heartbeatInstance(service, id)))
      throw problems.notFound(`instance "${id}" of service "${service}" is not registered (its lease may have expired)`);
  }

  /** Marks the instance draining: the control plane stops sending it new calls; its lease still runs. */
  async drainInstance(principal: Principal, service: string, id: string): Promise<InstanceRecord> {
    await this.assertOwnsInstances(principal, service);
    const drained = await this.store.drainInstance(service, id);
    if (!drained) throw problems.notFound(`instance "${id}" of service "${service}" is not registered (its lease may have expired)`);
    return drained;
  }

  async deregisterInstance(principal: Principal, service: string, id: string): Promise<void> {
    await this.assertOwnsInstances(principal, service);
    if (!(await this.store.deregisterInstance(service, id)))
      throw problems.notFound(`instance "${id}" of service "${service}" is not registered`);
  }

  async proxies(service: string): Promise<ProxyStatus[]> {
    return (await this.store.listProxyStatuses(service)).sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }

  async topology(): Promise<Topology> {
    return (await this.reads()).topology();
  }

  private async assertOwnsInstances(principal: Principal, service: string): Promise<void> {
    if (principal.kind === 'admin') return;
    // Checked before any read, so a credential learns nothing about other services.
    this.authorizeInstances(principal, service);
    if (principal.kind === 'service') return;
    // A team proves ownership through the service record (a deleted service's instances went with it).
    const owner = found(await this.store.getService(service), service);
    this.authorizeInstances(principal, service, owner.value.spec.team);
  }

  /**
   * Instances of `service` may be changed by admin, by the team owning it (`owner`, once
   * known) and by that service's own credential; a service credential for any other
   * service is refused.
   */
  private authorizeInstances(principal: Principal, service: string, owner?: string): void {
    const what = `instances of service "${service}"`;
    if (principal.kind === 'service') {
      if (principal.service === service) return;
      this.metrics.authFailures.inc({ reason: 'forbidden' });
      this.logger.warn({ actor: principal.actor, what }, "refused change: another service's credential");
      throw problems.forbidden(`the credential of service "${principal.service}" may not change ${what}`);
    }
    if (owner !== undefined) this.authorize(principal, [owner], what);
  }

  /** Every change is also in the service's history; the log line is for operators following along. */
  private recordChange(
    action: 'create' | 'update' | 'delete' | 'rollback',
    principal: Principal,
    service: string,
    generation: number,
  ): void {
    this.metrics.serviceChanges.inc({ action });
    this.logger.info({ action, service, generation, actor: principal.actor }, 'service changed');
  }

  /** Ownership check; a refusal is counted and logged before it reaches the caller. */
  private authorize(principal: Principal, teams: ReadonlyArray<string>, what: string): void {
    try {
      assertCanChange(principal, teams, what);
    } catch (err) {
      this.metrics.authFailures.inc({ reason: 'forbidden' });
      this.logger.warn({ actor: principal.actor, owners: [...new Set(teams)], what }, 'refused change: not the owner');
      throw err;
    }
  }

  private async createRecord(principal: Principal, spec: ServiceSpec): Promise<Versioned<ServiceRecord>> {
    this.authorize(principal, [spec.team], `service "${spec.name}"`);
    const created = await this.store.createService(spec, principal.actor);
    this.recordChange('create', principal, spec.name, created.value.generation);
    return created;
  }

  private async update(
    principal: Principal,
    spec: ServiceSpec,
    ifModRevision: string,
    action: 'update' | 'rollback',
    restoredGeneration: number | undefined,
    /** The record just read, so the store need not read it again. */
    known: Versioned<ServiceRecord>,
  ): Promise<Versioned<ServiceRecord>> {
    try {
      const updated = await this.store.updateService(spec, principal.actor, {
        ifModRevision,
        action,
        known,
        ...(restoredGeneration !== undefined ? { restoredGeneration } : {}),
      });
      this.recordChange(action, principal, spec.name, updated.value.generation);
      return updated;
    } catch (err) {
      throw mapRevisionErrors(err, spec.name);
    }
  }
}

function found(service: Versioned<ServiceRecord> | undefined, name: string): Versioned<ServiceRecord> {
  if (!service) throw problems.notFound(`service "${name}" is not registered`);
  return service;
}

function mapRevisionErrors(err: unknown, name: string): unknown {
  if (err instanceof RevisionMismatchError) {
    return problems.preconditionFailed(`service "${name}" changed since the revision you sent; it is now at "${err.actualModRevision}"`, {
      currentETag: `"${err.actualModRevision}"`,
    });
  }
  if (err instanceof NotFoundError) return problems.notFound(`service "${name}" is not registered`);
  if (err instanceof HostOwnedError) {
    return problems.conflict(
      `ingress host "${err.host}" belongs to team "${err.owner}"; an admin can assign it with PUT /api/v1/hosts/${err.host}`,
      { host: err.host, owner: err.owner },
    );
  }
  return err;
}

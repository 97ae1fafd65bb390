// Registry records → mesh model. Pure: the same state and settings always give
// the same model, sorted by name, so everything derived from it is deterministic.
import { callersByService, compareStrings } from '@trellis/mesh-contracts';
import {
  DEFAULT_TRUST_DOMAIN,
  dependencySince,
  type AuthzPublicKey,
  type InvalidRecord,
  type InstanceRecord,
  type Locality,
  type MeshSettings,
  type ServiceRecord,
  type TrafficPolicy,
} from '@trellis/mesh-schema';
import type {
  DependencyModel,
  MeshIndex,
  ServiceDrops,
  ServiceMemo,
  DroppedInput,
  LocalityEndpoints,
  MeshModel,
  MeshTokens,
  ServiceModel,
  TranslatorSettings,
  UpstreamModel,
} from './mesh-model';
import { canonicalDigest, digestText } from '../resource/canonical-digest';
import { OverlayMap } from './overlay-map';

/**
 * The part of the watcher's MeshState the model reads. MeshWatcher.state
 * satisfies it structurally; tests build it by hand.
 */
export interface MeshStateView {
  revision: string;
  services: ReadonlyMap<string, { value: ServiceRecord; modRevision: string }>;
  instances: ReadonlyMap<string, ReadonlyMap<string, InstanceRecord>>;
  meshSettings?: MeshSettings | undefined;
  authzKeys: ReadonlyMap<string, AuthzPublicKey>;
  /** Stored values the watcher could not use; each becomes a dropped input. */
  invalid?: ReadonlyMap<string, InvalidRecord>;
}

/**
 * `previous` (optional) is the model built before this one; `changed` (optional)
 * names the services whose record or instances changed since (the rebuild loop
 * knows them from the etcd events). With both, the work is proportional to the
 * change: only those services, the services that declare them and the services
 * whose callers changed are looked at again — no pass over the whole mesh. With
 * `previous` alone the changed services are found by comparing records (one
 * reference comparison per service). Without `previous` everything is computed.
 * The result is the same either way (build-mesh-model.test.ts checks it).
 */
export function buildMeshModel(
  state: MeshStateView,
  settings: TranslatorSettings,
  previousModel?: MeshModel,
  changed?: ReadonlySet<string>,
): MeshModel {
  const invalidDropped: DroppedInput[] = [...(state.invalid?.values() ?? [])]
    .sort((a, b) => compare(a.key, b.key))
    .map((r) => ({ kind: r.kind, name: r.name, reason: `unusable record at ${r.key}: ${r.issues.join('; ')}` }));
  const tokenDropped: DroppedInput[] = [];
  const tokens = tokensOf(state, settings, tokenDropped);
  const trustDomain = state.meshSettings?.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const sharedDigest = canonicalDigest([tokens, trustDomain, settings]);
  // What every proxy shares changed: every fingerprint changes, so start over.
  const previous =
    previousModel && previousModel.sharedDigest === sharedDigest && sameSettings(previousModel.settings, settings)
      ? previousModel
      : undefined;
  const base = previous?.index ?? EMPTY_INDEX;
  const dirty = previous ? (changed ?? changedServices(state, base)) : allServiceNames(state);

  // The previous model's maps, copied only when this build changes them: a change that
  // leaves a map alone (most changes leave most of them) costs no pass over the mesh.
  const records = new CopyOnWrite(base.records);
  const instances = new CopyOnWrite(base.instances);
  const declares = new CopyOnWrite(base.declares);
  const declaredBy = new CopyOnWrite(base.declaredBy);
  const memo = new CopyOnWrite<string, ServiceMemo>(previous?.memo ?? OverlayMap.of());
  const services = new CopyOnWrite<string, ServiceModel>(previous?.services ?? OverlayMap.of());
  const droppedOf = new CopyOnWrite(base.droppedOf);

  // 1. The changed services' own records, instances and declarations.
  const callersChanged = new Set<string>();
  const edit = setEditor(declaredBy);
  for (const name of dirty) {
    const stored = state.services.get(name);
    const record = stored?.value;
    if (record) records.set(name, record);
    else records.delete(name);
    const byId = state.instances.get(name);
    const before = base.instances.get(name);
    if (!byId || byId.size === 0) instances.delete(name);
    else if (!before || !sameInstances(before, byId)) instances.set(name, new Map(byId));
    const declared = record ? record.spec.dependencies.map((d) => d.service) : [];
    const declaredBefore = base.declares.get(name) ?? [];
    if (!sameRefs(declared, declaredBefore)) {
      for (const callee of declaredBefore) if (!declared.includes(callee)) edit(callee).delete(name);
      for (const callee of declared) if (!declaredBefore.includes(callee)) edit(callee).add(name);
      for (const callee of new Set([...declared, ...declaredBefore])) callersChanged.add(callee);
      if (record) declares.set(name, declared);
    }
    if (!record) declares.delete(name);

    if (!record || record.spec.name !== name) {
      memo.delete(name);
      continue;
    }
    const reused = memo.get(name);
    const current = instances.get(name);
    if (reused && reused.record === record && sameInstances(reused.instances, current)) continue;
    memo.set(name, serviceMemoOf(record, current));
  }

  for (const callee of callersChanged) if (declaredBy.get(callee)?.size === 0) declaredBy.delete(callee);

  // 2. Service models: the changed services and those whose callers changed.
  let added = false;
  for (const name of new Set([...dirty, ...callersChanged])) {
    const entry = memo.get(name);
    const stored = state.services.get(name);
    if (!entry || !stored) {
      services.delete(name);
      continue;
    }
    const before = services.get(name);
    if (!before) added = true;
    const spec = entry.record.spec;
    // The callers list reads the records that declare this service: unless one of them changed, it is the one before
    // (a change to a service 3,000 services call does not sort and re-digest their names).
    const declaring = declaredBy.get(name);
    const sameCallers = previous && before && !callersChanged.has(name) && !(declaring && intersects(declaring, dirty));
    services.set(
      name,
      serviceModel(
        spec,
        settings,
        services.get(name)?.dependencies ?? [],
        sameCallers ? before.callers : callersOf(name, records.current, declaredBy.current),
        entry,
        stored.modRevision,
      ),
    );
  }

  // 3. Dependencies: the changed services, and the callers of a changed service that came, went, or changed
  // protocol or port — all resolving reads of a callee. Its policy is applied at translation (dependencyPolicy),
  // so a policy or endpoint change leaves its callers' models alone; their configs change through `exposed`.
  const reresolve = new Set(dirty);
  const exposed = new Set<string>();
  for (const name of dirty) {
    const before = previous?.memo.get(name);
    const after = memo.get(name);
    if (before?.exposedDigest === after?.exposedDigest) continue;
    exposed.add(name);
    if (calleeShape(before) !== calleeShape(after)) for (const caller of declaredBy.get(name) ?? []) reresolve.add(caller);
  }
  for (const name of reresolve) {
    const service = services.get(name);
    const entry = memo.get(name);
    if (!service || !entry) continue;
    const calleeShapes = entry.record.spec.dependencies.map((dep) => calleeShape(memo.get(dep.service)));
    if (entry.dependencies && sameRefs(entry.dependencies.calleeShapes, calleeShapes)) {
      if (service.dependencies !== entry.dependencies.models) services.set(name, withDependencies(service, entry.dependencies.models));
      continue;
    }
    const resolved = resolveDependencies(entry.record, service, services.current, settings);
    memo.set(name, memoWithDependencies(entry, { calleeShapes, models: resolved.models, dropped: resolved.dropped }));
    services.set(name, withDependencies(service, resolved.models));
  }
  // A service registered since the previous model goes in its place: the model lists services by name.
  const sortedServices = added ? OverlayMap.of([...services.current].sort(([a], [b]) => compare(a, b))) : services.current;

  // 4. The identities whose own inputs were looked at again (fingerprints are computed when asked: identityFingerprint).
  const touched = new Set([...reresolve, ...callersChanged]);

  // 5. Dropped inputs, kept per service name so a change re-derives only its own.
  let dropsChanged = !previous;
  for (const name of touched) {
    const drops = dropsOf(name, state, memo.get(name), settings);
    const before = droppedOf.get(name);
    if (before ? JSON.stringify(before) === JSON.stringify(drops) : drops === undefined) continue;
    dropsChanged = true;
    if (drops) droppedOf.set(name, drops);
    else droppedOf.delete(name);
  }
  const serviceDropped = dropsChanged ? assembleDrops(droppedOf.current) : base.serviceDropped;

  return {
    sharedDigest,
    trustDomain,
    revision: state.revision,
    settings,
    services: sortedServices,
    // Equal tokens stay the same object, so what translation builds from them is reused as it is.
    tokens: previous ? previous.tokens : tokens,
    dropped: [...invalidDropped, ...serviceDropped, ...tokenDropped],
    memo: memo.current,
    index: {
      generation: ++generations,
      touched: previous ? { since: base.generation, services: touched, exposed } : undefined,
      records: records.current,
      instances: instances.current,
      declares: declares.current,
      declaredBy: declaredBy.current,
      droppedOf: droppedOf.current,
      serviceDropped,
    },
  };
}

const fingerprintsOf = new WeakMap<MeshModel, Map<string, string | undefined>>();

/**
 * A digest of everything the proxies of one service are configured from — what every
 * proxy shares, the service's own spec and callers, and what it sees of each callee
 * (its exposed digest); equal digest, equal config. Undefined for a service not in
 * the model. Computed when first asked and remembered per model, so only identities
 * with a connected proxy ever get one.
 */
export function identityFingerprint(model: MeshModel, name: string): string | undefined {
  let known = fingerprintsOf.get(model);
  if (!known) fingerprintsOf.set(model, (known = new Map()));
  if (known.has(name)) return known.get(name);
  const service = model.services.get(name);
  let fingerprint: string | undefined;
  if (service) {
    // Digests joined, not a fresh array digested: nothing here is digested twice, so nothing is remembered.
    const deps = service.dependencies.map((d) => `${JSON.stringify(d.service)}=${model.memo.get(d.service)!.exposedDigest}`).join(',');
    fingerprint = digestText(`${model.sharedDigest}|${model.memo.get(name)!.specDigest}|${canonicalDigest(service.callers)}|${deps}`);
  }
  known.set(name, fingerprint);
  return fingerprint;
}

/**
 * Whether the proxies of a service may need a different config in `next` than in
 * `prev` (their fingerprints differ), asked per service: the snapshot cache asks
 * only about services with a connected proxy. For a model built from `prev`, a
 * service it looked at again is compared; any other service kept its model object,
 * so its fingerprint differs exactly when one of its dependencies' exposed digests
 * does — no digest is computed for it (a change to a service 3,000 services call).
 */
export function affectedTest(prev: MeshModel | undefined, next: MeshModel): (service: string) => boolean {
  const differs = (name: string): boolean => (prev ? identityFingerprint(prev, name) : undefined) !== identityFingerprint(next, name);
  const touched = next.index.touched;
  if (!prev || !touched || touched.since !== prev.index.generation) return differs;
  const { services, exposed } = touched;
  // A service depends on an exposed one only if its record declares it: for a change to a few services, a lookup in
  // each one's declarers answers the many services that call none of them, without reading their models.
  const declarers = exposed.size <= 8 ? [...exposed].map((callee) => next.index.declaredBy.get(callee)) : undefined;
  const declaresExposed = (name: string): boolean => declarers === undefined || declarers.some((names) => names?.has(name));
  return (name) => {
    if (services.has(name)) return differs(name);
    if (exposed.size === 0 || !declaresExposed(name)) return false;
    return next.services.get(name)?.dependencies.some((d) => exposed.has(d.service)) ?? false;
  };
}

/** Every service whose proxies' config may differ between two models (affectedTest asked about every service of both). */
export function servicesAffected(prev: MeshModel | undefined, next: MeshModel): Set<string> {
  const test = affectedTest(prev, next);
  const names = new Set([...(prev?.services.keys() ?? []), ...next.services.keys()]);
  return new Set([...names].filter(test));
}

let generations = 0;

const EMPTY_INDEX: MeshIndex = {
  generation: 0,
  touched: undefined,
  records: OverlayMap.of(),
  instances: OverlayMap.of(),
  declares: OverlayMap.of(),
  declaredBy: OverlayMap.of(),
  droppedOf: OverlayMap.of(),
  serviceDropped: [],
};

/**
 * The admitted callers of one registered service: the mesh's one rule
 * (callersByService, as authz's Check applies it per call), given the service
 * and exactly the records that declare it.
 */
function callersOf(
  name: string,
  records: ReadonlyMap<string, ServiceRecord>,
  declaredBy: ReadonlyMap<string, ReadonlySet<string>>,
): string[] {
  const declaring = [...(declaredBy.get(name) ?? [])].map((caller) => records.get(caller)!.spec);
  // A copy of exactly its length: the model keeps it per service, and the list was grown as push grows one (16+ slots).
  return (
    callersByService([records.get(name)!.spec, ...declaring])
      .get(name)
      ?.slice() ?? []
  );
}

function allServiceNames(state: MeshStateView): Set<string> {
  return new Set([...state.services.keys(), ...state.instances.keys()]);
}

/** Services whose record or instances differ from what the index was built from. */
function changedServices(state: MeshStateView, index: MeshIndex): Set<string> {
  const changed = new Set<string>();
  for (const [name, { value }] of state.services) if (index.records.get(name) !== value) changed.add(name);
  for (const name of index.records.keys()) if (!state.services.has(name)) changed.add(name);
  for (const [name, byId] of state.instances) {
    const before = index.instances.get(name);
    if (before ? !sameInstances(before, byId) : byId.size > 0) changed.add(name);
  }
  for (const name of index.instances.keys()) if (!state.instances.has(name)) changed.add(name);
  return changed;
}

/**
 * A map a build edits, starting as the previous model's, which is never changed:
 * the first change that makes a difference lays an overlay over it (OverlayMap: the
 * edits, reading through to the previous map, not a copy of it), and `current` is
 * then the overlay. Setting a key to the value it has, or deleting an absent key, is
 * no change.
 */
class CopyOnWrite<K, V> {
  private map: ReadonlyMap<K, V>;
  private owned = false;

  constructor(base: ReadonlyMap<K, V>) {
    this.map = base;
  }

  /** What the map holds now (the previous model's map itself while unchanged). */
  get current(): ReadonlyMap<K, V> {
    return this.map;
  }

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  set(key: K, value: V): void {
    if (this.map.get(key) === value && (value !== undefined || this.map.has(key))) return;
    this.own().set(key, value);
  }

  delete(key: K): void {
    if (this.map.has(key)) this.own().delete(key);
  }

  private own(): OverlayMap<K, V> {
    if (!this.owned) {
      this.map = OverlayMap.over(this.map);
      this.owned = true;
    }
    return this.map as OverlayMap<K, V>;
  }
}

/**
 * Copy-on-write sets in a copy-on-write map: a set is copied the first time this
 * build edits it (the previous model's stays untouched), then edited in place.
 * Empty sets are removed at the end of the build by the caller.
 */
function setEditor(map: CopyOnWrite<string, ReadonlySet<string>>): (key: string) => Set<string> {
  const owned = new Set<string>();
  return (key) => {
    if (!owned.has(key)) {
      owned.add(key);
      map.set(key, new Set(map.get(key) ?? []));
    }
    return map.get(key) as Set<string>;
  };
}

/** What a memo keeps when nothing was dropped: one list for every service (frozen: never added to), not an empty list each. */
const NOTHING_DROPPED: readonly DroppedInput[] = Object.freeze([]);

/** The instances of a service without any (never added to). */
const NO_INSTANCES: ReadonlyMap<string, InstanceRecord> = new Map();

function serviceMemoOf(record: ServiceRecord, byId: ReadonlyMap<string, InstanceRecord> | undefined): ServiceMemo {
  const spec = record.spec;
  const instances = sortedInstances(byId);
  const localities = groupByLocality(instances);
  const dropped: DroppedInput[] = [];
  const upstreams = upstreamsOf(record, instances, localities, dropped);
  return {
    record,
    // The index's own copy of the service's instances (step 1), which no build edits: held, not copied again.
    instances: byId ?? NO_INSTANCES,
    localities,
    upstreams,
    dropped: dropped.length > 0 ? dropped : NOTHING_DROPPED,
    dependencies: undefined,
    exposedDigest: canonicalDigest([
      spec.protocol,
      spec.port,
      spec.policy,
      spec.mtls ?? 'off',
      upstreams,
      upstreams.length === 1 && upstreams[0]!.subset === undefined ? null : localities,
    ]),
    // With the generation since which each dependency is declared: proxyless cluster names carry it.
    specDigest: canonicalDigest([
      spec.protocol,
      spec.port,
      spec.policy,
      spec.ingress ?? null,
      spec.dependencies,
      spec.dependencies.map((dep) => dependencySince(record, dep.service)),
      spec.mtls ?? 'off',
    ]),
  };
}

// Model objects are made by these alone, every field always present and in one order (undefined where absent): a
// change's code then meets the shapes the start-up build showed it, and V8 keeps what it optimised (see OverlayMap).

function serviceModel(
  spec: ServiceRecord['spec'],
  settings: TranslatorSettings,
  dependencies: DependencyModel[],
  callers: string[],
  entry: ServiceMemo,
  modRevision: string,
): ServiceModel {
  return {
    name: spec.name,
    team: spec.team,
    protocol: spec.protocol,
    port: spec.port,
    policy: spec.policy,
    ingress: spec.ingress,
    mtls: spec.mtls ?? 'off',
    inbound: spec.port !== settings.outboundPort && spec.port !== settings.adminPort,
    dependencies,
    callers,
    upstreams: entry.upstreams,
    localities: entry.localities,
    modRevision,
  };
}

function withDependencies(service: ServiceModel, dependencies: DependencyModel[]): ServiceModel {
  return {
    name: service.name,
    team: service.team,
    protocol: service.protocol,
    port: service.port,
    policy: service.policy,
    ingress: service.ingress,
    mtls: service.mtls,
    inbound: service.inbound,
    dependencies,
    callers: service.callers,
    upstreams: service.upstreams,
    localities: service.localities,
    modRevision: service.modRevision,
  };
}

function memoWithDependencies(entry: ServiceMemo, dependencies: NonNullable<ServiceMemo['dependencies']>): ServiceMemo {
  return {
    record: entry.record,
    instances: entry.instances,
    localities: entry.localities,
    upstreams: entry.upstreams,
    dropped: entry.dropped,
    dependencies,
    exposedDigest: entry.exposedDigest,
    specDigest: entry.specDigest,
  };
}

/** What resolving a dependency reads of its callee: whether it is in the model, its protocol and port. */
function calleeShape(entry: ServiceMemo | undefined): string | undefined {
  return entry && `${entry.record.spec.protocol}:${entry.record.spec.port}`;
}

function resolveDependencies(
  record: ServiceRecord,
  service: ServiceModel,
  services: ReadonlyMap<string, ServiceModel>,
  settings: TranslatorSettings,
): { models: DependencyModel[]; dropped: readonly DroppedInput[] } {
  const dropped: DroppedInput[] = [];
  const deps = [...record.spec.dependencies].sort((a, b) => compare(a.service, b.service));
  // A TCP dependency is reached on 127.0.0.1:<its port>, so that port must be free in the caller's sidecar.
  const portsInUse = new Set([settings.outboundPort, settings.adminPort, service.port]);
  // map, not flatMap: an array of exactly its length, which the model keeps per service (flatMap's grows as push
  // does, to 16 slots and more for one dependency).
  const models = deps.map((dep): DependencyModel | undefined => {
    const callee = services.get(dep.service);
    if (!callee) return undefined;
    if (callee.protocol === 'tcp') {
      if (portsInUse.has(callee.port)) {
        dropped.push({
          kind: 'dependency',
          name: `${service.name}→${callee.name}`,
          reason: `TCP port ${callee.port} is already taken in ${service.name}'s sidecar`,
        });
        return undefined;
      }
      portsInUse.add(callee.port);
    }
    return {
      service: dep.service,
      ...(dep.policy ? { override: dep.policy } : {}),
      since: dependencySince(record, dep.service),
    };
  });
  return {
    models: models.includes(undefined) ? models.filter((m) => m !== undefined) : (models as DependencyModel[]),
    dropped: dropped.length > 0 ? dropped : NOTHING_DROPPED,
  };
}

/** What is left out on account of one service name, by the four kinds `dropped` lists in turn; undefined when nothing is. */
function dropsOf(
  name: string,
  state: MeshStateView,
  entry: ServiceMemo | undefined,
  settings: TranslatorSettings,
): ServiceDrops | undefined {
  const record = state.services.get(name)?.value;
  if (record && entry && nothingDropped(name, record, entry, state, settings)) return undefined;
  const drops: ServiceDrops = { unregisteredDependencies: [], unregisteredInstances: [], own: [], dependencies: [] };
  for (const dep of record?.spec.dependencies ?? []) {
    if (!state.services.has(dep.service)) {
      drops.unregisteredDependencies.push({
        kind: 'dependency',
        name: `${name}→${dep.service}`,
        reason: `service "${dep.service}" is not registered`,
      });
    }
  }
  if (!record && state.instances.has(name))
    drops.unregisteredInstances.push({ kind: 'instance', name, reason: `instances of unregistered service "${name}" are ignored` });
  if (record && record.spec.name !== name) {
    drops.own.push({ kind: 'service', name, reason: `record names "${record.spec.name}" but is stored as "${name}"` });
  } else if (record && entry) {
    drops.own.push(...entry.dropped);
    const port = record.spec.port;
    if (port === settings.outboundPort || port === settings.adminPort) {
      drops.own.push({
        kind: 'service',
        name,
        reason: `port ${port} is reserved in sidecars (outbound ${settings.outboundPort}, admin ${settings.adminPort}): its sidecars get no inbound listener`,
      });
    }
    drops.dependencies.push(...(entry.dependencies?.dropped ?? []));
  }
  return Object.values(drops).every((list) => list.length === 0) ? undefined : drops;
}

/** The usual case, checked without building anything: dropsOf would find nothing to drop. */
function nothingDropped(
  name: string,
  record: ServiceRecord,
  entry: ServiceMemo,
  state: MeshStateView,
  settings: TranslatorSettings,
): boolean {
  const { spec } = record;
  if (spec.name !== name || entry.dropped.length > 0 || (entry.dependencies?.dropped.length ?? 0) > 0) return false;
  if (spec.port === settings.outboundPort || spec.port === settings.adminPort) return false;
  return spec.dependencies.every((dep) => state.services.has(dep.service));
}

/** Unregistered dependencies, orphan instances, services, then dependencies: each kind by service name. */
function assembleDrops(droppedOf: ReadonlyMap<string, ServiceDrops>): DroppedInput[] {
  const names = [...droppedOf.keys()].sort(compare);
  const kinds = ['unregisteredDependencies', 'unregisteredInstances', 'own', 'dependencies'] as const;
  return kinds.flatMap((kind) => names.flatMap((name) => droppedOf.get(name)![kind]));
}

const mergedPolicies = new WeakMap<TrafficPolicy, WeakMap<TrafficPolicy, TrafficPolicy>>();

/**
 * A dependency's effective policy: the callee's, with the caller's override applied
 * field by field. Without an override it is the callee's very policy object; with
 * one, the same object for the same pair of policy objects, so what translation
 * projects from it per object is shared by every caller alike.
 */
export function dependencyPolicy(callee: Pick<ServiceModel, 'policy'>, dep: Pick<DependencyModel, 'override'>): TrafficPolicy {
  const override = dep.override;
  if (!override) return callee.policy;
  let byOverride = mergedPolicies.get(callee.policy);
  if (!byOverride) mergedPolicies.set(callee.policy, (byOverride = new WeakMap()));
  let merged = byOverride.get(override);
  if (!merged) byOverride.set(override, (merged = mergePolicy(callee.policy, override)));
  return merged;
}

/** Field-by-field: what the caller set wins, the rest comes from the callee. */
export function mergePolicy(callee: TrafficPolicy, override: TrafficPolicy | undefined): TrafficPolicy {
  if (!override) return callee;
  const merged: TrafficPolicy = { ...callee };
  for (const [key, value] of Object.entries(override)) {
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
  }
  return merged;
}

function sortedInstances(byId: ReadonlyMap<string, InstanceRecord> | undefined): InstanceRecord[] {
  if (!byId) return [];
  return [...byId.values()].sort((a, b) => compare(a.id, b.id));
}

function localityKey(l: Locality): string {
  return `${l.region}/${l.zone}/${l.subZone}`;
}

export function groupByLocality(instances: readonly InstanceRecord[]): LocalityEndpoints[] {
  const groups = new Map<string, LocalityEndpoints>();
  for (const instance of instances) {
    const key = localityKey(instance.locality);
    let group = groups.get(key);
    if (!group) {
      const { region, zone, subZone } = instance.locality;
      groups.set(key, (group = { locality: { region, zone, subZone }, weight: 0, endpoints: [] }));
    }
    const { id: instanceId, address, port, weight } = instance;
    group.endpoints.push({ instanceId, address, port, weight, ...(instance.drainingSince ? { draining: true as const } : {}) });
    if (!instance.drainingSince) group.weight += instance.weight;
  }
  // A locality whose instances all drain keeps a weight (xDS requires >= 1); it has no endpoint to pick.
  for (const group of groups.values()) if (group.weight === 0) group.weight = 1;
  return [...groups.entries()].sort(([a], [b]) => compare(a, b)).map(([, group]) => group);
}

function upstreamsOf(
  record: ServiceRecord,
  instances: readonly InstanceRecord[],
  localities: LocalityEndpoints[],
  dropped: DroppedInput[],
): UpstreamModel[] {
  const split = record.spec.trafficSplit;
  if (!split) return [{ weight: 100, localities }];
  const upstreams = split
    .filter((subset) => subset.weight > 0)
    .map((subset) => ({
      subset: subset.name,
      weight: subset.weight,
      localities: groupByLocality(instances.filter((i) => Object.entries(subset.labels).every(([k, v]) => i.labels[k] === v))),
    }))
    .sort((a, b) => compare(a.subset, b.subset));
  if (upstreams.length === 0) {
    // The schema requires weights adding up to 100, so this is a record written around it.
    dropped.push({ kind: 'trafficSplit', name: record.spec.name, reason: 'no subset has a weight above 0; routing to every instance' });
    return [{ weight: 100, localities }];
  }
  return upstreams;
}

function tokensOf(state: MeshStateView, settings: TranslatorSettings, dropped: DroppedInput[]): MeshTokens {
  const keys = [...state.authzKeys.values()].sort((a, b) => compare(a.kid, b.kid));
  const jwks = keys.flatMap((key) => {
    if (key.jwk.kid !== key.kid) {
      dropped.push({ kind: 'authzKey', name: key.kid, reason: `JWK kid "${key.jwk.kid}" differs from the record's kid` });
      return [];
    }
    const { kty, kid, alg, use, n, e, crv, x, y } = key.jwk;
    const complete = kty === 'RSA' ? n !== undefined && e !== undefined : crv !== undefined && x !== undefined && y !== undefined;
    if (!complete) {
      dropped.push({ kind: 'authzKey', name: key.kid, reason: `${kty} JWK lacks its public parameters` });
      return [];
    }
    return [kty === 'RSA' ? { kty, kid, alg, use, n, e } : { kty, kid, alg, use, crv, x, y }];
  });
  return {
    issuer: state.meshSettings?.tokenIssuer ?? settings.defaultTokenIssuer,
    clockSkewSeconds: state.meshSettings?.clockSkewSeconds ?? 30,
    jwks: JSON.stringify({ keys: jwks }),
    keyIds: jwks.map((k) => k.kid),
  };
}

function sameSettings(a: TranslatorSettings, b: TranslatorSettings): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

function intersects(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  for (const item of small) if (large.has(item)) return true;
  return false;
}

function sameRefs(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameInstances(before: ReadonlyMap<string, InstanceRecord>, now: ReadonlyMap<string, InstanceRecord> | undefined): boolean {
  if (!now) return before.size === 0;
  if (now.size !== before.size) return false;
  for (const [id, record] of now) if (before.get(id) !== record) return false;
  return true;
}

/** The mesh's string order, with an absent value (the whole-service upstream) first. */
function compare(a: string | undefined, b: string | undefined): number {
  return compareStrings(a ?? '', b ?? '');
}

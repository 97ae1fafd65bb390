// What each proxy identity should have (cf. go-control-plane pkg/cache): one
// snapshot per identity that has a connected proxy, rebuilt only when the model
// change touches its service. Streams subscribe and are told when theirs changes.
import { ADS_PUSH_ORDER, TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import type { ProxyIdentity, ResourceSet, XdsResource } from '../resource';
import { DERIVED_TYPES, DerivedResources } from './derived-resources';
import { versionOf } from './versions';

export interface TypeSnapshot {
  readonly version: string;
  /** Sorted by name. */
  readonly resources: ReadonlyMap<string, XdsResource>;
}

export interface ProxySnapshot {
  readonly identity: ProxyIdentity;
  /** The etcd revision of the mesh state this snapshot was built from. */
  readonly meshRevision: string;
  /** When the change that produced this snapshot was first seen (ms since epoch), for convergence time. */
  readonly changedAt: number;
  readonly types: ReadonlyMap<XdsTypeUrl, TypeSnapshot>;
}

export interface ModelMeta {
  revision: string;
  changedAt: number;
}

/** A new set per call (as buildProxyResources gives): the cache keeps its maps, a sidecar's as its types' own. */
export type Translate<M> = (model: M, identity: ProxyIdentity) => ResourceSet;

/**
 * Which services' identities a new model may change: every one, a set, or a test asked
 * only for the services that have a connected proxy (so work such as comparing
 * fingerprints is done for those alone).
 */
export type AffectedServices = 'all' | ReadonlySet<string> | ((service: string) => boolean);

export interface SnapshotCacheOptions<M = unknown> {
  /** Translation threw: the identity keeps its last good snapshot. */
  onTranslateError?: (identity: ProxyIdentity, err: unknown) => void;
  /**
   * Run on every translated set before it is published; a non-empty answer
   * (one sentence per problem) keeps the last good snapshot instead. The control
   * plane passes `snapshotInconsistencies`; protocol tests that serve hand-built
   * partial sets leave it out.
   */
  check?: (set: ResourceSet) => string[];
  onInconsistent?: (identity: ProxyIdentity, problems: string[]) => void;
  /**
   * Spread a rebuild over event-loop turns of about this many milliseconds. Each slice
   * translates identities and hands each new snapshot to its streams at once, so the
   * first streams are pushed (and the proxies decode) while later identities are still
   * being translated, and requests are read and new streams served in between instead of
   * waiting for the whole fan-out (cf. Istio's push queue); answers to requests wait for a
   * change's last slice (afterFanOut). Unset: `setModel` does all of it before it returns
   * (protocol tests rely on that).
   */
  fanOutSliceMs?: number;
  /**
   * Given the previous model (whose translation an identity's snapshot is) and the new one: a key when its new
   * translation can differ from that snapshot only in its clusters and endpoints, and those follow from the ones it
   * holds and the key alone (the control plane passes sharedUpstreamsChange: a callee's shared clusters changed). Then one
   * identity per (clusters, endpoints, key) is translated and checked, and the others holding the same take its
   * new clusters and endpoints with the rest of their snapshot as it was: what their translation would give.
   */
  sharedTypesChange?: (from: M, to: M, identity: ProxyIdentity) => string | undefined;
}
export type SnapshotListener = (snapshot: ProxySnapshot) => void;

/** SnapshotCache.pushActivity(). */
export interface PushActivity {
  /** Identities waiting to be translated and pushed. */
  pendingBuilds: number;
  /** Since a slice last built an identity (Infinity if none ever did). */
  msSinceBuild: number;
}

export interface CacheUpdateResult {
  /** Identities whose resources were recomputed. */
  rebuilt: number;
  /** Identities whose snapshot actually changed (and whose streams were told). */
  changed: number;
}

/** What `setModel` returns: so far, and once every affected identity has its new snapshot. */
export interface CacheUpdate extends CacheUpdateResult {
  /** Resolves when the fan-out is over: at once without `fanOutSliceMs`; a later model's fan-out finishes this one's identities. */
  settled: Promise<CacheUpdateResult>;
}

/** One `setModel`'s identities still to rebuild, and what it found so far. */
interface FanOut<M> {
  remaining: Set<Entry<M>>;
  result: CacheUpdateResult;
  resolve: (result: CacheUpdateResult) => void;
}

interface Entry<M> {
  identity: ProxyIdentity;
  snapshot: ProxySnapshot | undefined;
  /** The snapshot is its translation of the model (false after a translation failed or was inconsistent: it is older). */
  current: boolean;
  /**
   * While it waits to be rebuilt: the previous model, when the snapshot was its translation (it was current then, and
   * not left over from an earlier fan-out). Dropped at the rebuild, so no model outlives its fan-out here.
   */
  from: M | undefined;
  listeners: Set<SnapshotListener>;
}

/** The clusters and endpoints a translated identity got, for the others that held what it held (sharedTypesChange). */
interface SharedChange {
  clusters: TypeSnapshot;
  endpoints: TypeSnapshot;
}

interface Pooled {
  resource: XdsResource;
  refs: number;
}

/**
 * A type as the cache makes it, with what it counts of it: a field of the type rather than an entry in a Map by type
 * (a connection storm makes ~17,000 types at 5,000 streams; the Map's entries, their objects and its growth were kept
 * or thrown away with them).
 */
interface CachedType extends TypeSnapshot {
  /** Its resources are counted in the pool; false once no pooled snapshot holds it any more (or never pooled). */
  held: boolean;
  /** How many pooled snapshots hold it. */
  holders: number;
  /** Its key in `sharedTypes`, when shared. */
  sharedKey: string | undefined;
}

/** What a stream needs from the cache: its identity's snapshot now and whenever it changes. */
export interface SnapshotSource {
  watch(identity: ProxyIdentity, listener: SnapshotListener): { snapshot: ProxySnapshot | undefined; cancel: () => void };
  /** Runs `run` now, or once the change being fanned out has reached every affected identity (sessions answer requests through it). */
  afterFanOut?(run: () => void): void;
}

/**
 * The longest a session's answer to requests waits for a change's fan-out (afterFanOut): a stream of changes,
 * each with its fan-out, must not keep ACKs and EDS requests unanswered for longer.
 */
export const MAX_FAN_OUT_HOLD_MS = 100;

export function identityKey(identity: ProxyIdentity): string {
  return `${identity.kind}/${identity.service}${identity.outboundPort ? `:${identity.outboundPort}` : ''}`;
}

export class SnapshotCache<M> implements SnapshotSource {
  private model: M | undefined;
  private meta: ModelMeta = { revision: '0', changedAt: 0 };
  private readonly entries = new Map<string, Entry<M>>();
  /**
   * The entries by service (a service's sidecars, proxyless clients and outbound-port variants): a change asks
   * about each watched service once, without a pass over every entry and a memo of the answers.
   */
  private readonly byService = new Map<string, Set<Entry<M>>>();
  /** Entries without a snapshot (their identity's translation failed, or no model yet): rebuilt with any model. */
  private readonly unbuilt = new Set<Entry<M>>();
  /** Encoded resources shared by every snapshot that holds the same content. */
  private readonly pool = new Map<string, Pooled>();
  /**
   * Sidecars' clusters and endpoints by content (type URL and their resources' hashes in name order), shared by
   * every sidecar identity that holds that content: a callee's change gives its hundreds of callers the same
   * clusters, made into a type (a map, a version hash) once instead of once per caller, and the sessions then
   * encode those resources once (session-common.ts responseResources).
   */
  private readonly sharedTypes = new Map<string, TypeSnapshot>();
  /** Kept as things change, so stats() (read after every rebuild) costs nothing at 5,000 streams. */
  private streams = 0;
  private pooledBytes = 0;
  /** Identities waiting for a slice of the fan-out (with `fanOutSliceMs`), oldest first. */
  private readonly stale = new Set<Entry<M>>();
  private readonly fanOuts = new Set<FanOut<M>>();
  private nextSlice: NodeJS.Immediate | undefined;
  /** Answers to requests waiting for the changes being fanned out (afterFanOut), and the deadline that runs them regardless. */
  private waiting: Array<() => void> = [];
  private waitDeadline: NodeJS.Timeout | undefined;
  /** When a slice last built an identity (performance.now()); see pushActivity(). */
  private lastBuildAt = -Infinity;
  /**
   * This model's answers for sharedTypesChange from the previous one, by the clusters and endpoints an identity held
   * and the key: the types the first such identity's translation gave. Cleared with each new model.
   */
  private readonly sharedChanges = new Map<TypeSnapshot, Map<TypeSnapshot, Map<string, SharedChange>>>();

  private readonly options: SnapshotCacheOptions<M>;

  /** The second argument may be `onTranslateError` alone (the earlier signature). */
  constructor(
    private readonly translate: Translate<M>,
    options: SnapshotCacheOptions<M> | NonNullable<SnapshotCacheOptions<M>['onTranslateError']> = {},
  ) {
    this.options = typeof options === 'function' ? { onTranslateError: options } : options;
  }

  get ready(): boolean {
    return this.model !== undefined;
  }

  get revision(): string {
    return this.meta.revision;
  }

  /**
   * What the fan-out has in hand, for background work that yields to pushes (the proxy-status writer): identities
   * waiting for a slice (new streams' first translations, a change's affected identities) and the time since a slice
   * last built one. In a connection storm the slices can catch up with the streams read so far for a moment while
   * more are on their way, so the time says a storm is still going when nothing waits.
   */
  pushActivity(): PushActivity {
    return { pendingBuilds: this.stale.size, msSinceBuild: performance.now() - this.lastBuildAt };
  }

  /**
   * Installs a new model. Only watched identities whose service is in `affected`
   * are recomputed (a test is asked once per watched service, never for others);
   * listeners hear about a snapshot only when a version changed.
   */
  setModel(model: M, affected: AffectedServices, meta: ModelMeta): CacheUpdate {
    const previous = this.model;
    this.model = model;
    this.meta = meta;
    this.sharedChanges.clear();
    const due = this.due(affected);
    // An identity unaffected by the models since its last translation still holds the translation of the previous one.
    if (this.options.sharedTypesChange)
      for (const entry of due) entry.from = entry.current && entry.snapshot && !this.stale.has(entry) ? previous : undefined;
    if (this.options.fanOutSliceMs === undefined) {
      const changed = due.filter((entry) => this.rebuild(entry));
      for (const entry of changed) notify(entry);
      const result = { rebuilt: due.length, changed: changed.length };
      return { ...result, settled: Promise.resolve(result) };
    }
    // Identities left over from an earlier model's fan-out are built from this one, in this one's turn.
    for (const entry of due) {
      this.stale.delete(entry);
      this.stale.add(entry);
    }
    let resolve!: (result: CacheUpdateResult) => void;
    const settled = new Promise<CacheUpdateResult>((r) => (resolve = r));
    const fanOut: FanOut<M> = { remaining: new Set(due), result: { rebuilt: 0, changed: 0 }, resolve };
    this.fanOuts.add(fanOut);
    this.slice();
    if (fanOut.remaining.size === 0) this.finish(fanOut);
    return { ...fanOut.result, settled };
  }

  /** The entries a new model must rebuild: those without a snapshot, those left over from a fan-out, then the affected. */
  private due(affected: AffectedServices): Entry<M>[] {
    if (affected === 'all') return [...this.entries.values()];
    const due = new Set<Entry<M>>();
    const add = (entries: ReadonlySet<Entry<M>> | undefined): void => {
      if (entries) for (const entry of entries) due.add(entry);
    };
    add(this.unbuilt);
    add(this.stale);
    // forEach: a for-of over the map's entries would allocate a pair per watched service.
    if (typeof affected === 'function') {
      this.byService.forEach((entries, service) => {
        if (affected(service)) add(entries);
      });
    } else if (affected.size < this.byService.size) {
      for (const service of affected) add(this.byService.get(service));
    } else {
      this.byService.forEach((entries, service) => {
        if (affected.has(service)) add(entries);
      });
    }
    return [...due];
  }

  private scheduleSlice(): void {
    this.nextSlice ??= setImmediate(() => {
      this.nextSlice = undefined;
      this.slice();
    });
  }

  /** Rebuilds stale identities for one slice, telling each one's streams at once; schedules the next slice. */
  private slice(): void {
    const until = performance.now() + (this.options.fanOutSliceMs ?? 0);
    for (const entry of this.stale) {
      this.refresh(entry);
      this.lastBuildAt = performance.now();
      if (this.lastBuildAt >= until) break;
    }
    if (this.stale.size > 0) this.scheduleSlice();
  }

  /** Rebuilds a stale identity now and tells its streams if it changed. */
  private refresh(entry: Entry<M>): void {
    this.stale.delete(entry);
    const changed = this.rebuild(entry);
    if (changed) notify(entry);
    for (const fanOut of this.fanOuts) {
      if (!fanOut.remaining.delete(entry)) continue;
      fanOut.result.rebuilt++;
      if (changed) fanOut.result.changed++;
      if (fanOut.remaining.size === 0) this.finish(fanOut);
    }
  }

  /** An identity whose last stream closed is no longer waited for. */
  private forget(entry: Entry<M>): void {
    this.stale.delete(entry);
    for (const fanOut of this.fanOuts) if (fanOut.remaining.delete(entry) && fanOut.remaining.size === 0) this.finish(fanOut);
  }

  private finish(fanOut: FanOut<M>): void {
    this.fanOuts.delete(fanOut);
    fanOut.resolve({ ...fanOut.result });
    // In the next turn, so the last slice's pushes are written out first.
    if (this.fanOuts.size === 0 && this.waiting.length > 0) setImmediate(() => this.runWaiting());
  }

  /**
   * Runs `run` at once when no change is being fanned out; else once every identity the changes affect has its new
   * snapshot, or after MAX_FAN_OUT_HOLD_MS at most. Sessions answer requests through this (a stream's pushes of new
   * snapshots never wait): while a change reaches its affected streams slice by slice, the first ones' CDS ACKs and
   * EDS re-requests are still read, but their answers no longer take turns with the later slices and delay the last
   * streams' pushes. Each session's own responses keep their order: it decides them when it pumps, from its state.
   */
  afterFanOut(run: () => void): void {
    if (this.fanOuts.size === 0) return run();
    this.waiting.push(run);
    this.waitDeadline ??= setTimeout(() => this.runWaiting(), MAX_FAN_OUT_HOLD_MS);
  }

  private runWaiting(): void {
    clearTimeout(this.waitDeadline);
    this.waitDeadline = undefined;
    for (const run of this.waiting.splice(0)) run();
  }

  /**
   * Subscribes to an identity's snapshot; the first watcher builds it — at once, or with
   * `fanOutSliceMs` in the next slice (the listener hears of it then). A connection storm
   * (thousands of streams whose first requests arrive together) is then translated slice by
   * slice with ACKs read in between, so the first proxies finish their exchange while later
   * identities are still being translated, instead of all waiting for the whole storm.
   */
  watch(identity: ProxyIdentity, listener: SnapshotListener): { snapshot: ProxySnapshot | undefined; cancel: () => void } {
    const key = identityKey(identity);
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { identity, snapshot: undefined, current: false, from: undefined, listeners: new Set() };
      this.entries.set(key, entry);
      let ofService = this.byService.get(identity.service);
      if (!ofService) this.byService.set(identity.service, (ofService = new Set()));
      ofService.add(entry);
      this.unbuilt.add(entry);
      if (this.model !== undefined && this.options.fanOutSliceMs === undefined) this.rebuild(entry);
      else if (this.model !== undefined) {
        this.stale.add(entry);
        this.scheduleSlice();
      }
    } else if (this.stale.has(entry) && entry.snapshot) {
      // A new stream gets the current model's snapshot, not the one its identity had before this fan-out.
      this.refresh(entry);
    }
    if (!entry.listeners.has(listener)) this.streams++;
    entry.listeners.add(listener);
    const owned = entry;
    return {
      snapshot: entry.snapshot,
      cancel: () => {
        if (owned.listeners.delete(listener)) this.streams--;
        if (owned.listeners.size === 0 && this.entries.get(key) === owned) {
          // Nobody connected with this identity: free its snapshot (memory follows connected proxies).
          if (owned.snapshot) this.release(owned.snapshot);
          this.entries.delete(key);
          const ofService = this.byService.get(owned.identity.service);
          ofService?.delete(owned);
          if (ofService?.size === 0) this.byService.delete(owned.identity.service);
          this.unbuilt.delete(owned);
          this.forget(owned);
        }
      },
    };
  }

  snapshotOf(identity: ProxyIdentity): ProxySnapshot | undefined {
    return this.entries.get(identityKey(identity))?.snapshot;
  }

  /** Builds a snapshot for an identity without keeping it (debug endpoints). */
  peek(identity: ProxyIdentity): ProxySnapshot | undefined {
    const kept = this.snapshotOf(identity);
    if (kept || this.model === undefined) return kept;
    return this.toSnapshot(identity, this.translate(this.model, identity));
  }

  stats(): { identities: number; streams: number; pooledResources: number; pooledBytes: number } {
    return { identities: this.entries.size, streams: this.streams, pooledResources: this.pool.size, pooledBytes: this.pooledBytes };
  }

  /** Returns true when the entry's snapshot changed. */
  private rebuild(entry: Entry<M>): boolean {
    const from = entry.from;
    entry.from = undefined;
    const held = entry.snapshot;
    const key = from !== undefined && held ? this.options.sharedTypesChange?.(from, this.model as M, entry.identity) : undefined;
    if (key === undefined) return this.translated(entry);
    const clusters = held!.types.get(TypeUrl.Cluster)!;
    const endpoints = held!.types.get(TypeUrl.ClusterLoadAssignment)!;
    let byEndpoints = this.sharedChanges.get(clusters);
    if (!byEndpoints) this.sharedChanges.set(clusters, (byEndpoints = new Map()));
    let byKey = byEndpoints.get(endpoints);
    if (!byKey) byEndpoints.set(endpoints, (byKey = new Map()));
    const known = byKey.get(key);
    // Still held by some snapshot (the one translated may have lost its last stream since): else translate.
    if (known && (known.clusters as CachedType).held && (known.endpoints as CachedType).held) return this.adopt(entry, known);
    const changed = this.translated(entry);
    if (entry.current) {
      const types = entry.snapshot!.types;
      byKey.set(key, { clusters: types.get(TypeUrl.Cluster)!, endpoints: types.get(TypeUrl.ClusterLoadAssignment)! });
    }
    return changed;
  }

  /**
   * The snapshot an identity's translation gives when sharedTypesChange answered: its listeners, routes and the
   * rest as they were (the very types toSnapshot keeps for equal content), the clusters and endpoints another
   * identity's translation gave (the very shared types toSnapshot finds by content). The check passes as it did:
   * it relates listeners to routes (as they were, checked when built) and clusters to endpoints (as checked then).
   */
  private adopt(entry: Entry<M>, change: SharedChange): boolean {
    const prev = entry.snapshot!;
    const clusters = prev.types.get(TypeUrl.Cluster)!;
    const endpoints = prev.types.get(TypeUrl.ClusterLoadAssignment)!;
    entry.current = true;
    // The other types are the very ones held: their versions are equal, and the holder counts of the types kept
    // do not move (one snapshot of this identity holds them before and after), so only these two are counted.
    if (change.clusters.version === clusters.version && change.endpoints.version === endpoints.version) return false;
    // forEach: the Map constructor's generic iteration costs more than these few sets.
    const types = new Map<XdsTypeUrl, TypeSnapshot>();
    prev.types.forEach((kept, typeUrl) =>
      types.set(
        typeUrl,
        typeUrl === TypeUrl.Cluster ? change.clusters : typeUrl === TypeUrl.ClusterLoadAssignment ? change.endpoints : kept,
      ),
    );
    this.track(change.clusters).holders++;
    this.track(change.endpoints).holders++;
    entry.snapshot = { identity: entry.identity, meshRevision: this.meta.revision, changedAt: this.meta.changedAt, types };
    this.releaseType(clusters);
    this.releaseType(endpoints);
    return true;
  }

  /** Translates and checks an identity's resources; returns true when its snapshot changed. */
  private translated(entry: Entry<M>): boolean {
    entry.current = false;
    let set: ResourceSet;
    try {
      set = this.translate(this.model as M, entry.identity);
    } catch (err) {
      // Keep serving the last good snapshot; the error is reported by the owner.
      this.options.onTranslateError?.(entry.identity, err);
      return false;
    }
    const problems = this.options.check?.(set) ?? [];
    if (problems.length > 0) {
      this.options.onInconsistent?.(entry.identity, problems);
      return false;
    }
    const prev = entry.snapshot;
    const next = this.toSnapshot(entry.identity, set, true, prev);
    entry.current = true;
    if (prev && sameVersions(prev, next)) {
      this.release(next);
      return false;
    }
    entry.snapshot = next;
    this.unbuilt.delete(entry);
    if (prev) this.release(prev);
    return true;
  }

  private toSnapshot(identity: ProxyIdentity, set: ResourceSet, pooled = false, prev?: ProxySnapshot): ProxySnapshot {
    const types = new Map<XdsTypeUrl, TypeSnapshot>();
    // A sidecar's derived names depend on content alone (derived-resources.ts), so its types can be shared by content.
    const sidecar = pooled && identity.kind === 'envoy';
    for (const typeUrl of ADS_PUSH_ORDER) {
      const built = set.get(typeUrl) ?? NO_RESOURCES;
      // Most types of a rebuilt identity are unchanged: keep the type as it was (its version unhashed, and the
      // sessions' picks from it valid), without a new map.
      const before = prev?.types.get(typeUrl);
      let type: TypeSnapshot;
      if (before && sameContent(before.resources, built)) type = before;
      // An empty type (a sidecar without secrets) is one type for every sidecar, as its clusters are for a callee's callers.
      else if (sidecar && (built.size === 0 || SHARED_TYPES.has(typeUrl))) type = this.sharedType(typeUrl, built, identity);
      else type = this.newType(typeUrl, built, identity, pooled);
      if (pooled) this.track(type).holders++;
      types.set(typeUrl, type);
    }
    return { identity, meshRevision: this.meta.revision, changedAt: this.meta.changedAt, types };
  }

  /**
   * A type of what translation built; pooled: its resources are the pool's copies, and it is tracked. A sidecar's
   * type is translation's own map (a new one per translation: `Translate`), the pooled copies swapped in place: a
   * sidecar asks only for names translation built (derived-resources.ts derives for proxyless clients), so a
   * connection storm does not copy every identity's resources into new maps.
   */
  private newType(typeUrl: XdsTypeUrl, built: Map<string, XdsResource>, identity: ProxyIdentity, pooled: boolean): TypeSnapshot {
    let resources: Map<string, XdsResource>;
    if (identity.kind === 'envoy') {
      resources = built;
      // Keyed by name (toResourceSet); setting a key the map holds keeps its place.
      if (pooled)
        for (const resource of resources.values()) {
          const kept = this.intern(resource);
          if (kept !== resource) resources.set(resource.name, kept);
        }
    } else {
      // Also answers names translation does not build: a proxyless server's per-address listener, an undeclared target (derived-resources.ts).
      resources = DERIVED_TYPES.has(typeUrl) ? new DerivedResources(typeUrl, identity) : new Map<string, XdsResource>();
      for (const resource of built.values()) resources.set(resource.name, pooled ? this.intern(resource) : resource);
    }
    // Pooled: its resources were just counted in the pool by intern (track would look each up again).
    const type: CachedType = { version: versionOf(resources.values()), resources, held: pooled, holders: 0, sharedKey: undefined };
    return type;
  }

  /** The type of this content another sidecar identity holds, or a new one made shareable. */
  private sharedType(typeUrl: XdsTypeUrl, built: Map<string, XdsResource>, identity: ProxyIdentity): TypeSnapshot {
    // Translation sorts each type by name (and the hash covers the name): equal keys are equal contents.
    let key: string = typeUrl;
    for (const resource of built.values()) key += `\n${resource.hash}`;
    const known = this.sharedTypes.get(key);
    if (known) return known;
    const type = this.newType(typeUrl, built, identity, true);
    this.sharedTypes.set(key, type);
    this.track(type).sharedKey = key;
    return type;
  }

  /**
   * A type (every type is one the cache made) with its holders; the first time it is held (again) its resources are
   * retained in the pool. Types held by pooled snapshots count their resources once in the pool however many snapshots
   * hold them (kept from an identity's previous snapshot, or shared by identities).
   */
  private track(type: TypeSnapshot): CachedType {
    const cached = type as CachedType;
    if (!cached.held) {
      cached.held = true;
      cached.holders = 0;
      for (const resource of type.resources.values()) this.retain(resource);
    }
    return cached;
  }

  /** The pooled copy of a resource with the same content, counted once more for the type taking it; the hash covers the name, which Envoy encodes in every resource. */
  private intern(resource: XdsResource): XdsResource {
    const pooled = this.pool.get(resource.hash);
    if (!pooled) {
      this.pool.set(resource.hash, { resource, refs: 1 });
      this.pooledBytes += resource.any.value.length;
      return resource;
    }
    if (pooled.resource.name !== resource.name) return resource; // never expected; then simply not shared
    pooled.refs++;
    return pooled.resource;
  }

  /** One more type holds a resource already pooled (a new type's or a kept type's, whose maps hold the pooled copies). */
  private retain(resource: XdsResource): void {
    const pooled = this.pool.get(resource.hash);
    if (pooled?.resource === resource) pooled.refs++;
  }

  /** A snapshot is dropped: a type no other snapshot holds frees its resources (and stops being shared). */
  private release(snapshot: ProxySnapshot): void {
    for (const type of snapshot.types.values()) this.releaseType(type);
  }

  /** One snapshot fewer holds a type. */
  private releaseType(type: TypeSnapshot): void {
    const held = type as CachedType;
    if (!held.held || --held.holders > 0) return;
    held.held = false;
    if (held.sharedKey !== undefined) this.sharedTypes.delete(held.sharedKey);
    held.sharedKey = undefined;
    for (const resource of type.resources.values()) {
      const pooled = this.pool.get(resource.hash);
      if (pooled?.resource === resource && --pooled.refs <= 0) {
        this.pool.delete(resource.hash);
        this.pooledBytes -= resource.any.value.length;
      }
    }
  }
}

function notify<M>(entry: Entry<M>): void {
  for (const listener of entry.listeners) listener(entry.snapshot!);
}

/** What a type translation left out holds (never added to: a sidecar's empty type holds this very map). */
const NO_RESOURCES: Map<string, XdsResource> = new Map();

/** What sidecars of different services can hold alike (a callee's clusters and endpoints); listeners and routes name their own service. */
const SHARED_TYPES: ReadonlySet<XdsTypeUrl> = new Set([TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment]);

/** Whether `a` holds what translation built in `b` (sizes count built resources only, never derived ones). */
function sameContent(a: ReadonlyMap<string, XdsResource>, b: ReadonlyMap<string, XdsResource>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, resource] of b) {
    const held = a.get(name);
    // Kept resources are mostly the very same objects (the pooled copy, or a resource kept per model object).
    if (held !== resource && held?.hash !== resource.hash) return false;
  }
  return true;
}

function sameVersions(a: ProxySnapshot, b: ProxySnapshot): boolean {
  for (const [typeUrl, type] of a.types) {
    if (b.types.get(typeUrl)?.version !== type.version) return false;
  }
  return true;
}

// What each proxy identity should have (cf. go-control-plane pkg/cache): one
// snapshot per identity that has a connected proxy, rebuilt only when the model
// change touches its service. Streams subscribe and are told when theirs changes.
import { ADS_PUSH_ORDER, type XdsTypeUrl } from '@trellis/envoy-types';
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

export type Translate<M> = (model: M, identity: ProxyIdentity) => ResourceSet;

export interface SnapshotCacheOptions {
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
}
export type SnapshotListener = (snapshot: ProxySnapshot) => void;

export interface CacheUpdateResult {
  /** Identities whose resources were recomputed. */
  rebuilt: number;
  /** Identities whose snapshot actually changed (and whose streams were told). */
  changed: number;
}

interface Entry {
  identity: ProxyIdentity;
  snapshot: ProxySnapshot | undefined;
  listeners: Set<SnapshotListener>;
}

interface Pooled {
  resource: XdsResource;
  refs: number;
}

/** What a stream needs from the cache: its identity's snapshot now and whenever it changes. */
export interface SnapshotSource {
  watch(identity: ProxyIdentity, listener: SnapshotListener): { snapshot: ProxySnapshot | undefined; cancel: () => void };
}

export function identityKey(identity: ProxyIdentity): string {
  return `${identity.kind}/${identity.service}${identity.outboundPort ? `:${identity.outboundPort}` : ''}`;
}

export class SnapshotCache<M> implements SnapshotSource {
  private model: M | undefined;
  private meta: ModelMeta = { revision: '0', changedAt: 0 };
  private readonly entries = new Map<string, Entry>();
  /** Encoded resources shared by every snapshot that holds the same content. */
  private readonly pool = new Map<string, Pooled>();
  /** Kept as things change, so stats() (read after every rebuild) costs nothing at 5,000 streams. */
  private streams = 0;
  private pooledBytes = 0;

  private readonly options: SnapshotCacheOptions;

  /** The second argument may be `onTranslateError` alone (the earlier signature). */
  constructor(
    private readonly translate: Translate<M>,
    options: SnapshotCacheOptions | NonNullable<SnapshotCacheOptions['onTranslateError']> = {},
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
   * Installs a new model. Only watched identities whose service is in `affected`
   * are recomputed; listeners hear about a snapshot only when a version changed.
   */
  setModel(model: M, affected: ReadonlySet<string> | 'all', meta: ModelMeta): CacheUpdateResult {
    this.model = model;
    this.meta = meta;
    const changed: Entry[] = [];
    let rebuilt = 0;
    for (const entry of this.entries.values()) {
      if (affected !== 'all' && !affected.has(entry.identity.service) && entry.snapshot) continue;
      rebuilt++;
      if (this.rebuild(entry)) changed.push(entry);
    }
    for (const entry of changed) {
      for (const listener of entry.listeners) listener(entry.snapshot!);
    }
    return { rebuilt, changed: changed.length };
  }

  /** Subscribes to an identity's snapshot; the first watcher builds it. */
  watch(identity: ProxyIdentity, listener: SnapshotListener): { snapshot: ProxySnapshot | undefined; cancel: () => void } {
    const key = identityKey(identity);
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { identity, snapshot: undefined, listeners: new Set() };
      this.entries.set(key, entry);
      if (this.model !== undefined) this.rebuild(entry);
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
  private rebuild(entry: Entry): boolean {
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
    if (prev && sameVersions(prev, next)) {
      this.release(next);
      return false;
    }
    entry.snapshot = next;
    if (prev) this.release(prev);
    return true;
  }

  private toSnapshot(identity: ProxyIdentity, set: ResourceSet, pooled = false, prev?: ProxySnapshot): ProxySnapshot {
    const types = new Map<XdsTypeUrl, TypeSnapshot>();
    for (const typeUrl of ADS_PUSH_ORDER) {
      // Also answers names translation does not build: a proxyless server's per-address listener, an undeclared target (derived-resources.ts).
      const resources = DERIVED_TYPES.has(typeUrl) ? new DerivedResources(typeUrl, identity) : new Map<string, XdsResource>();
      for (const resource of set.get(typeUrl)?.values() ?? []) {
        resources.set(resource.name, pooled ? this.intern(resource) : resource);
      }
      // Most types of a rebuilt identity are unchanged: keep their version instead of hashing again.
      const before = prev?.types.get(typeUrl);
      const version = before && sameContent(before.resources, resources) ? before.version : versionOf(resources.values());
      types.set(typeUrl, { version, resources });
    }
    return { identity, meshRevision: this.meta.revision, changedAt: this.meta.changedAt, types };
  }

  /** The pooled copy of a resource with the same content; the hash covers the name, which Envoy encodes in every resource. */
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

  private release(snapshot: ProxySnapshot): void {
    for (const type of snapshot.types.values()) {
      for (const resource of type.resources.values()) {
        const pooled = this.pool.get(resource.hash);
        if (pooled?.resource === resource && --pooled.refs <= 0) {
          this.pool.delete(resource.hash);
          this.pooledBytes -= resource.any.value.length;
        }
      }
    }
  }
}

function sameContent(a: ReadonlyMap<string, XdsResource>, b: ReadonlyMap<string, XdsResource>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, resource] of b) {
    if (a.get(name)?.hash !== resource.hash) return false;
  }
  return true;
}

function sameVersions(a: ProxySnapshot, b: ProxySnapshot): boolean {
  for (const [typeUrl, type] of a.types) {
    if (b.types.get(typeUrl)?.version !== type.version) return false;
  }
  return true;
}

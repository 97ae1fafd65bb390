// A content-keyed memo of encoded resources that many proxies share (a callee's
// clusters and endpoints under a caller's policy override or for proxyless clients,
// the authz cluster, proxyless routes), so a rebuild of thousands of identities encodes
// and hashes each only once. (A sidecar's clusters of a callee without an override are
// kept on the callee's model object instead: envoy/proxy-resources.ts upstreamResources.)
//
// The key cannot miss an input: it is the builder itself plus a digest of the
// canonical form of the one argument the builder receives. Builders are
// module-level pure functions of that argument (a closure made per call would
// never hit: its identity differs each time). Bounded: entries not used while
// building the current or the previous model are dropped.
import { canonicalDigest } from './canonical-digest';
import type { XdsResource } from './xds-resource';

/** Builds one resource from exactly `input`; reads nothing else but constants. */
export type ResourceBuilder<I> = (input: I) => XdsResource;

type Generation = Map<ResourceBuilder<never>, Map<string, XdsResource>>;

export class TranslationMemo {
  private generationOf: object | undefined;
  private current: Generation = new Map();
  private previous: Generation = new Map();
  hits = 0;
  misses = 0;

  /** Call with the model being translated; a new model starts a new generation. */
  use(model: object): this {
    if (model !== this.generationOf) {
      this.generationOf = model;
      this.previous = this.current;
      this.current = new Map();
    }
    return this;
  }

  /** `build(input)`, or what an earlier call with the same builder and an equal input returned. */
  get<I>(build: ResourceBuilder<I>, input: I): XdsResource {
    const key = canonicalDigest(input);
    const current = entriesOf(this.current, build);
    let resource = current.get(key);
    if (resource === undefined) {
      resource = this.previous.get(build)?.get(key);
      if (resource === undefined) {
        this.misses++;
        resource = build(input);
      } else {
        this.hits++;
      }
      current.set(key, resource);
    } else {
      this.hits++;
    }
    return resource;
  }

  get size(): number {
    let size = 0;
    for (const generation of [this.current, this.previous]) for (const entries of generation.values()) size += entries.size;
    return size;
  }
}

function entriesOf<I>(generation: Generation, build: ResourceBuilder<I>): Map<string, XdsResource> {
  let entries = generation.get(build);
  if (!entries) generation.set(build, (entries = new Map()));
  return entries;
}

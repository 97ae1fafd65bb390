// An explicit, content-keyed memo of encoded resources that many proxies share
// (a callee's clusters and endpoints, the authz cluster, proxyless routes), so
// a rebuild of thousands of identities encodes and hashes each only once.
// Keys spell out everything the resource is built from; a hit therefore gives
// exactly what building would. Bounded: entries not used while building the
// current or the previous model are dropped.
import type { MeshModel } from '../model';
import type { XdsResource } from './resources';

export class TranslationMemo {
  private model: MeshModel | undefined;
  private current = new Map<string, XdsResource>();
  private previous = new Map<string, XdsResource>();
  hits = 0;
  misses = 0;

  /** Call with the model being translated; a new model starts a new generation. */
  use(model: MeshModel): this {
    if (model !== this.model) {
      this.model = model;
      this.previous = this.current;
      this.current = new Map();
    }
    return this;
  }

  get(key: string, build: () => XdsResource): XdsResource {
    let resource = this.current.get(key);
    if (resource === undefined) {
      resource = this.previous.get(key);
      if (resource === undefined) {
        this.misses++;
        resource = build();
      } else {
        this.hits++;
      }
      this.current.set(key, resource);
    } else {
      this.hits++;
    }
    return resource;
  }

  get size(): number {
    return this.current.size + this.previous.size;
  }
}

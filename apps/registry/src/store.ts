// The registry's view of the mesh store: every call is counted when etcd fails,
// and such failures become one error type the HTTP layer answers with 503.
import { MeshStoreError } from '@trellis/mesh-schema';
import type { MeshStore } from '@trellis/mesh-schema';
import type { RegistryMetrics } from './metrics';

/** etcd could not be reached or answered with an error that is not about the record. */
export class EtcdUnavailableError extends Error {
  constructor(
    readonly operation: string,
    override readonly cause: unknown,
  ) {
    super(`etcd operation ${operation} failed`);
    this.name = 'EtcdUnavailableError';
  }
}

/** Wraps a MeshStore so each method's etcd failures are counted and typed. */
export function instrumentStore(store: MeshStore, metrics: RegistryMetrics): MeshStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function' || typeof property !== 'string') return value;
      return async (...args: unknown[]) => {
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } catch (err) {
          if (err instanceof MeshStoreError) throw err;
          metrics.etcdErrors.inc({ operation: property });
          throw new EtcdUnavailableError(property, err);
        }
      };
    },
  });
}

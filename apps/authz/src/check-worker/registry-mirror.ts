// The Check worker's copy of the registry: the services a Check reads (MeshPolicy's
// MeshView), fed by RegistryMessages the main thread builds from its MeshWatcher's
// updates. The worker's isolate runs no etcd client; the main thread's watch is the
// one source, so both threads decide from the same records.
import type { MeshState, MeshUpdate, ServiceRecord } from '@trellis/mesh-schema';
import type { MeshView } from '../check/mesh-policy';
import type { RegistryMessage } from './protocol';

/** The message that brings a worker's mirror to `state` after `update`; undefined when no service changed. */
export function registryMessageOf(update: MeshUpdate, state: MeshState, ready: boolean): RegistryMessage | undefined {
  if (update.reset) return registrySnapshotOf(state, ready);
  const names = new Set<string>();
  for (const change of update.changes) if (change.kind === 'service' && change.service !== undefined) names.add(change.service);
  if (names.size === 0) return undefined;
  return {
    type: 'registry',
    ready,
    reset: false,
    services: [...names].map((name) => [name, state.services.get(name)?.value ?? null]),
  };
}

/** Every service in `state`: what a (re)started worker is sent first. */
export function registrySnapshotOf(state: MeshState, ready: boolean): RegistryMessage {
  return { type: 'registry', ready, reset: true, services: [...state.services].map(([name, { value }]) => [name, value]) };
}

export class RegistryMirror implements MeshView {
  private isReady = false;
  private readonly services = new Map<string, { readonly value: ServiceRecord }>();
  readonly state = { services: this.services, authzKeys: new Map() };

  get ready(): boolean {
    return this.isReady;
  }

  apply(message: RegistryMessage): void {
    if (message.reset) this.services.clear();
    for (const [name, record] of message.services) {
      if (record) this.services.set(name, { value: record });
      else this.services.delete(name);
    }
    this.isReady = message.ready;
  }
}

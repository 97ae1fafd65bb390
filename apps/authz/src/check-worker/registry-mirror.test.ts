import { propertyRuns } from '@trellis/mesh-schema/testing';
import { ServiceSpec, type MeshChange, type MeshState, type ServiceRecord } from '@trellis/mesh-schema';
import fc from 'fast-check';
import { MeshPolicy } from '../check/mesh-policy';
import { RegistryMirror, registryMessageOf, registrySnapshotOf } from './registry-mirror';

const NAMES = ['checkout', 'orders', 'payments', 'stock', 'web'];
const at = new Date(0).toISOString();
const recordOf = (name: string, dependencies: string[], ingress: boolean): ServiceRecord => ({
  spec: ServiceSpec.parse({
    team: 'shop',
    protocol: 'http',
    port: 8080,
    name,
    dependencies: dependencies.filter((service) => service !== name).map((service) => ({ service })),
    ...(ingress ? { ingress: { host: 'shop.example.com', pathPrefix: `/${name}` } } : {}),
  }),
  generation: 1,
  created: { actor: 't', at },
  updated: { actor: 't', at },
});

const emptyState = (): MeshState => ({
  revision: '1',
  services: new Map(),
  instances: new Map(),
  deregistered: new Map(),
  authzKeys: new Map(),
  invalid: new Map(),
});

/** What a Check reads, every pair and every ingress. */
function decisions(policy: MeshPolicy) {
  return NAMES.flatMap((source) => [
    ...NAMES.map((destination) => [source, destination, policy.allowsCall(source, destination)] as const),
    [source, 'ingress', policy.ingressOf(source)?.ingress ?? null] as const,
  ]);
}

describe('RegistryMirror', () => {
  it("decides every Check as the main thread's view does, after any updates (property)", () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('put' as const),
        name: fc.constantFrom(...NAMES),
        dependencies: fc.subarray(NAMES),
        ingress: fc.boolean(),
      }),
      fc.record({ kind: fc.constant('delete' as const), name: fc.constantFrom(...NAMES) }),
      fc.record({ kind: fc.constant('instance' as const), name: fc.constantFrom(...NAMES) }),
      fc.record({ kind: fc.constant('reset' as const) }),
    );
    fc.assert(
      fc.property(fc.array(fc.array(op, { maxLength: 4 }), { maxLength: 15 }), (batches) => {
        const state = emptyState();
        const mainPolicy = new MeshPolicy({ ready: true, state });
        const mirror = new RegistryMirror();
        // What the worker first receives, through the structured clone a MessagePort applies.
        mirror.apply(structuredClone(registrySnapshotOf(state, true)));
        const workerPolicy = new MeshPolicy(mirror);
        for (const batch of batches) {
          const changes: MeshChange[] = [];
          let reset = false;
          for (const o of batch) {
            if (o.kind === 'put')
              state.services.set(o.name, { value: recordOf(o.name, o.dependencies, o.ingress), modRevision: '2' } as never);
            if (o.kind === 'delete') state.services.delete(o.name);
            if (o.kind === 'reset') reset = true;
            if (o.kind === 'instance') changes.push({ kind: 'instance', type: 'put', service: o.name, id: 'i-1', modRevision: '2' });
            else if (o.kind !== 'reset') changes.push({ kind: 'service', type: o.kind, service: o.name, modRevision: '2' });
          }
          const message = registryMessageOf({ revision: '2', reset, changes: reset ? [] : changes }, state, true);
          if (message) mirror.apply(structuredClone(message));
          expect(decisions(workerPolicy)).toEqual(decisions(mainPolicy));
        }
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('sends nothing for changes a Check does not read, and follows readiness', () => {
    const state = emptyState();
    expect(
      registryMessageOf(
        { revision: '2', reset: false, changes: [{ kind: 'authzKey', type: 'put', id: 'k', modRevision: '2' }] },
        state,
        true,
      ),
    ).toBeUndefined();
    const mirror = new RegistryMirror();
    expect(mirror.ready).toBe(false);
    mirror.apply(registrySnapshotOf(state, false));
    expect(mirror.ready).toBe(false);
    mirror.apply(registrySnapshotOf(state, true));
    expect(mirror.ready).toBe(true);
    expect(new MeshPolicy(mirror).allowsCall('checkout', 'orders')).toEqual({ allowed: false, reason: 'unknown-source' });
  });
});

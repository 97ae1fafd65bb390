// Random changes to a generated mesh state, for the properties that an incrementally
// built model (and what is translated from it) equals a full build. Test support,
// beside MeshFixture.
import fc from 'fast-check';
import type { MeshStateView } from './build-mesh-model';

/** take-policy: a service keeps its record but takes the other mesh's policy (a callee retuned, the common change). */
export type Op = 'take-service' | 'take-policy' | 'drop-service' | 'take-instances' | 'drop-instances';
export const opArbitrary = fc.array(
  fc.tuple(fc.nat(), fc.constantFrom<Op>('take-service', 'take-policy', 'drop-service', 'take-instances', 'drop-instances')),
  { maxLength: 6 },
);

/** Applies the operations to a copy of `from`, drawing new values from `other`; returns the state and the names touched. */
export function changed(from: MeshStateView, other: MeshStateView, ops: Array<[number, Op]>): { state: MeshStateView; names: Set<string> } {
  const services = new Map(from.services);
  const instances = new Map(from.instances);
  const names = new Set<string>();
  const pick = <T>(keys: Iterable<T>, n: number): T | undefined => {
    const list = [...keys];
    return list.length === 0 ? undefined : list[n % list.length];
  };
  for (const [n, op] of ops) {
    const name =
      op === 'take-service'
        ? pick(other.services.keys(), n)
        : op === 'take-policy'
          ? pick(
              [...services.keys()].filter((key) => other.services.has(key)),
              n,
            )
          : op === 'drop-service'
            ? pick(services.keys(), n)
            : op === 'take-instances'
              ? pick(other.instances.keys(), n)
              : pick(instances.keys(), n);
    if (name === undefined) continue;
    names.add(name);
    if (op === 'take-service') services.set(name, other.services.get(name)!);
    else if (op === 'take-policy') {
      const { value } = services.get(name)!;
      const taken = other.services.get(name)!;
      services.set(name, { value: { ...value, spec: { ...value.spec, policy: taken.value.spec.policy } }, modRevision: taken.modRevision });
    } else if (op === 'drop-service') services.delete(name);
    else if (op === 'take-instances') instances.set(name, new Map(other.instances.get(name)!));
    else instances.delete(name);
  }
  return { state: { ...from, revision: '8', services, instances }, names };
}

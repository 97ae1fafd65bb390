// Property: the snapshot cache's shortcut for callers whose only change is a callee's shared clusters or
// endpoints (sharedUpstreamsChange: one caller per held clusters and endpoints translated, the others take its
// new ones and keep the rest) gives every identity exactly the snapshot a cache that translates every affected
// identity gives — the same type objects' versions, resource names, hashes and encoded bytes, in the same order,
// and the same pool — over random meshes and random changes (records replaced, policies retuned, instances
// changed or dropped), each applied as the rebuild loop applies it.
import fc from 'fast-check';
import { ServiceRecord, ServiceSpec, type ServiceSpecInput } from '@trellis/mesh-schema';
import { meshArbitrary, meshStateOf, propertyRuns, RECORD_TIME, type GeneratedMesh } from '@trellis/mesh-schema/testing';
import { affectedTest, buildMeshModel, DEFAULT_TRANSLATOR_SETTINGS, type MeshModel, type MeshStateView } from '../model';
import { changed, opArbitrary } from '../model/mesh-changes';
import { snapshotInconsistencies, TranslationMemo, type ProxyIdentity } from '../resource';
import { SnapshotCache, type ProxySnapshot } from '../xds/snapshot-cache';
import { buildProxyResources, sharedUpstreamsChange } from './proxy-resources';

/** Everything a stream is sent from a snapshot, bytes included, in the order the sessions read it. */
function contents(snapshot: ProxySnapshot | undefined): unknown {
  if (!snapshot) return undefined;
  return {
    meshRevision: snapshot.meshRevision,
    changedAt: snapshot.changedAt,
    types: [...snapshot.types].map(([typeUrl, type]) => ({
      typeUrl,
      version: type.version,
      resources: [...type.resources].map(([name, r]) => ({
        name,
        resourceName: r.name,
        typeUrl: r.typeUrl,
        hash: r.hash,
        anyType: r.any.typeUrl,
        bytes: Buffer.from(r.any.value).toString('base64'),
      })),
    })),
  };
}

/** The mesh with no dependency overriding its callee's policy: the shortcut applies to those only, and generated dependencies mostly override. */
function withoutOverrides(mesh: GeneratedMesh): GeneratedMesh {
  return {
    ...mesh,
    services: mesh.services.map((record) => ({
      ...record,
      spec: { ...record.spec, dependencies: record.spec.dependencies.map(({ service }) => ({ service })) },
    })),
  };
}

/**
 * Applies each step's state to two caches watching every identity of `names` (two sidecar variants and a proxyless
 * client each), one with the shortcut and one translating every affected identity, as the rebuild loop does (the
 * model updated from the previous one, affectedTest), and expects the same snapshots and pool after each step.
 * Returns how often the shortcut answered and how many translations it saved.
 */
function compareWithTranslation(
  initial: MeshStateView,
  steps: ReadonlyArray<{ state: MeshStateView; names: Set<string> }>,
  names: Iterable<string>,
): { answered: number; saved: number } {
  const settings = DEFAULT_TRANSLATOR_SETTINGS;
  let answered = 0;
  let saved = 0;
  let translations = { shortcut: 0, reference: 0 };
  const shortcutMemo = new TranslationMemo();
  const referenceMemo = new TranslationMemo();
  const shortcut = new SnapshotCache<MeshModel>((m, id) => (translations.shortcut++, buildProxyResources(m, id, shortcutMemo)), {
    check: snapshotInconsistencies,
    sharedTypesChange: (from, to, id) => {
      const key = sharedUpstreamsChange(from, to, id);
      if (key !== undefined) answered++;
      return key;
    },
  });
  const reference = new SnapshotCache<MeshModel>((m, id) => (translations.reference++, buildProxyResources(m, id, referenceMemo)), {
    check: snapshotInconsistencies,
  });
  const identities: ProxyIdentity[] = [...names].flatMap((service) => [
    { service, kind: 'envoy' as const },
    { service, kind: 'envoy' as const, outboundPort: 15101 },
    { service, kind: 'proxyless' as const },
  ]);
  let model = buildMeshModel(initial, settings);
  const meta = (revision: string) => ({ revision, changedAt: Number(revision) });
  shortcut.setModel(model, 'all', meta('1'));
  reference.setModel(model, 'all', meta('1'));
  for (const id of identities) {
    shortcut.watch(id, () => {});
    reference.watch(id, () => {});
  }
  steps.forEach((step, i) => {
    const next = buildMeshModel(step.state, settings, model, step.names);
    const affected = affectedTest(model, next);
    translations = { shortcut: 0, reference: 0 };
    shortcut.setModel(next, affected, meta(String(i + 2)));
    reference.setModel(next, affected, meta(String(i + 2)));
    saved += translations.reference - translations.shortcut;
    for (const id of identities) expect(contents(shortcut.snapshotOf(id))).toEqual(contents(reference.snapshotOf(id)));
    expect(shortcut.stats()).toEqual(reference.stats());
    model = next;
  });
  return { answered, saved };
}

function stateOf(specs: ServiceSpecInput[]): MeshStateView {
  const records = specs.map((spec) =>
    ServiceRecord.parse({
      spec: ServiceSpec.parse(spec),
      generation: 1,
      created: { actor: 'test', at: RECORD_TIME },
      updated: { actor: 'test', at: RECORD_TIME },
    }),
  );
  return meshStateOf({ services: records, instances: [], authzKeys: [] });
}

describe('shared upstreams change (the snapshot cache shortcut)', () => {
  it('gives every identity byte for byte the snapshot a translation of every affected identity gives (property)', () => {
    let answered = 0;
    let saved = 0;
    fc.assert(
      fc.property(meshArbitrary, meshArbitrary, fc.array(opArbitrary, { minLength: 1, maxLength: 4 }), fc.boolean(), (a, b, ops, strip) => {
        const initial = meshStateOf(strip ? withoutOverrides(a) : a);
        const other = { ...meshStateOf(strip ? withoutOverrides(b) : b), meshSettings: initial.meshSettings, authzKeys: initial.authzKeys };
        const steps: Array<{ state: MeshStateView; names: Set<string> }> = [];
        let state: MeshStateView = initial;
        for (const op of ops) {
          const next = changed(state, other, op);
          steps.push(next);
          state = next.state;
        }
        const result = compareWithTranslation(initial, steps, new Set([...initial.services.keys(), ...other.services.keys()]));
        answered += result.answered;
        saved += result.saved;
      }),
      { numRuns: propertyRuns(150) },
    );
    // The shortcut was taken (not only declined), and callers that held the same took another's translation.
    expect(answered).toBeGreaterThan(0);
    expect(saved).toBeGreaterThan(0);
  });

  it("takes a callee's new circuit breaker for callers without an override and translates one that overrides it, or a route change", () => {
    const hub = (policy: ServiceSpecInput['policy']): ServiceSpecInput => ({
      name: 'hub',
      team: 'core',
      protocol: 'http',
      port: 8080,
      policy,
    });
    const caller = (name: string, dependencies: ServiceSpecInput['dependencies']): ServiceSpecInput => ({
      name,
      team: 'core',
      protocol: 'http',
      port: 8080,
      dependencies,
    });
    // a overrides hub's circuit breaker with the value hub has at first: a and b hold equal clusters, then not.
    const callers = [
      caller('a', [{ service: 'hub', policy: { circuitBreaker: { maxConnections: 5 } } }]),
      caller('b', [{ service: 'hub' }]),
      caller('c', [{ service: 'hub' }]),
      caller('d', [{ service: 'hub' }, { service: 'db' }]),
      { name: 'db', team: 'core', protocol: 'tcp', port: 5432 } satisfies ServiceSpecInput,
    ];
    const states = [
      { circuitBreaker: { maxConnections: 5 } },
      { circuitBreaker: { maxConnections: 7 } },
      { circuitBreaker: { maxConnections: 7 }, timeoutMs: 2000 },
      { circuitBreaker: { maxConnections: 9 }, timeoutMs: 2000 },
    ].map((policy) => stateOf([hub(policy), ...callers]));
    const steps = states.slice(1).map((state) => ({ state, names: new Set(['hub']) }));
    const { answered, saved } = compareWithTranslation(states[0]!, steps, ['hub', 'a', 'b', 'c', 'd', 'db']);
    // b, c (two variants each) and d's sidecars on both circuit-breaker changes; not the timeout's (routes read it).
    expect(answered).toBe(12);
    expect(saved).toBeGreaterThan(0);
  });
});

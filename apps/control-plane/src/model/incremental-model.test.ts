// Property: a model updated from the previous one — with the services the etcd
// events named, or with the changes found by comparing records — is exactly the
// model a full build gives, and servicesAffected reports every identity whose
// fingerprint moved. Meshes come from fast-check (mesh-schema's generator), and
// a change replaces, removes or adds records and instance sets taken from a
// second generated mesh over the same service names.
import fc from 'fast-check';
import { meshArbitrary, meshStateOf, propertyRuns, type GeneratedMesh } from '@trellis/mesh-schema/testing';
import { buildMeshModel, identityFingerprint, servicesAffected, type MeshStateView } from './build-mesh-model';
import { changed, opArbitrary } from './mesh-changes';
import { DEFAULT_TRANSLATOR_SETTINGS, type MeshModel } from './mesh-model';
import { OverlayMap } from './overlay-map';

function expectSameModel(actual: MeshModel, expected: MeshModel): void {
  expect([...actual.services.keys()]).toEqual([...expected.services.keys()]);
  expect(new Map(actual.services)).toEqual(new Map(expected.services));
  expect(actual.dropped).toEqual(expected.dropped);
  expect(fingerprints(actual)).toEqual(fingerprints(expected));
}

function fingerprints(model: MeshModel): Map<string, string | undefined> {
  return new Map([...model.services.keys()].map((name) => [name, identityFingerprint(model, name)]));
}

/**
 * Adds what V8's hidden classes follow of a model to `shapes`: the model's, its index's, each service model's and each
 * memo entry's own keys in order; and checks that each of its maps is an OverlayMap. The change path is optimised on
 * the first change after start-up; a later model of another shape would throw that code away.
 */
function addShapes(model: MeshModel, shapes: Record<'model' | 'index' | 'services' | 'memo', Set<string>>): void {
  const keys = (o: object): string => Object.keys(o).join(',');
  const { index } = model;
  for (const map of [model.services, model.memo, index.records, index.instances, index.declares, index.declaredBy, index.droppedOf])
    expect(map).toBeInstanceOf(OverlayMap);
  shapes.model.add(keys(model));
  shapes.index.add(keys(index));
  for (const service of model.services.values()) shapes.services.add(keys(service));
  for (const entry of model.memo.values()) shapes.memo.add(keys(entry));
}

/** Every identity whose fingerprint differs, found the slow way. */
function affectedByComparison(prev: MeshModel, next: MeshModel): Set<string> {
  const names = new Set([...prev.services.keys(), ...next.services.keys()]);
  return new Set([...names].filter((name) => identityFingerprint(prev, name) !== identityFingerprint(next, name)));
}

describe('the incremental mesh model', () => {
  it('equals a full build after any change, and names exactly the identities whose config may differ', () => {
    fc.assert(
      fc.property(meshArbitrary, meshArbitrary, opArbitrary, opArbitrary, (a, b, first, second) => {
        const settings = DEFAULT_TRANSLATOR_SETTINGS;
        const initial = meshStateOf(a);
        const other = { ...meshStateOf(b), meshSettings: initial.meshSettings, authzKeys: initial.authzKeys };
        let previous = buildMeshModel(initial, settings);
        let state: MeshStateView = initial;
        // Two changes in a row: the second starts from an incrementally built model.
        for (const ops of [first, second]) {
          const next = changed(state, other, ops);
          const full = buildMeshModel(next.state, settings);
          const fromEvents = buildMeshModel(next.state, settings, previous, next.names);
          const fromComparison = buildMeshModel(next.state, settings, previous);
          expectSameModel(fromEvents, full);
          expectSameModel(fromComparison, full);
          expect(servicesAffected(previous, fromEvents)).toEqual(affectedByComparison(previous, full));
          expect(servicesAffected(previous, fromComparison)).toEqual(affectedByComparison(previous, full));
          previous = fromEvents;
          state = next.state;
        }
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('gives every model the shapes of the start-up model: maps of one class, objects with the same fields in one order', () => {
    fc.assert(
      fc.property(meshArbitrary, meshArbitrary, opArbitrary, opArbitrary, (a, b, first, second) => {
        const settings = DEFAULT_TRANSLATOR_SETTINGS;
        const initial = meshStateOf(a);
        const other = { ...meshStateOf(b), meshSettings: initial.meshSettings, authzKeys: initial.authzKeys };
        const shapes = { model: new Set<string>(), index: new Set<string>(), services: new Set<string>(), memo: new Set<string>() };
        let previous = buildMeshModel(initial, settings);
        addShapes(previous, shapes);
        let state: MeshStateView = initial;
        for (const ops of [first, second]) {
          const next = changed(state, other, ops);
          const fromEvents = buildMeshModel(next.state, settings, previous, next.names);
          addShapes(fromEvents, shapes);
          addShapes(buildMeshModel(next.state, settings, previous), shapes);
          addShapes(buildMeshModel(next.state, settings), shapes);
          previous = fromEvents;
          state = next.state;
        }
        expect(shapes.model.size).toBe(1);
        expect(shapes.index.size).toBe(1);
        expect(shapes.services.size).toBeLessThanOrEqual(1);
        expect(shapes.memo.size).toBeLessThanOrEqual(1);
      }),
      { numRuns: propertyRuns(100) },
    );
  });

  it('looks again only at the changed service, and finds its callers from the index', () => {
    const state = meshStateOf({ services: [], instances: [], authzKeys: [], meshSettings: undefined } as unknown as GeneratedMesh);
    const spec = (name: string, dependencies: string[]) => ({
      spec: {
        name,
        team: 't',
        protocol: 'http' as const,
        port: 8080,
        policy: {},
        dependencies: dependencies.map((service) => ({ service })),
      },
      generation: 1,
      created: { actor: 'test', at: '2026-01-01T00:00:00.000Z' },
      updated: { actor: 'test', at: '2026-01-01T00:00:00.000Z' },
    });
    const services = new Map(
      [spec('hub', []), spec('a', ['hub']), spec('b', ['hub']), spec('c', ['a']), spec('d', [])].map((r, n) => [
        r.spec.name,
        { value: r as never, modRevision: String(n + 2) },
      ]),
    );
    const before = buildMeshModel({ ...state, services }, DEFAULT_TRANSLATOR_SETTINGS);
    const hub = spec('hub', []);
    (hub.spec.policy as Record<string, unknown>).timeoutMs = 5;
    const after = buildMeshModel(
      { ...state, revision: '9', services: new Map([...services, ['hub', { value: hub as never, modRevision: '9' }]]) },
      DEFAULT_TRANSLATOR_SETTINGS,
      before,
      new Set(['hub']),
    );
    // Only hub's own model is new: its callers hold what they declared, hub's policy is applied at translation.
    expect(after.index.touched?.services).toEqual(new Set(['hub']));
    expect(after.index.touched?.exposed).toEqual(new Set(['hub']));
    expect(servicesAffected(before, after)).toEqual(new Set(['hub', 'a', 'b']));
    // Every other service keeps its model object (and so its memoised digests), callers included.
    expect(after.services.get('a')).toBe(before.services.get('a'));
    expect(after.services.get('b')).toBe(before.services.get('b'));
    expect(after.services.get('c')).toBe(before.services.get('c'));
    expect(after.services.get('d')).toBe(before.services.get('d'));
  });
});

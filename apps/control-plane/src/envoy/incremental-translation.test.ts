// Property: what the rebuild loop does after a change — update the model from the
// previous one, re-translate only the identities affectedTest names, with the
// long-lived translation memo — gives every proxy exactly the resources a full
// build and a fresh translation give. In particular an identity the test leaves out
// (its snapshot is kept as it was) translates to what it had, and a dependency's
// policy resolved at translation time equals the callee's policy with the caller's
// override applied.
import fc from 'fast-check';
import { meshArbitrary, meshStateOf, propertyRuns } from '@trellis/mesh-schema/testing';
import { affectedTest, buildMeshModel, DEFAULT_TRANSLATOR_SETTINGS, type MeshModel, type MeshStateView } from '../model';
import { changed, opArbitrary } from '../model/mesh-changes';
import { TranslationMemo, type ProxyIdentity, type ResourceSet } from '../resource';
import { buildProxyResources } from './proxy-resources';

const flat = (set: ResourceSet) => [...set.values()].flatMap((m) => [...m.values()].map((r) => `${r.typeUrl} ${r.name} ${r.hash}`));

function identitiesOf(...models: MeshModel[]): ProxyIdentity[] {
  const names = new Set(models.flatMap((m) => [...m.services.keys()]));
  return [...names].flatMap((service) => [
    { service, kind: 'envoy' as const },
    { service, kind: 'proxyless' as const },
  ]);
}

describe('incremental translation', () => {
  it('gives every identity what a full build gives, and leaves out only identities whose resources are unchanged', () => {
    fc.assert(
      fc.property(meshArbitrary, meshArbitrary, opArbitrary, opArbitrary, (a, b, first, second) => {
        const settings = DEFAULT_TRANSLATOR_SETTINGS;
        const initial = meshStateOf(a);
        const other = { ...meshStateOf(b), meshSettings: initial.meshSettings, authzKeys: initial.authzKeys };
        const memo = new TranslationMemo();
        let previous = buildMeshModel(initial, settings);
        // What each identity holds: translated once, then only when affectedTest says so.
        const held = new Map(
          identitiesOf(previous).map((id) => [`${id.kind}/${id.service}`, flat(buildProxyResources(previous, id, memo))]),
        );
        let state: MeshStateView = initial;
        for (const ops of [first, second]) {
          const next = changed(state, other, ops);
          const model = buildMeshModel(next.state, settings, previous, next.names);
          const full = buildMeshModel(next.state, settings);
          const affected = affectedTest(previous, model);
          for (const id of identitiesOf(previous, model)) {
            const key = `${id.kind}/${id.service}`;
            const expected = flat(buildProxyResources(full, id));
            if (affected(id.service) || !held.has(key)) held.set(key, flat(buildProxyResources(model, id, memo)));
            expect(held.get(key)).toEqual(expected);
          }
          previous = model;
          state = next.state;
        }
      }),
      { numRuns: propertyRuns(150) },
    );
  });
});

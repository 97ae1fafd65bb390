// Property: every mesh the registry could have written (records drawn by
// fast-check and kept only when the zod schemas accept them) goes through the
// model builder and the translator without throwing, and every resource every
// proxy gets decodes, satisfies Envoy's validate.rules and references only what
// the same snapshot holds. authz's side of the same property: apps/authz/src/check/poison-records.test.ts.
import fc from 'fast-check';
import { unpackAny } from '@trellis/envoy-types';
import { ProtoValidator } from '@trellis/envoy-types/validation';
import { meshArbitrary, meshStateOf, propertyRuns } from '@trellis/mesh-schema/testing';
import { buildMeshModel, DEFAULT_TRANSLATOR_SETTINGS } from '../model';
import { buildProxyResources } from './proxy-resources';
import { snapshotInconsistencies, TranslationMemo } from '../resource';

let validator: ProtoValidator;
beforeAll(() => {
  validator = ProtoValidator.load();
});

describe('records the registry accepts never break the control plane', () => {
  it('builds a model and valid, self-consistent resources for every proxy of every generated mesh', () => {
    const memo = new TranslationMemo();
    let resources = 0;
    fc.assert(
      fc.property(meshArbitrary, (mesh) => {
        const model = buildMeshModel(meshStateOf(mesh), DEFAULT_TRANSLATOR_SETTINGS);
        for (const service of [...model.services.keys(), 'unregistered']) {
          for (const kind of ['envoy', 'proxyless'] as const) {
            const set = buildProxyResources(model, { service, kind }, memo);
            expect({ service, kind, inconsistencies: snapshotInconsistencies(set) }).toEqual({ service, kind, inconsistencies: [] });
            for (const byName of set.values()) {
              for (const resource of byName.values()) {
                resources++;
                unpackAny(resource.any);
                const violations = validator.validateAny(resource.any);
                if (violations.length > 0) throw new Error(`${service}/${kind} ${resource.name}: ${JSON.stringify(violations)}`);
              }
            }
          }
        }
      }),
      { numRuns: propertyRuns(150) },
    );
    expect(resources).toBeGreaterThan(500);
  });
});

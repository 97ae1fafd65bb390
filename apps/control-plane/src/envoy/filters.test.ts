import { packAny } from '@trellis/envoy-types';
import { RBAC } from '@trellis/envoy-types/envoy/extensions/filters/http/rbac/v3/rbac';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import fc from 'fast-check';
import { encodeMeshCallersRbac, rbacConfig, rbacFilter } from './filters';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

// The fast path (written into a writer around constant bytes) against the reference (the RBAC
// config built and encoded by the generated code).
describe('encodeMeshCallersRbac', () => {
  it('encodes byte for byte what the generated encoder gives for the callers-only RBAC config', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 40 }), { maxLength: 8 }), (callers) => {
        const fast = encodeMeshCallersRbac(callers);
        const reference = packAny(RBAC, rbacConfig(callers, false));
        expect(fast.typeUrl).toBe(reference.typeUrl);
        expect(hex(fast.value)).toBe(hex(reference.value));
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('is what rbacFilter packs for declared callers alone, and a token subject must match one exactly', () => {
    const filter = rbacFilter(['a', 'b'], false);
    const typed = filter.configType?.$case === 'typedConfig' ? filter.configType.value : undefined;
    const rbac = RBAC.decode(typed!.value);
    const principals = rbac.rules!.policies['mesh-callers']!.principals;
    expect(principals.map((p) => (p.identifier?.$case === 'metadata' ? p.identifier.value.value?.matchPattern : undefined))).toEqual([
      { $case: 'stringMatch', value: expect.objectContaining({ matchPattern: { $case: 'exact', value: 'a' } }) },
      { $case: 'stringMatch', value: expect.objectContaining({ matchPattern: { $case: 'exact', value: 'b' } }) },
    ]);
    // No caller: no policy, everything is denied.
    expect(RBAC.decode(encodeMeshCallersRbac([]).value).rules!.policies).toEqual({});
  });
});

import { propertyRuns } from '@trellis/mesh-schema/testing';
import fc from 'fast-check';
import { statPrefix } from './names';

describe('statPrefix', () => {
  it('turns every UTF-16 unit but [a-zA-Z0-9_-] into "_", as the regular expression it replaced did', () => {
    const units = fc.oneof(
      fc.constantFrom('|', '.', ':', '/', ' ', '_', '-', 'a', 'Z', '0', '9', '`', '{', '@', '[', '\u00e9', '\ud83d', '\ude00'),
      fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)),
    );
    fc.assert(
      fc.property(fc.array(units, { maxLength: 40 }), (parts) => {
        const name = parts.join('');
        expect(statPrefix(name)).toBe(name.replace(/[^a-zA-Z0-9_-]/g, '_'));
      }),
      { numRuns: propertyRuns(2000) },
    );
  });

  it('keeps a name that needs no change as it is, and replaces each separator', () => {
    expect(statPrefix('svc-00042_a')).toBe('svc-00042_a');
    expect(statPrefix('inbound|svc-00042')).toBe('inbound_svc-00042');
    expect(statPrefix('outbound|http_ratelimit')).toBe('outbound_http_ratelimit');
    expect(statPrefix('|a..b|')).toBe('_a__b_');
    expect(statPrefix('')).toBe('');
    expect(statPrefix('caf\u00e9 \ud83d\ude00')).toBe('caf____');
  });
});

import { propertyRuns } from '@trellis/mesh-schema/testing';
import fc from 'fast-check';
import { StringInterner } from './interned-strings';

describe('StringInterner', () => {
  it('decodes exactly as Buffer#toString does, for any bytes, however often the table is overwritten (property)', () => {
    const interner = new StringInterner();
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 80 }), { minLength: 1, maxLength: 50 }), fc.nat(8), (values, offset) => {
        for (const value of values) {
          // Somewhere inside a larger buffer, as a value inside a request.
          const buf = Buffer.concat([Buffer.alloc(offset, 0x61), value, Buffer.from('tail')]);
          expect(interner.utf8(buf, offset, offset + value.length)).toBe(Buffer.from(value).toString('utf8'));
        }
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('returns the same string for the same bytes, and keeps its own copy of them', () => {
    const interner = new StringInterner();
    const buf = Buffer.from('xxcheckoutyy');
    const first = interner.utf8(buf, 2, 10);
    buf.write('payments', 2); // the request's buffer is reused by its owner
    expect(interner.utf8(buf, 2, 10)).toBe('payments');
    expect(interner.utf8(Buffer.from('checkout'), 0, 8)).toBe(first);
  });

  it('stays bounded and correct when thousands of distinct values collide', () => {
    const interner = new StringInterner();
    const names = Array.from({ length: 20_000 }, (_, i) => `service-${i}`);
    for (const name of names) expect(interner.utf8(Buffer.from(name), 0, name.length)).toBe(name);
    for (const name of names.slice(0, 100)) expect(interner.utf8(Buffer.from(name), 0, name.length)).toBe(name);
    const long = 'x'.repeat(200);
    expect(interner.utf8(Buffer.from(long), 0, 200)).toBe(long);
  });
});

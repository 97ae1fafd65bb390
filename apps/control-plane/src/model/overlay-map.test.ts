// Property: a chain of overlays, each edited by random sets and deletes, reads and
// iterates exactly as plain Map copies edited the same way, and never changes the map
// it was laid over.
import fc from 'fast-check';
import { setFlagsFromString } from 'node:v8';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import { OverlayMap } from './overlay-map';

type Edit = ['set', number, number] | ['delete', number];
const editArbitrary = fc.oneof(
  fc.tuple(fc.constant('set' as const), fc.nat(12), fc.integer()),
  fc.tuple(fc.constant('delete' as const), fc.nat(12)),
) as fc.Arbitrary<Edit>;

describe('OverlayMap', () => {
  it('reads and iterates as an edited copy would, through chains of builds, leaving every base as it was', () => {
    fc.assert(
      fc.property(fc.array(fc.array(editArbitrary, { maxLength: 8 }), { minLength: 1, maxLength: 20 }), (builds) => {
        let expected = new Map<number, number>([[100, 0]]);
        let actual: ReadonlyMap<number, number> = new Map(expected);
        for (const edits of builds) {
          const before = [...actual];
          const next = OverlayMap.over(actual);
          const copy = new Map(expected);
          for (const edit of edits) {
            if (edit[0] === 'set') {
              next.set(edit[1], edit[2]);
              copy.set(edit[1], edit[2]);
            } else {
              expect(next.delete(edit[1])).toBe(copy.delete(edit[1]));
            }
          }
          expect([...next]).toEqual([...copy]);
          expect([...next.keys()]).toEqual([...copy.keys()]);
          expect([...next.values()]).toEqual([...copy.values()]);
          expect(next.size).toBe(copy.size);
          for (let key = 0; key <= 12; key++) {
            expect(next.has(key)).toBe(copy.has(key));
            expect(next.get(key)).toBe(copy.get(key));
          }
          const seen: Array<[number, number]> = [];
          next.forEach((value, key) => seen.push([key, value]));
          expect(seen).toEqual([...copy]);
          expect([...actual]).toEqual(before);
          actual = next;
          expected = copy;
        }
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('copies a long chain flat, so a read looks at a few maps at most', () => {
    let map: ReadonlyMap<string, number> = new Map(Array.from({ length: 100 }, (_, i) => [`k${i}`, i]));
    const depths: number[] = [];
    for (let i = 1; i <= 20; i++) {
      const next = OverlayMap.over(map);
      next.set('k0', i);
      depths.push(next instanceof OverlayMap ? next.depth : 0);
      map = next;
    }
    expect(Math.max(...depths)).toBe(8);
    expect(depths).toContain(0);
    expect(map.get('k0')).toBe(20);
    expect(map.size).toBe(100);
  });

  it('reads an overlay with the code V8 optimised while reading bottoms only (as the first change follows start-up)', () => {
    // V8's own view: natives syntax, parsed only in functions made after the flag is set.
    setFlagsFromString('--allow-natives-syntax');
    const prepare = new Function('fn', '%PrepareFunctionForOptimization(fn)') as (fn: unknown) => void;
    const optimiseOnNextCall = new Function('fn', '%OptimizeFunctionOnNextCall(fn)') as (fn: unknown) => void;
    // V8's OptimizationStatus: bit 6 is "TurboFan code is what runs".
    const turbofanned = (fn: unknown) => ((new Function('fn', 'return %GetOptimizationStatus(fn)')(fn) as number) & (1 << 6)) !== 0;
    const bottom = OverlayMap.of([
      ['a', 1],
      ['b', 2],
    ]);
    const overlay = OverlayMap.over(OverlayMap.over(bottom));
    overlay.set('c', 3);
    overlay.delete('b');
    for (const read of [OverlayMap.prototype.get, OverlayMap.prototype.has]) {
      prepare(read);
      for (const key of ['a', 'z']) read.call(bottom, key);
      optimiseOnNextCall(read);
      read.call(bottom, 'a');
      expect(turbofanned(read)).toBe(true);
      for (const key of ['a', 'b', 'c', 'z']) read.call(overlay, key);
      expect(turbofanned(read)).toBe(true);
    }
    expect([overlay.get('a'), overlay.get('b'), overlay.get('c')]).toEqual([1, undefined, 3]);
    expect([overlay.has('a'), overlay.has('b'), overlay.has('c')]).toEqual([true, false, true]);
  });
});

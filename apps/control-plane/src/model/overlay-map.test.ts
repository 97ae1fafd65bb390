// Property: a chain of overlays, each edited by random sets and deletes, reads and
// iterates exactly as plain Map copies edited the same way, and never changes the map
// it was laid over.
import fc from 'fast-check';
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
});

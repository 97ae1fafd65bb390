import { canonicalJson, diffLines } from './diff';

describe('diffLines', () => {
  it('marks added and removed lines and keeps common ones', () => {
    expect(diffLines('a\nb\nc', 'a\nx\nc\nd')).toEqual([
      { op: 'same', text: 'a' },
      { op: 'removed', text: 'b' },
      { op: 'added', text: 'x' },
      { op: 'same', text: 'c' },
      { op: 'added', text: 'd' },
    ]);
  });

  it('treats an empty side as all added or all removed', () => {
    expect(diffLines('', 'a\nb').map((l) => l.op)).toEqual(['added', 'added']);
    expect(diffLines('a', '').map((l) => l.op)).toEqual(['removed']);
  });
});

describe('canonicalJson', () => {
  it('sorts keys so equal definitions render identically', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: 3 } })).toBe(canonicalJson({ a: { c: 3, d: [2, { y: 2, z: 1 }] }, b: 1 }));
  });
});

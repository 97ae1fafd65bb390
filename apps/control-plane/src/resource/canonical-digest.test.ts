import { canonicalDigest, digestText } from './canonical-digest';

describe('canonicalDigest', () => {
  it('ignores key order and tells apart every difference in content', () => {
    expect(canonicalDigest({ a: 1, b: [1, 'x'] })).toBe(canonicalDigest({ b: [1, 'x'], a: 1 }));
    const distinct = [
      { a: 1 },
      { a: '1' },
      { a: true },
      { a: null },
      { a: undefined },
      {},
      { a: [1] },
      { a: { b: 1 } },
      { a: -0 },
      { a: 1, b: 1 },
      [1, 2],
      [2, 1],
      [[1], 2],
      [1, [2]],
      'a',
      '"a"',
    ];
    const digests = distinct.map(canonicalDigest);
    expect(new Set(digests).size).toBe(distinct.length);
  });

  it('refuses what is not plain data rather than digesting it by accident', () => {
    expect(() => canonicalDigest({ a: new Map() })).toThrow(/Map at \$\.a is not plain data/);
    expect(() => canonicalDigest({ a: [() => 1] })).toThrow(/function at \$\.a\[0\]/);
    expect(() => canonicalDigest(new Date())).toThrow(/Date/);
  });

  it('gives an equal digest for an equal copy, so fresh projections of unchanged data still hit', () => {
    const endpoints = Array.from({ length: 100 }, (_, i) => ({ address: `10.0.0.${i}`, port: 80, weight: 1 }));
    expect(canonicalDigest({ endpoints })).toBe(canonicalDigest({ endpoints: structuredClone(endpoints) }));
  });
});

describe('digestText', () => {
  it('keeps a short text as it is and hashes a long one, as canonicalDigest does', () => {
    expect(digestText('a|b')).toBe('a|b');
    const long = 'x'.repeat(300);
    expect(digestText(long)).toMatch(/^#[A-Za-z0-9_-]{43}$/);
    // The same rule: a value's digest is digestText of its canonical text.
    expect(canonicalDigest([long])).toBe(digestText(`[${JSON.stringify(long)},]`));
    expect(digestText(long)).not.toBe(digestText(`${long}y`));
  });
});

import { propertyRuns } from '@trellis/mesh-schema/testing';
import fc from 'fast-check';
import { PairTokenMemory } from './pair-token-memory';

/** What the token cache did before: one Map by `source:destination:kid`, re-stored entries move to the end, the oldest goes first. */
class FlatMemory<T> {
  private readonly entries = new Map<string, T>();
  constructor(private readonly max: number) {}
  get = (s: string, d: string, k: string) => this.entries.get(`${s}:${d}:${k}`);
  set(s: string, d: string, k: string, value: T): void {
    const key = `${s}:${d}:${k}`;
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
  }
  get size() {
    return this.entries.size;
  }
}

describe('PairTokenMemory', () => {
  it('holds and drops exactly what the flat map keyed by source:destination:kid did (property)', () => {
    const name = fc.constantFrom('a', 'b', 'c', 'orders', 'checkout');
    const op = fc.record({ set: fc.boolean(), source: name, destination: name, kid: fc.constantFrom('k1', 'k2') });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 80 }), (max, ops) => {
        const memory = new PairTokenMemory<number>(max);
        const flat = new FlatMemory<number>(max);
        ops.forEach((o, i) => {
          if (o.set) {
            memory.set(o.source, o.destination, o.kid, i);
            flat.set(o.source, o.destination, o.kid, i);
          }
          expect(memory.get(o.source, o.destination, o.kid)).toBe(flat.get(o.source, o.destination, o.kid));
          expect(memory.size).toBe(flat.size);
        });
        for (const s of ['a', 'b', 'c', 'orders', 'checkout'])
          for (const d of ['a', 'b', 'c', 'orders', 'checkout'])
            for (const k of ['k1', 'k2']) expect(memory.get(s, d, k)).toBe(flat.get(s, d, k));
      }),
      { numRuns: propertyRuns(300) },
    );
  });
});

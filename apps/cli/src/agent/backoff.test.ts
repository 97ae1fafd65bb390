import { Backoff } from './backoff';

describe('Backoff', () => {
  it('grows exponentially up to the cap, with jitter under it', () => {
    const top = new Backoff({ baseMs: 100, maxMs: 1_000, random: () => 0.999 });
    expect([1, 2, 3, 4, 5].map(() => top.next())).toEqual([99, 199, 399, 799, 999]);
    const bottom = new Backoff({ baseMs: 100, maxMs: 1_000, random: () => 0 });
    expect([1, 2, 3, 4, 5].map(() => bottom.next())).toEqual([10, 20, 40, 80, 100]);
  });

  it('starts over after a success', () => {
    const backoff = new Backoff({ baseMs: 100, maxMs: 1_000, random: () => 0.5 });
    backoff.next();
    backoff.next();
    expect(backoff.failures).toBe(2);
    backoff.reset();
    expect(backoff.next()).toBe(50);
  });
});

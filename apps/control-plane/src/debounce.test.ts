import { Debouncer } from './debounce';

describe('Debouncer', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('runs once after a quiet hold-off, reporting when the burst began', async () => {
    const runs: number[] = [];
    const d = new Debouncer(
      (first) => void runs.push(first),
      100,
      500,
      () => {},
    );
    d.trigger(1000);
    jest.advanceTimersByTime(50);
    d.trigger(1050);
    jest.advanceTimersByTime(99);
    expect(runs).toEqual([]);
    await jest.advanceTimersByTimeAsync(1);
    expect(runs).toEqual([1000]);
  });

  it('never waits longer than the maximum under a steady stream of changes', async () => {
    const runs: number[] = [];
    const d = new Debouncer(
      () => void runs.push(Date.now()),
      100,
      500,
      () => {},
    );
    const start = Date.now();
    for (let t = 0; t < 700; t += 50) {
      d.trigger();
      await jest.advanceTimersByTimeAsync(50);
    }
    expect(runs.length).toBeGreaterThanOrEqual(1);
    expect(runs[0]! - start).toBeLessThanOrEqual(500);
    d.close();
  });

  it('with no hold-off runs once for the triggers of one turn, in an immediate rather than a timer (real timers)', async () => {
    jest.useRealTimers();
    let runs = 0;
    const d = new Debouncer(
      () => void runs++,
      0,
      500,
      () => {},
    );
    d.trigger();
    d.trigger();
    d.trigger();
    // Immediates run in the order they were set: the debouncer's comes before this one.
    await new Promise((resolve) => setImmediate(resolve));
    expect(runs).toBe(1);
    d.trigger();
    await new Promise((resolve) => setImmediate(resolve));
    expect(runs).toBe(2);
    d.close();
  });
});

import { CircuitBreaker, type BreakerState } from './circuit-breaker';

describe('CircuitBreaker', () => {
  let now = 0;
  const transitions: BreakerState[] = [];
  const breaker = () =>
    new CircuitBreaker({ failureThreshold: 3, cooldownMs: 1_000, clock: () => now, onStateChange: (s) => transitions.push(s) });

  beforeEach(() => {
    now = 0;
    transitions.length = 0;
  });

  it('opens after consecutive failures and bypasses calls while open', () => {
    const b = breaker();
    b.failure();
    b.failure();
    expect(b.allow()).toBe(true);
    b.failure();
    expect(b.state).toBe('open');
    expect(b.allow()).toBe(false);
    expect(transitions).toEqual(['open']);
  });

  it('a success resets the failure count', () => {
    const b = breaker();
    b.failure();
    b.failure();
    b.success();
    b.failure();
    b.failure();
    expect(b.state).toBe('closed');
  });

  it('lets one trial through after the cooldown; success closes, failure reopens', () => {
    const b = breaker();
    for (let i = 0; i < 3; i++) b.failure();
    now = 1_000;
    expect(b.allow()).toBe(true);
    expect(b.allow()).toBe(false); // one trial at a time
    b.failure();
    expect(b.state).toBe('open');
    now = 2_000;
    expect(b.allow()).toBe(true);
    b.success();
    expect(b.state).toBe('closed');
    expect(transitions).toEqual(['open', 'half-open', 'open', 'half-open', 'closed']);
  });

  describe('with a probe', () => {
    afterEach(() => jest.useRealTimers());

    it('goes half-open on its own timer when the cooldown ends and closes when the probe answers, with no call asking', async () => {
      jest.useFakeTimers();
      let redisUp = false;
      const probes: boolean[] = [];
      const b = new CircuitBreaker({
        failureThreshold: 1,
        cooldownMs: 1_000,
        clock: () => now,
        onStateChange: (s) => transitions.push(s),
        probe: () => {
          probes.push(redisUp);
          return redisUp ? Promise.resolve() : Promise.reject(new Error('ECONNREFUSED'));
        },
      });
      b.failure();
      expect(transitions).toEqual(['open']);
      // Still down at the first probe: open again, and probed again after another cooldown.
      now = 1_000;
      await jest.advanceTimersByTimeAsync(1_000);
      expect(transitions).toEqual(['open', 'half-open', 'open']);
      redisUp = true;
      now = 2_000;
      await jest.advanceTimersByTimeAsync(1_000);
      expect(probes).toEqual([false, true]);
      expect(transitions).toEqual(['open', 'half-open', 'open', 'half-open', 'closed']);
      expect(b.state).toBe('closed');
      // Closed: no more probes.
      await jest.advanceTimersByTimeAsync(10_000);
      expect(probes).toHaveLength(2);
    });

    it('leaves the trial to a call that took it first, and probes nothing after close()', async () => {
      jest.useFakeTimers();
      let probes = 0;
      const b = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 1_000, clock: () => now, probe: async () => void probes++ });
      b.failure();
      now = 1_000;
      expect(b.allow()).toBe(true); // a call's trial
      await jest.advanceTimersByTimeAsync(1_000);
      expect(probes).toBe(0);
      b.failure(); // the call's trial failed: open, probe scheduled
      b.close();
      now = 3_000;
      await jest.advanceTimersByTimeAsync(5_000);
      expect(probes).toBe(0);
    });
  });
});

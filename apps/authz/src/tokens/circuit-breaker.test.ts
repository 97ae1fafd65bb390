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
});

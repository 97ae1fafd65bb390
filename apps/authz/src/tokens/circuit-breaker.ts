// A small circuit breaker for Redis: after `failureThreshold` consecutive
// failures it opens for `cooldownMs`, then lets one trial call through
// (half-open); success closes it, failure opens it again.
//
// With a `probe`, the breaker does not wait for the next call to find out: when
// the cooldown ends it goes half-open on its own timer and runs the probe as the
// trial, so its state (and the gauge fed from onStateChange) says "closed" soon
// after the dependency is back, even when nothing asks.
export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  failureThreshold: number;
  cooldownMs: number;
  clock?: () => number;
  onStateChange?: (state: BreakerState) => void;
  /** The trial the breaker runs itself when a cooldown ends: resolves if the dependency answers. */
  probe?: () => Promise<unknown>;
}

export class CircuitBreaker {
  private failures = 0;
  private openedAt = 0;
  private current: BreakerState = 'closed';
  private trialInFlight = false;
  private probeTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly clock: () => number;

  constructor(private readonly options: BreakerOptions) {
    this.clock = options.clock ?? Date.now;
  }

  get state(): BreakerState {
    if (this.current === 'open' && this.clock() - this.openedAt >= this.options.cooldownMs) this.transition('half-open');
    return this.current;
  }

  /** Whether a call may go out now. In half-open only one trial at a time. */
  allow(): boolean {
    const state = this.state;
    if (state === 'closed') return true;
    if (state === 'half-open' && !this.trialInFlight) {
      this.trialInFlight = true;
      return true;
    }
    return false;
  }

  success(): void {
    this.failures = 0;
    this.trialInFlight = false;
    if (this.current !== 'closed') this.transition('closed');
  }

  failure(): void {
    this.trialInFlight = false;
    this.failures += 1;
    if (this.current === 'half-open' || (this.current === 'closed' && this.failures >= this.options.failureThreshold)) {
      this.openedAt = this.clock();
      this.transition('open');
      this.scheduleProbe();
    }
  }

  /** Stops the probe timer (shutdown). */
  close(): void {
    this.closed = true;
    clearTimeout(this.probeTimer);
  }

  private scheduleProbe(): void {
    const probe = this.options.probe;
    if (!probe || this.closed) return;
    clearTimeout(this.probeTimer);
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      // A call may have taken the trial already; its outcome decides instead.
      if (!this.allow()) return;
      probe().then(
        () => this.success(),
        () => this.failure(),
      );
    }, this.options.cooldownMs);
    this.probeTimer.unref();
  }

  private transition(state: BreakerState): void {
    this.current = state;
    this.options.onStateChange?.(state);
  }
}

// Retry delays for the agent: exponential with full jitter (AWS's "Exponential
// Backoff And Jitter"), so agents that lost the registry together do not come back
// in lockstep.

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** Uniform in [0, 1); injectable for tests. */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly options: BackoffOptions) {
    this.random = options.random ?? Math.random;
  }

  /** The delay before the next attempt: random in [0, min(max, base·2^attempt)), at least 10% of the cap. */
  next(): number {
    const cap = Math.min(this.options.maxMs, this.options.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.max(cap * 0.1, Math.floor(this.random() * cap));
  }

  reset(): void {
    this.attempt = 0;
  }

  get failures(): number {
    return this.attempt;
  }
}

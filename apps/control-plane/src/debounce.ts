// Batches bursts of changes (cf. contour's handler): run `fn` once the input has
// been quiet for `holdOffMs`, but no later than `maxMs` after the first change.
// Runs never overlap; changes that arrive during a run schedule one more run.
export class Debouncer {
  private firstAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** A run due at once (no hold-off left): after the events read in this turn, without a timer's 1 ms floor. */
  private immediate: NodeJS.Immediate | undefined;
  private running = false;
  private again = false;
  private closed = false;

  constructor(
    private readonly fn: (firstChangeAt: number) => Promise<void> | void,
    private readonly holdOffMs: number,
    private readonly maxMs: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  trigger(now = Date.now()): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      this.firstAt ??= now;
      return;
    }
    this.firstAt ??= now;
    if (this.immediate) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const delay = Math.max(0, Math.min(this.holdOffMs, this.firstAt + this.maxMs - now));
    // setTimeout(0) waits for the next loop's timers (at least 1 ms); an immediate runs once this turn's I/O is read.
    if (delay === 0) this.immediate = setImmediate(() => void this.run());
    else this.timer = setTimeout(() => void this.run(), delay);
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
  }

  private async run(): Promise<void> {
    this.timer = undefined;
    this.immediate = undefined;
    const firstAt = this.firstAt ?? Date.now();
    this.firstAt = undefined;
    this.running = true;
    try {
      await this.fn(firstAt);
    } catch (err) {
      this.onError(err);
    } finally {
      this.running = false;
    }
    if (this.again && !this.closed) {
      // Changes arrived during the run; `firstAt` still holds when the first of them came.
      this.again = false;
      this.trigger();
    }
  }
}

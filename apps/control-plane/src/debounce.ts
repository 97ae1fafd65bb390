// Batches bursts of changes (cf. contour's handler): run `fn` once the input has
// been quiet for `holdOffMs`, but no later than `maxMs` after the first change.
// Runs never overlap; changes that arrive during a run schedule one more run.
export class Debouncer {
  private firstAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
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
    if (this.timer) clearTimeout(this.timer);
    const delay = Math.max(0, Math.min(this.holdOffMs, this.firstAt + this.maxMs - now));
    this.timer = setTimeout(() => void this.run(), delay);
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private async run(): Promise<void> {
    this.timer = undefined;
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

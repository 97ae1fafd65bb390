// Denials are logged, but a flood of them (a misbehaving client, an attack) must
// not turn logging into the bottleneck: per reason, at most `perSecond` lines a
// second; the next line says how many were left out. Metrics count every one.
// The line's fields are built only when it is written (`fields` is called then).
import type { Logger } from '@trellis/runtime';
import type { DenyReason } from './decision';

export class DenialLog {
  private readonly windows = new Map<string, { start: number; logged: number; suppressed: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly perSecond = 10,
    private readonly clock: () => number = Date.now,
  ) {}

  denied(reason: DenyReason, fields: () => Record<string, unknown>): void {
    if (!this.logger.isLevelEnabled('info')) return;
    const now = this.clock();
    let window = this.windows.get(reason);
    let suppressed = 0;
    if (!window || now - window.start >= 1000) {
      suppressed = window?.suppressed ?? 0;
      window = { start: now, logged: 0, suppressed: 0 };
      this.windows.set(reason, window);
    }
    if (window.logged >= this.perSecond) {
      window.suppressed += 1;
      return;
    }
    window.logged += 1;
    this.logger.info({ ...fields(), reason, ...(suppressed > 0 ? { suppressedSinceLastLine: suppressed } : {}) }, 'request denied');
  }
}

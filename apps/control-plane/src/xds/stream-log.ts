// What the log says about ADS streams opening and closing. One line per stream is what an operator
// wants when a few proxies come and go (which proxy, which service, which request id), and noise
// when thousands do at once: a replica's start, a rollout, every proxy reconnecting after a
// network cut (5,000 "opened" lines in a few seconds, and as many "closed" on the replica they
// left). So each window logs its first streams' lines at info and the rest at debug, and when a
// window had more, one info line with the window's counts. The open streams per protocol and kind
// are the `xds_connected_proxies` gauge; refusals keep their own warning (ads-server.ts).
import type { Logger } from '@trellis/runtime';

export interface StreamLogOptions {
  /** Length of a window, from its first open or close. */
  windowMs: number;
  /** Open and close lines logged at info per window; later ones at debug. */
  infoLinesPerWindow: number;
}

export const DEFAULT_STREAM_LOG: StreamLogOptions = { windowMs: 10_000, infoLinesPerWindow: 10 };

type StreamEvent = 'opened' | 'closed';

export class StreamLog {
  private timer: NodeJS.Timeout | undefined;
  private windowStart = 0;
  private readonly counts = { opened: 0, closed: 0 };
  private infoLines = 0;

  constructor(
    private readonly logger: Logger,
    private readonly options: StreamLogOptions = DEFAULT_STREAM_LOG,
  ) {}

  /** `fields` is called only when the line is written (at debug, in a storm, it usually is not). */
  opened(fields: () => object): void {
    this.event('opened', fields);
  }

  closed(fields: () => object): void {
    this.event('closed', fields);
  }

  /** Writes what the current window counted (at shutdown). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.endWindow();
  }

  private event(event: StreamEvent, fields: () => object): void {
    this.counts[event]++;
    if (!this.timer) {
      this.windowStart = Date.now();
      this.timer = setTimeout(() => this.endWindow(), this.options.windowMs).unref();
    }
    const message = event === 'opened' ? 'xds stream opened' : 'xds stream closed';
    if (this.infoLines < this.options.infoLinesPerWindow) {
      this.infoLines++;
      this.logger.info(fields(), message);
    } else if (this.logger.isLevelEnabled('debug')) {
      this.logger.debug(fields(), message);
    }
  }

  private endWindow(): void {
    this.timer = undefined;
    const { opened, closed } = this.counts;
    const linesAtDebug = opened + closed - this.infoLines;
    if (linesAtDebug > 0) {
      const seconds = Math.round((Date.now() - this.windowStart) / 100) / 10;
      this.logger.info({ opened, closed, seconds, linesAtDebug }, 'xds streams opened and closed (more than the info lines said)');
    }
    this.counts.opened = 0;
    this.counts.closed = 0;
    this.infoLines = 0;
  }
}

import type { Logger } from 'pino';
import type { Health } from './health';

export interface ShutdownStep {
  name: string;
  run: () => Promise<void> | void;
}

/**
 * Graceful shutdown on SIGTERM/SIGINT: readiness goes false first, then after
 * `drainMs` the steps run in order (stop accepting, drain, close clients), then exit.
 * Returns the function so tests and the local mesh can trigger it directly.
 */
export function installShutdown(options: {
  logger: Logger;
  health: Health;
  steps: ShutdownStep[];
  drainMs?: number;
  timeoutMs?: number;
  exit?: (code: number) => void;
}): () => Promise<void> {
  const { logger, health, steps, drainMs = 0, timeoutMs = 15_000, exit = (code) => process.exit(code) } = options;
  let shuttingDown: Promise<void> | undefined;

  const shutdown = (): Promise<void> => {
    if (shuttingDown) return shuttingDown;
    shuttingDown = (async () => {
      logger.info({ drainMs }, 'shutting down: no longer ready');
      health.startDraining();
      if (drainMs > 0) await new Promise((resolve) => setTimeout(resolve, drainMs));
      const deadline = setTimeout(() => {
        logger.error({ timeoutMs }, 'shutdown timed out; exiting');
        exit(1);
      }, timeoutMs);
      deadline.unref();
      let code = 0;
      for (const step of steps) {
        try {
          await step.run();
          logger.info({ step: step.name }, 'shutdown step done');
        } catch (err) {
          code = 1;
          logger.error({ err, step: step.name }, 'shutdown step failed');
        }
      }
      clearTimeout(deadline);
      logger.info('shutdown complete');
      exit(code);
    })();
    return shuttingDown;
  };

  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
  return shutdown;
}

import type { Logger } from 'pino';
import type { Health } from './health';

/** One thing to stop on shutdown; an app's `startX` returns its steps in the order they run. */
export interface ShutdownStep {
  name: string;
  run: () => Promise<void> | void;
}

/** Runs `steps` in order; a failing step is reported and the rest still run. Returns the failures. */
export async function runShutdownSteps(
  steps: readonly ShutdownStep[],
  report: (step: ShutdownStep, err?: unknown) => void = () => undefined,
): Promise<{ step: string; err: unknown }[]> {
  const failures: { step: string; err: unknown }[] = [];
  for (const step of steps) {
    try {
      await step.run();
      report(step);
    } catch (err) {
      failures.push({ step: step.name, err });
      report(step, err);
    }
  }
  return failures;
}

/**
 * An app's `close()`: readiness goes false, then the steps run once, in order
 * (later calls share the first run). Rejects naming the steps that failed.
 */
export function closeInOrder(health: Health, steps: readonly ShutdownStep[]): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () =>
    (closing ??= (async () => {
      health.startDraining();
      const failures = await runShutdownSteps(steps);
      if (failures.length > 0)
        throw new AggregateError(
          failures.map((f) => f.err),
          `shutdown steps failed: ${failures.map((f) => f.step).join(', ')}`,
        );
    })());
}

/**
 * For an app's start: a step that fails (a port taken, a file that does not load) first stops what
 * the start had started, with `close`, then rejects with its own error, so nothing it opened keeps the
 * process alive. A failure of `close` itself is logged, not thrown over the start's error.
 */
export function stoppingOnFailure(close: () => Promise<void>, logger: Pick<Logger, 'error'>): <T>(starting: Promise<T>) => Promise<T> {
  return (starting) =>
    starting.catch(async (err: unknown) => {
      await close().catch((stopErr: unknown) => logger.error({ err: stopErr }, 'stopping after a failed start failed'));
      throw err;
    });
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
      const failures = await runShutdownSteps(steps, (step, err) =>
        err === undefined
          ? logger.info({ step: step.name }, 'shutdown step done')
          : logger.error({ err, step: step.name }, 'shutdown step failed'),
      );
      clearTimeout(deadline);
      logger.info('shutdown complete');
      exit(failures.length > 0 ? 1 : 0);
    })();
    return shuttingDown;
  };

  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
  return shutdown;
}

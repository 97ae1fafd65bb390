import { ConfigError } from './config';
import { createLogger, type Logger } from './logger';

/**
 * Runs an app's async main; a configuration error prints the message naming the
 * variable and exits 2, any other startup failure exits 1. Installs the process
 * guards first, so a failure after startup is logged with its cause too.
 */
export function runMain(app: string, main: () => Promise<unknown>): void {
  installProcessGuards(createLogger(app));
  main().catch((err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${app}: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`${app}: failed to start: ${describeError(err)}\n`);
    process.exit(1);
  });
}

/**
 * An unhandled rejection or uncaught exception means state we can no longer
 * trust: log it as one structured line, with its whole cause chain, then exit 1
 * (the supervisor restarts us). Without this Node prints a bare stack to stderr
 * and the logs say nothing about which input did it.
 */
export function installProcessGuards(logger: Pick<Logger, 'fatal'>, exit: (code: number) => void = (code) => process.exit(code)): void {
  const die = (what: 'unhandled rejection' | 'uncaught exception') => (reason: unknown) => {
    try {
      logger.fatal({ err: reason, causes: causeChain(reason) }, `${what}: exiting`);
    } finally {
      exit(1);
    }
  };
  process.on('unhandledRejection', die('unhandled rejection'));
  process.on('uncaughtException', die('uncaught exception'));
}

/** The messages of `err.cause`, its cause, and so on (pino's serializer shows only the first error's stack). */
export function causeChain(err: unknown): string[] {
  const chain: string[] = [];
  const seen = new Set<unknown>();
  let cause = err instanceof Error ? err.cause : undefined;
  while (cause !== undefined && !seen.has(cause) && chain.length < 10) {
    seen.add(cause);
    chain.push(cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause));
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return chain;
}

function describeError(err: unknown): string {
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  const causes = causeChain(err);
  return causes.length > 0 ? `${text}\n  caused by: ${causes.join('\n  caused by: ')}` : text;
}

import pino, { type Logger } from 'pino';
import { REDACTED, redactDeep } from './redact';

export type { Logger } from 'pino';

/**
 * Structured JSON logs to stdout; credentials never reach them: every logged object and
 * every child logger's bindings go through redactDeep (any depth, any key spelling).
 */
export function createLogger(
  app: string,
  level: string = process.env['TRELLIS_LOG_LEVEL'] ?? 'info',
  destination?: pino.DestinationStream,
): Logger {
  const options: pino.LoggerOptions = {
    name: app,
    level,
    base: { app },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { log: (object) => redactDeep(object) },
    // Errors are serialized after the formatter: their own fields get the common paths.
    redact: { paths: ['err.config.headers.authorization', 'err.headers.authorization', 'err.token'], censor: REDACTED },
  };
  const logger = destination ? pino(options, destination) : pino(options);
  // pino serializes a child's bindings once, without the formatters: redact them here. Child
  // loggers inherit from their parent, so every descendant's child() comes through this too.
  const child = Object.getPrototypeOf(logger).child as Logger['child'];
  logger.child = function (this: Logger, bindings, childOptions) {
    return child.call(this, redactDeep(bindings), childOptions);
  } as Logger['child'];
  return logger;
}

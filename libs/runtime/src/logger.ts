import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

/** Structured JSON logs to stdout; credentials never reach them. */
export function createLogger(app: string, level: string = process.env['TRELLIS_LOG_LEVEL'] ?? 'info'): Logger {
  return pino({
    name: app,
    level,
    base: { app },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: [
        'authorization',
        'cookie',
        '*.authorization',
        '*.cookie',
        'req.headers.authorization',
        'req.headers.cookie',
        'headers.authorization',
        'headers.cookie',
        'token',
        '*.token',
        'privateKey',
        '*.privateKey',
      ],
      censor: '[redacted]',
    },
  });
}

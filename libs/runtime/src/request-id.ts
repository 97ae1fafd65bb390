// One id per HTTP request, for following it through logs and across services: the caller's
// X-Request-Id when it is a sane token, else the trace id of its W3C traceparent, else a new
// UUID. It is echoed (X-Request-Id, and traceparent when one came in), kept in
// res.locals.requestId with a child logger in res.locals.log, and logged when the request ends.
import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import { parseTraceparent, REQUEST_ID_HEADER, requestIdIn, TRACEPARENT_HEADER } from '@trellis/mesh-contracts';
import type { Logger } from './logger';

// The parsing rules are the mesh's (W3C Trace Context, in @trellis/mesh-contracts); re-exported for the apps.
export { parseTraceparent, REQUEST_ID_HEADER, requestIdIn, TRACEPARENT_HEADER };

/** The request id for these headers (see the file comment for the order). */
export function requestIdFor(headers: Readonly<Record<string, string | readonly string[] | undefined>>): string {
  return requestIdIn(headers) ?? randomUUID();
}

/** Health probes and scrapes are logged at debug, so they do not drown the rest. */
const QUIET_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

export function requestIds(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const requestId = requestIdFor(req.headers);
    const started = process.hrtime.bigint();
    res.setHeader('X-Request-Id', requestId);
    const traceparent = req.headers[TRACEPARENT_HEADER];
    if (typeof traceparent === 'string' && parseTraceparent(traceparent)) res.setHeader('traceparent', traceparent.trim());
    const log = logger.child({ requestId });
    res.locals['requestId'] = requestId;
    res.locals['log'] = log;
    res.on('finish', () => {
      const entry = {
        method: req.method,
        path: req.path,
        status: res.statusCode,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
      };
      if (QUIET_PATHS.has(req.path)) log.debug(entry, 'request');
      else log.info(entry, 'request');
    });
    next();
  };
}

// One id per HTTP request, for following it through logs and across services: the caller's
// X-Request-Id when it is a sane token, else the trace id of its W3C traceparent, else a new
// UUID. It is echoed (X-Request-Id, and traceparent when one came in), kept in
// res.locals.requestId with a child logger in res.locals.log, and logged when the request ends.
import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from './logger';

export const REQUEST_ID_HEADER = 'x-request-id';
export const TRACEPARENT_HEADER = 'traceparent';

/** A caller's id is taken as is only when it cannot forge log structure or grow without bound. */
const CALLER_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** W3C Trace Context: version-traceid-parentid-flags; an all-zero trace or parent id is invalid. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export function parseTraceparent(value: string | undefined): { traceId: string; parentId: string } | undefined {
  const match = TRACEPARENT.exec(value?.trim() ?? '');
  if (!match || match[1] === 'ff' || /^0+$/.test(match[2]!) || /^0+$/.test(match[3]!)) return undefined;
  return { traceId: match[2]!, parentId: match[3]! };
}

/** The request id for these headers (see the file comment for the order). */
export function requestIdFor(headers: Record<string, string | string[] | undefined>): string {
  const given = headers[REQUEST_ID_HEADER];
  const id = Array.isArray(given) ? given[0] : given;
  if (id && CALLER_ID.test(id)) return id;
  const traceparent = headers[TRACEPARENT_HEADER];
  return parseTraceparent(Array.isArray(traceparent) ? traceparent[0] : traceparent)?.traceId ?? randomUUID();
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

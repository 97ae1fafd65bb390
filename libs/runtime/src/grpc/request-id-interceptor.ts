// One id per gRPC call, as requestIds() gives every HTTP request: the caller's x-request-id
// metadata when it is a sane token, else the trace id of its W3C traceparent, else a new
// UUID. Handlers read it from call.metadata (x-request-id, normalised); it is echoed in the
// response headers (with the traceparent that came in) and logged when the call ends.
import { ServerInterceptingCall, status as GrpcStatus, type Metadata, type ServerInterceptor } from '@grpc/grpc-js';
import type { Logger } from '../logger';
import { parseTraceparent, REQUEST_ID_HEADER, requestIdFor, TRACEPARENT_HEADER } from '../request-id';

/** Health checks are logged at debug, so they do not drown the rest. */
const QUIET_METHODS = new Set(['/grpc.health.v1.Health/Check', '/grpc.health.v1.Health/Watch']);

function first(metadata: Metadata, key: string): string | undefined {
  const [value] = metadata.get(key);
  return value === undefined ? undefined : value.toString();
}

export function requestIdInterceptor(logger: Logger): ServerInterceptor {
  return (method, call) => {
    let requestId = '';
    let traceparent: string | undefined;
    const started = process.hrtime.bigint();
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            traceparent = first(metadata, TRACEPARENT_HEADER)?.trim();
            if (!parseTraceparent(traceparent)) traceparent = undefined;
            requestId = requestIdFor({ [REQUEST_ID_HEADER]: first(metadata, REQUEST_ID_HEADER), [TRACEPARENT_HEADER]: traceparent });
            metadata.set(REQUEST_ID_HEADER, requestId);
            nextMetadata(metadata);
          },
        }),
      sendMetadata: (metadata, next) => {
        metadata.set(REQUEST_ID_HEADER, requestId);
        if (traceparent) metadata.set(TRACEPARENT_HEADER, traceparent);
        next(metadata);
      },
      sendStatus: (status, next) => {
        const entry = {
          requestId,
          method: method.path,
          code: GrpcStatus[status.code],
          seconds: Number(process.hrtime.bigint() - started) / 1e9,
        };
        if (QUIET_METHODS.has(method.path)) logger.debug(entry, 'grpc call');
        else logger.info(entry, 'grpc call');
        next(status);
      },
    });
  };
}

// W3C trace context and request ids for proxyless gRPC services: what a sidecar's
// tracer and x-request-id handling give, as grpc-js interceptors.
//
// Server side, each call's context (trace id, the caller's span id, the request id)
// is read from its metadata — or started when the caller sent none or an invalid
// one — and kept in an AsyncLocalStorage around everything the handler does.
// Client side, a call made while handling one carries a child traceparent (same
// trace id, a new parent id), its tracestate and its x-request-id; a call made
// outside any handled call starts a new trace.
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  InterceptingCall,
  Metadata,
  ServerInterceptingCall,
  status,
  type Interceptor,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import {
  childTraceparent,
  formatTraceparent,
  newTraceparent,
  parseTraceparent,
  parseTracestate,
  REQUEST_ID_HEADER,
  saneRequestId,
  TRACE_FLAG_SAMPLED,
  TRACEPARENT_HEADER,
  TRACESTATE_HEADER,
  type TraceParent,
} from '@trellis/mesh-contracts';

/** The trace context of the call being handled. */
export interface CallTrace {
  /** The caller's x-request-id when it is a sane token, else the trace id. Logged with every line about the call. */
  requestId: string;
  /** The trace: the caller's, or one started for this call. */
  traceId: string;
  /** The caller's span (the traceparent's parent-id), or the span started for this call. */
  parentId: string;
  /** trace-flags (bit 0: sampled). */
  flags: number;
  tracestate: string | undefined;
  /** false when the caller sent no valid traceparent and this call started the trace. */
  continued: boolean;
}

const current = new AsyncLocalStorage<CallTrace>();

/** The trace context of the call whose handler is running, wherever in its async work; undefined outside one. */
export function currentCallTrace(): CallTrace | undefined {
  return current.getStore();
}

/** What the server interceptor logs with: a pino logger fits. */
export interface CallLogger {
  info(fields: object, message: string): void;
  debug(fields: object, message: string): void;
}

export interface TraceContextOptions {
  /** Mark traces this service starts as sampled (only when it records spans somewhere); default false. */
  sampleNewTraces?: boolean;
}

export interface TraceContextServerOptions extends TraceContextOptions {
  /** One line per call (request id, trace id, method, status code); health checks at debug. */
  logger?: CallLogger;
}

/** The context of a call with this metadata: the caller's trace when its traceparent is valid, else a new one. */
export function callTraceOf(metadata: Metadata, options: TraceContextOptions = {}): CallTrace {
  const received = parseTraceparent(firstString(metadata, TRACEPARENT_HEADER));
  const trace = received ?? newTraceparent({ sampled: options.sampleNewTraces ?? false });
  return {
    requestId: saneRequestId(firstString(metadata, REQUEST_ID_HEADER)) ?? trace.traceId,
    traceId: trace.traceId,
    parentId: trace.parentId,
    flags: trace.flags,
    // A tracestate without a valid traceparent means nothing (the spec says not to parse it).
    tracestate: received ? parseTracestate(strings(metadata, TRACESTATE_HEADER)) : undefined,
    continued: received !== undefined,
  };
}

/**
 * What an outgoing call carries: a traceparent the application set itself is kept; else a child of the
 * call being handled (`parent`), with its tracestate and request id; else a new trace.
 */
export function outgoingTraceHeaders(
  metadata: Metadata,
  parent: CallTrace | undefined,
  options: TraceContextOptions = {},
): Record<string, string> {
  if (parseTraceparent(firstString(metadata, TRACEPARENT_HEADER))) return {};
  if (!parent) return { [TRACEPARENT_HEADER]: formatTraceparent(newTraceparent({ sampled: options.sampleNewTraces ?? false })) };
  const headers: Record<string, string> = { [TRACEPARENT_HEADER]: formatTraceparent(childTraceparent(parent)) };
  if (parent.tracestate) headers[TRACESTATE_HEADER] = parent.tracestate;
  if (metadata.get(REQUEST_ID_HEADER).length === 0) headers[REQUEST_ID_HEADER] = parent.requestId;
  return headers;
}

/** Health checks are logged at debug, so they do not drown the rest. */
const QUIET_PREFIX = '/grpc.health.v1.Health/';

/**
 * Server interceptor: reads (or starts) each call's trace context, normalises the metadata handlers see
 * (`x-request-id`, `traceparent`), runs the handler inside it (`currentCallTrace()`), echoes `x-request-id`
 * (and a received `traceparent`) in the response headers and logs the call. Nothing in here fails a call
 * that would otherwise succeed; an unexpected error ends it with INTERNAL, never an unhandled rejection.
 */
export function traceContextServerInterceptor(options: TraceContextServerOptions = {}): ServerInterceptor {
  return (method, call: ServerInterceptingCallInterface) => {
    let trace: CallTrace | undefined;
    const started = process.hrtime.bigint();
    const fail = () => {
      try {
        call.sendStatus({ code: status.INTERNAL, details: 'trace context interceptor failed' });
      } catch {
        // The call is already over: nothing left to tell the client.
      }
    };
    const within = (next: () => void) => (trace ? current.run(trace, next) : next());
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            try {
              trace = callTraceOf(metadata, options);
              metadata.set(REQUEST_ID_HEADER, trace.requestId);
              metadata.set(TRACEPARENT_HEADER, formatTraceparent(trace));
              if (trace.tracestate) metadata.set(TRACESTATE_HEADER, trace.tracestate);
              else metadata.remove(TRACESTATE_HEADER);
            } catch {
              return fail();
            }
            current.run(trace, () => nextMetadata(metadata));
          },
          onReceiveMessage(message, nextMessage) {
            within(() => nextMessage(message));
          },
          onReceiveHalfClose(nextHalfClose) {
            within(nextHalfClose);
          },
        });
      },
      sendMetadata(metadata, next) {
        if (trace) {
          metadata.set(REQUEST_ID_HEADER, trace.requestId);
          if (trace.continued) metadata.set(TRACEPARENT_HEADER, formatTraceparent(trace));
        }
        next(metadata);
      },
      sendStatus(callStatus, next) {
        if (options.logger) {
          try {
            const fields = {
              requestId: trace?.requestId,
              traceId: trace?.traceId,
              method: method.path,
              code: status[callStatus.code],
              seconds: Number(process.hrtime.bigint() - started) / 1e9,
            };
            if (method.path.startsWith(QUIET_PREFIX)) options.logger.debug(fields, 'grpc call');
            else options.logger.info(fields, 'grpc call');
          } catch {
            // A logger that fails must not take the call with it.
          }
        }
        next(callStatus);
      },
    });
  };
}

/**
 * Client interceptor: gives every call a W3C traceparent — a child of the call being handled, when there
 * is one, with its tracestate and x-request-id — or a new trace. An unexpected error ends the call with
 * INTERNAL before it is sent.
 */
export function traceContextInterceptor(options: TraceContextOptions = {}): Interceptor {
  return (callOptions, nextCall) =>
    new InterceptingCall(nextCall(callOptions), {
      start(metadata, listener, next) {
        try {
          for (const [key, value] of Object.entries(outgoingTraceHeaders(metadata, currentCallTrace(), options))) metadata.set(key, value);
        } catch (err) {
          listener.onReceiveStatus({
            code: status.INTERNAL,
            details: `trace context interceptor failed: ${err instanceof Error ? err.message : String(err)}`,
            metadata: new Metadata(),
          });
          return;
        }
        next(metadata, listener);
      },
    });
}

/** Whether the trace of this context is sampled (someone upstream records it). */
export function isSampled(trace: Pick<TraceParent, 'flags'>): boolean {
  return (trace.flags & TRACE_FLAG_SAMPLED) !== 0;
}

function strings(metadata: Metadata, key: string): string[] {
  return metadata.get(key).filter((v): v is string => typeof v === 'string');
}

function firstString(metadata: Metadata, key: string): string | undefined {
  return strings(metadata, key)[0];
}

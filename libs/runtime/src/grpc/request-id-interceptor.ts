// One id per gRPC call, as requestIds() gives every HTTP request: the caller's x-request-id
// metadata when it is a sane token, else the trace id of its W3C traceparent, else a new
// UUID. Handlers read it from call.metadata (x-request-id, normalised); it is echoed in the
// response headers (with the traceparent that came in) and logged when the call ends.
import {
  Metadata,
  ServerInterceptingCall,
  status as GrpcStatus,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import type { Logger } from '../logger';
import { parseTraceparent, REQUEST_ID_HEADER, requestIdFor, TRACEPARENT_HEADER } from '../request-id';

/** Health checks are logged at debug, so they do not drown the rest. */
const QUIET_METHODS = new Set(['/grpc.health.v1.Health/Check', '/grpc.health.v1.Health/Watch']);

type Listener = Parameters<ServerInterceptingCallInterface['start']>[0];
type Status = Parameters<ServerInterceptingCallInterface['sendStatus']>[0];

function first(metadata: Metadata, key: string): string | undefined {
  const [value] = metadata.get(key);
  return value === undefined ? undefined : value.toString();
}

export function requestIdInterceptor(logger: Logger): ServerInterceptor {
  return (method, call) => new RequestIdCall(call, method.path, logger);
}

/**
 * The interceptor's call. grpc-js's generic ServerInterceptingCall runs every message, both ways, through
 * responder and listener callbacks (asynchronous-capable, with pending queues); this one touches only the
 * metadata and the status, and hands messages straight to the call below and to the handler's listener
 * (an xDS stream carries a dozen in its first push and one per ACK after).
 */
class RequestIdCall extends ServerInterceptingCall {
  private requestId = '';
  private traceparent: string | undefined;
  private metadataSent = false;
  private cancelled = false;
  private readonly started = process.hrtime.bigint();

  constructor(
    private readonly next: ServerInterceptingCallInterface,
    private readonly path: string,
    private readonly logger: Logger,
  ) {
    super(next);
  }

  override start(listener: Listener): void {
    // As grpc-js's generic call does: after a cancellation only cancellations reach the handler.
    this.next.start({
      onReceiveMetadata: (metadata) => {
        if (this.cancelled) return;
        const traceparent = first(metadata, TRACEPARENT_HEADER)?.trim();
        this.traceparent = parseTraceparent(traceparent) ? traceparent : undefined;
        this.requestId = requestIdFor({ [REQUEST_ID_HEADER]: first(metadata, REQUEST_ID_HEADER), [TRACEPARENT_HEADER]: this.traceparent });
        metadata.set(REQUEST_ID_HEADER, this.requestId);
        listener.onReceiveMetadata(metadata);
      },
      onReceiveMessage: (message) => {
        if (!this.cancelled) listener.onReceiveMessage(message);
      },
      onReceiveHalfClose: () => {
        if (!this.cancelled) listener.onReceiveHalfClose();
      },
      onCancel: () => {
        this.cancelled = true;
        listener.onCancel();
      },
    });
  }

  override sendMetadata(metadata: Metadata): void {
    this.metadataSent = true;
    metadata.set(REQUEST_ID_HEADER, this.requestId);
    if (this.traceparent) metadata.set(TRACEPARENT_HEADER, this.traceparent);
    this.next.sendMetadata(metadata);
  }

  override sendMessage(message: unknown, callback: () => void): void {
    // The headers go first, with the id (a handler that writes without sending metadata gets them here).
    if (!this.metadataSent) this.sendMetadata(new Metadata());
    this.next.sendMessage(message, callback);
  }

  override sendStatus(status: Status): void {
    const entry = {
      requestId: this.requestId,
      method: this.path,
      code: GrpcStatus[status.code],
      seconds: Number(process.hrtime.bigint() - this.started) / 1e9,
    };
    if (QUIET_METHODS.has(this.path)) this.logger.debug(entry, 'grpc call');
    else this.logger.info(entry, 'grpc call');
    this.next.sendStatus(status);
  }
}

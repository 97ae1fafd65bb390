// A Check's request id, for its log lines: the one on the request it decides
// (Envoy keeps or generates x-request-id before ext_authz runs, and sends the
// request's headers in the CheckRequest), else the trace id of that request's
// traceparent, else the same from the Check call's own gRPC metadata (Envoy's
// tracer injects a traceparent there), else a new UUID. It is worked out only
// when a line is logged: an allowed Check at info level never decodes the HTTP
// attributes for it. Not echoed in the CheckResponse: that would defeat the
// encoded responses reused across Checks, and the sidecar echoes it to the
// client instead (always_set_request_id_in_response).
import { randomUUID } from 'node:crypto';
import { REQUEST_ID_HEADER, requestIdIn, TRACEPARENT_HEADER } from '@trellis/mesh-contracts';
import type { CheckAttributes } from './check-attributes';

/** The part of grpc-js's Metadata read here. */
export interface CallMetadata {
  get(key: string): Array<string | Buffer>;
}

export function checkRequestId(attributes: CheckAttributes, metadata: CallMetadata | undefined): string {
  const headers = attributes.http()?.headers;
  return (
    (headers && requestIdIn(headers)) ??
    (metadata &&
      requestIdIn({
        [REQUEST_ID_HEADER]: firstString(metadata, REQUEST_ID_HEADER),
        [TRACEPARENT_HEADER]: firstString(metadata, TRACEPARENT_HEADER),
      })) ??
    randomUUID()
  );
}

function firstString(metadata: CallMetadata, key: string): string | undefined {
  const [value] = metadata.get(key);
  return typeof value === 'string' ? value : undefined;
}

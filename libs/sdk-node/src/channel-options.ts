// Channel options a proxyless client needs beyond what xDS can carry.
import type { ChannelOptions } from '@grpc/grpc-js';

/**
 * HTTP/2 keepalive on every connection that has calls in flight. A hung
 * instance (a frozen process, a half-open connection) still accepts TCP and never
 * answers; without a ping its calls wait for their deadline. With one, the
 * connection is dropped within about 3 s, its calls end UNAVAILABLE before any
 * response began, and the route's retry policy (the control plane's default
 * retries UNAVAILABLE) sends them to another instance. Reconnecting to the hung
 * instance waits for its HTTP/2 SETTINGS, so it gets no calls until it answers again.
 */
export const PROXYLESS_CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': 1_000,
  'grpc.keepalive_timeout_ms': 2_000,
};

// Channel options a proxyless client needs beyond what xDS can carry.
import type { ChannelOptions } from '@grpc/grpc-js';

/**
 * HTTP/2 keepalive on every connection that has calls in flight. A hung
 * instance (a frozen process, a half-open connection) still accepts TCP and never
 * answers; without a ping its calls wait for their deadline. With one, the
 * connection is dropped within 1.5 s — inside a 2 s deadline, with time left for
 * the retry — its calls end UNAVAILABLE before any response began, and the
 * route's retry policy (the control plane's default retries UNAVAILABLE) sends
 * them to another instance. Reconnecting to the hung instance waits for its
 * HTTP/2 SETTINGS, so it gets no calls until it answers again. A ping that is
 * merely slow (a loaded host) costs a reconnect and retries, not failed calls.
 */
export const PROXYLESS_CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': 500,
  'grpc.keepalive_timeout_ms': 1_000,
};

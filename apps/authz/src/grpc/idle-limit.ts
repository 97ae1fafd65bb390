// grpc-js enforces grpc.max_connection_idle_ms (gRFC A9: close a connection that has had no
// open stream for that long) by counting each connection's open streams with a once('close')
// listener on every stream: a wrapper, a bound call and a listener array per Check, ~5 % of a
// cache-hit Check's CPU (docs/benchmarks.md, authz, "The idle limit's cost"). A connection whose
// streams are kept by id (session-streams.ts) counts them already, so from its first Check on
// grpc-js's count for it reads that registry's size, and the last stream leaving starts the idle
// clock as grpc-js's listener would. The limit itself does not change: grpc-js's own timer, its
// check (no open stream, idle for the limit) and its close are kept; only the counting moves.
//
// grpc-js has no public hook for this: it reads the per-connection state grpc-js 1.14 keeps in
// Server#sessionIdleTimeouts and wraps Server#onStreamOpened. Where either is not laid out as
// expected nothing changes and grpc-js keeps counting (idle-limit.test.ts fails first).
import type { Http2Session, ServerHttp2Stream } from 'node:http2';
import type { Server } from '@grpc/grpc-js';
import type { StreamsById } from './session-streams';

/** A value of grpc-js 1.14's Server#sessionIdleTimeouts: one connection's idle state. */
interface IdleState {
  activeStreams: number;
  lastIdle: number;
  timeout: NodeJS.Timeout;
}

interface ServerInternals {
  sessionIdleTimeouts?: unknown;
  onStreamOpened?: unknown;
}

/** Connections whose open streams are counted by their StreamsById: grpc-js adds no listener to their streams. */
const countedByRegistry = new WeakSet<Http2Session>();
const wrappedServers = new WeakSet<object>();

/**
 * From now on `server`'s idle limit counts `session`'s open streams with `streams` (the session's
 * registry, keepStreamsById's), instead of a 'close' listener per stream. False, and nothing changed,
 * where the server has no idle limit or grpc-js does not keep its state as 1.14 does.
 */
export function countOpenStreamsByRegistry(server: Server, session: Http2Session, streams: StreamsById<unknown>): boolean {
  const internals = server as unknown as ServerInternals;
  const states = internals.sessionIdleTimeouts;
  if (!(states instanceof Map) || typeof internals.onStreamOpened !== 'function') return false;
  const state: unknown = states.get(session);
  if (!isIdleState(state)) return false;
  wrapOnStreamOpened(internals);
  // grpc-js adds and subtracts one per stream it saw open (the listeners of streams already open still
  // will): the registry's size is the count, so its writes are dropped.
  Object.defineProperty(state, 'activeStreams', { get: () => streams.size, set: () => undefined, configurable: true });
  streams.onEmpty = () => {
    // What grpc-js's listener does when a connection's last stream closes.
    state.lastIdle = Date.now();
    state.timeout.refresh();
  };
  countedByRegistry.add(session);
  return true;
}

/** grpc-js's per-stream bookkeeping (the 'close' listener), skipped for connections counted by their registry. */
function wrapOnStreamOpened(internals: ServerInternals): void {
  if (wrappedServers.has(internals)) return;
  wrappedServers.add(internals);
  const onStreamOpened = internals.onStreamOpened as (this: unknown, stream: ServerHttp2Stream) => void;
  internals.onStreamOpened = function onStreamOpenedUnlessCounted(this: unknown, stream: ServerHttp2Stream): void {
    if (!countedByRegistry.has(stream.session!)) onStreamOpened.call(this, stream);
  };
}

function isIdleState(value: unknown): value is IdleState {
  if (typeof value !== 'object' || value === null) return false;
  const state = value as Partial<IdleState>;
  return typeof state.activeStreams === 'number' && typeof state.lastIdle === 'number' && typeof state.timeout?.refresh === 'function';
}

// Max connection age for the connections that carry ADS streams, ended with a status.
// grpc-js's own age (grpc.max_connection_age_ms) sends GOAWAY and, after the grace,
// destroys the connection: an ADS stream is still open then (one always is), and is
// cut without a status. grpc-js clients make one up: UNAVAILABLE "Connection dropped",
// or INTERNAL "Received RST_STREAM with code 0" when the cut's reset arrives first (a
// server bug, in their logs and metrics); neither says why. So the ADS server
// ages those connections itself: at the age it sends the same GOAWAY (`max_age`,
// every stream still allowed to finish), then ends each of the connection's ADS
// streams with UNAVAILABLE and a reason (and any that arrives after, sent before
// the client read the GOAWAY). The GOAWAY goes out first, so the client
// opens its next stream on a new connection (perhaps to another replica), as istiod
// and go-control-plane's servers have theirs do. grpc-js's age stays configured, later
// (backstopAgeMs), for connections no ADS stream ever opened on.
import { constants, type ServerHttp2Session } from 'node:http2';
import type { ServerDuplexStream } from '@grpc/grpc-js';

export const MAX_AGE_REASON = 'max connection age reached; reconnect';
/** The GOAWAY's debug data, as grpc-js's own age sends it. */
const MAX_AGE_GOAWAY_DATA = Buffer.from('max_age');
/** The highest stream id: every stream the client opened may still finish (gRFC A9's first GOAWAY). */
const LAST_STREAM_ID = 2 ** 31 - 1;

export interface ConnectionAgeLimits {
  /** A connection this old (±10 %, counted from its first ADS stream) is sent GOAWAY and its ADS streams end. */
  maxAgeMs: number;
  /** What still runs on the connection this long after, the ADS server cuts. */
  graceMs: number;
}

/**
 * The age to give grpc-js for `maxAgeMs`: its ±10 % then falls after this module's (≥ 1.35× against
 * ≤ 1.1×), so it only reaches connections without an ADS stream, and any this module could not see.
 * grpc-js counts from the connection's start, this module from its first ADS stream: the margin (a
 * quarter of the age: 250 ms at the bench's 1 s, 7.5 min at the default 30) is for a first stream that
 * a loaded server reaches late. At 1.25× it was 25 ms, and under load the backstop cut ADS streams
 * (a reset, no status) before this module ended them.
 */
export function backstopAgeMs(maxAgeMs: number): number {
  return Math.round(maxAgeMs * 1.5);
}

interface AgedConnection {
  /** How to end each open ADS stream on it. */
  streams: Set<() => void>;
  timer: NodeJS.Timeout;
  /** The age was reached: the GOAWAY is out. */
  aged: boolean;
}

/** Ages connections from their first ADS stream and ends their ADS streams cleanly at the age. */
export class ConnectionAges {
  private readonly connections = new WeakMap<ServerHttp2Session, AgedConnection>();

  constructor(
    private readonly limits: ConnectionAgeLimits,
    /** A connection reached its age; `streams` ADS streams were ended on it. */
    private readonly onAged: (streams: number) => void = () => undefined,
  ) {}

  /**
   * Registers an ADS stream on its connection: `end` ends it with UNAVAILABLE when the
   * connection reaches its age. Returns what to call once the stream ended otherwise.
   */
  track(session: ServerHttp2Session, end: () => void): () => void {
    let connection = this.connections.get(session);
    if (!connection) {
      const jitter = (Math.random() * 2 - 1) * (this.limits.maxAgeMs / 10);
      const timer = setTimeout(() => this.age(session), this.limits.maxAgeMs + jitter);
      timer.unref();
      connection = { streams: new Set(), timer, aged: false };
      this.connections.set(session, connection);
      session.once('close', () => clearTimeout(timer));
    }
    if (connection.aged) {
      // Opened by a client that had not read the GOAWAY yet (its last-stream-id lets every stream in). Left open, it
      // would run until a cut without a status (the grace, or grpc-js's backstop age), so it ends as its peers did.
      // Not from inside this call: the caller is still setting the stream up.
      setImmediate(end);
      return () => undefined;
    }
    const streams = connection.streams;
    streams.add(end);
    return () => streams.delete(end);
  }

  private age(session: ServerHttp2Session): void {
    const connection = this.connections.get(session)!;
    if (session.closed || session.destroyed) return;
    try {
      session.goaway(constants.NGHTTP2_NO_ERROR, LAST_STREAM_ID, MAX_AGE_GOAWAY_DATA);
    } catch {
      // Closed under us (as grpc-js's own age allows for): nothing left to end cleanly.
      session.destroy();
      return;
    }
    connection.aged = true;
    const ending = [...connection.streams];
    connection.streams.clear();
    for (const end of ending) end();
    this.onAged(ending.length);
    // Not session.close(): Node then destroys the connection the moment its last stream ends, with the statuses
    // and the client's ACKs still crossing; grpc-js clients read that as a protocol error (measured with the
    // xds-fanout bench, 300 streams on 30 connections aged at 1 s). The client, told GOAWAY, closes the
    // connection once its streams ended. What still runs is cut at the grace; with none, the statuses go out
    // first (destroyed at once, the clients kept reconnecting to connections cut under them) and grpc-js's
    // backstop age cuts the rest.
    if (this.limits.graceMs > 0) setTimeout(() => session.destroy(), this.limits.graceMs).unref();
  }
}

/**
 * The HTTP/2 connection a grpc-js server call runs on, or undefined if it cannot be found.
 * grpc-js does not expose it: the call wraps a chain of intercepting calls (`call`, then
 * `nextCall`), the innermost holding the http2 stream. test/connection-limits.test.ts checks
 * the streams' status against a real control plane, so an upgrade that moves it fails a test;
 * in production a miss leaves the connection to grpc-js's backstop age.
 */
export function http2SessionOf(call: ServerDuplexStream<unknown, unknown>): ServerHttp2Session | undefined {
  let link: unknown = (call as unknown as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && typeof link === 'object' && link !== null; depth++) {
    const stream = (link as { stream?: { session?: ServerHttp2Session } }).stream;
    if (stream?.session) return stream.session;
    link = (link as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

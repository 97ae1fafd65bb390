// The simulated Envoys' gRPC client: bidirectional streams of raw messages straight on node:http2, as Envoy's own
// gRPC client sits on its HTTP/2 codec. One process simulates thousands of Envoys, and grpc-js's client call path
// (interceptors, a retrying call, filters and a promise per message, object-mode streams, channelz) cost it more
// CPU per response than the servers it measures spent. What it keeps of gRPC: the request headers, the 5-byte
// length prefix of each message (uncompressed), the status from the trailers, and Envoy's flow-control windows.
import { connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { status } from '@grpc/grpc-js';

/**
 * How a stream ended: with a gRPC status (trailers, or a trailers-only response), or without one: reset by the server
 * (its RST_STREAM code), or cut with its connection (`connectionGone`; node:http2 then reports CANCEL).
 * `afterGoaway`: the server had sent its connection a GOAWAY (NO_ERROR: going away, not a protocol error) by then.
 */
export type StreamEnd =
  | { status: number; details: string }
  | { status: undefined; rstCode: number; connectionGone: boolean; afterGoaway: boolean; error?: Error };

/**
 * The stream ended because its connection went away, as a client should reconnect after: UNAVAILABLE (what the
 * control plane ends its ADS streams with at a connection's max age, and at shutdown); cut without a status with
 * its connection, closed cleanly; or, once the server sent the connection its GOAWAY, reset with NO_ERROR or
 * REFUSED_STREAM. That last is how the cut at the end of a GOAWAY'd connection mostly arrives: node:http2's
 * session.destroy() (the age's grace; grpc-js's max-age backstop) resets each open stream with the GOAWAY's code,
 * NO_ERROR, before it closes the socket, and the client reads the resets before the close; a stream the closing
 * server would not take is refused. Envoy retries a reset stream as it does any other failure of its xDS stream.
 * Anything else is the server's answer or a fault: another status, a reset on a connection not going away
 * (a server must end a gRPC stream with a status, and nothing in the control plane's path refuses one), a
 * CANCEL or other code, or a connection closed with an error.
 */
export function connectionWentAway(end: StreamEnd): boolean {
  if (end.status !== undefined) return end.status === status.UNAVAILABLE;
  if (end.connectionGone) return end.error === undefined;
  return end.afterGoaway && (end.rstCode === h2.NGHTTP2_NO_ERROR || end.rstCode === h2.NGHTTP2_REFUSED_STREAM);
}

/** Sessions the server sent a GOAWAY with NO_ERROR (its max connection age, its shutdown). */
const goneAway = new WeakSet<ClientHttp2Session>();

export interface GrpcStream {
  /** Writes one gRPC message, its 5-byte prefix included (xds-wire.ts writes requests that way). */
  write(message: Buffer): void;
}

/** One HTTP/2 connection to the target, opened again for new streams once it has gone away (GOAWAY, closed). */
export class GrpcConnection {
  private session: ClientHttp2Session | undefined;

  constructor(
    private readonly authority: string,
    /** Per-stream and connection flow-control window; 0 keeps HTTP/2's 64 KiB. */
    private readonly windowBytes: number,
  ) {}

  /** Opens a stream on `path`; `onMessage` gets each message (a view valid during the call), `onEnd` how it ended. */
  open(path: string, onMessage: (message: Buffer) => void, onEnd: (end: StreamEnd) => void): GrpcStream {
    const headers = {
      [h2.HTTP2_HEADER_METHOD]: 'POST',
      [h2.HTTP2_HEADER_PATH]: path,
      [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      [h2.HTTP2_HEADER_TE]: 'trailers',
    };
    let session = this.current();
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(headers);
    } catch {
      // The connection went away before its GOAWAY or close event was handled: a new one.
      this.session = undefined;
      session = this.current();
      stream = session.request(headers);
    }
    const reader = new MessageReader(onMessage);
    let end: StreamEnd | undefined;
    const statusFrom = (headers: Record<string, string | string[] | undefined>): void => {
      const status = headers['grpc-status'];
      if (status === undefined) return;
      const message = String(headers['grpc-message'] ?? '');
      let details = message;
      try {
        details = decodeURIComponent(message);
      } catch {
        // Left percent-encoded.
      }
      end = { status: Number(status), details };
    };
    stream.on('response', statusFrom);
    stream.on('trailers', statusFrom);
    stream.on('data', (chunk: Buffer) => reader.push(chunk));
    let error: Error | undefined;
    stream.on('error', (err: Error) => (error = err));
    stream.on('close', () =>
      onEnd(
        end ?? {
          status: undefined,
          rstCode: stream.rstCode ?? h2.NGHTTP2_CANCEL,
          // A session destroyed under its streams closes them first, with `destroyed` already set.
          connectionGone: session.destroyed,
          afterGoaway: goneAway.has(session),
          ...(error ? { error } : {}),
        },
      ),
    );
    return {
      write: (message) => {
        if (!stream.closed && !stream.destroyed) stream.write(message);
      },
    };
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }

  /** Whether a connection is open (or opening) for new streams. */
  isOpen(): boolean {
    return this.session !== undefined && !this.session.closed && !this.session.destroyed;
  }

  /**
   * Calls `then` once, when the current connection has the server's SETTINGS (the server accepted it: a kernel
   * completes the TCP handshake before then) or has gone; at once if there is none.
   */
  whenAnswered(then: () => void): void {
    const session = this.session;
    if (!session || session.closed || session.destroyed) return then();
    let called = false;
    const once = (): void => {
      if (called) return;
      called = true;
      session.off('remoteSettings', once);
      session.off('close', once);
      then();
    };
    session.once('remoteSettings', once);
    session.once('close', once);
  }

  private current(): ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const session = connect(`http://${this.authority}`, {
      ...(this.windowBytes > 0 ? { settings: { initialWindowSize: this.windowBytes } } : {}),
      // As grpc-js: Node's default session memory limit (10 MB) refuses new streams under load.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
    });
    if (this.windowBytes > 0) session.once('remoteSettings', () => session.setLocalWindowSize(this.windowBytes));
    const forget = (): void => {
      if (this.session === session) this.session = undefined;
    };
    // A GOAWAY takes no new streams: the next one opens a connection of its own; the streams still on it end by themselves.
    session.on('goaway', (code: number) => {
      if (code === h2.NGHTTP2_NO_ERROR) goneAway.add(session);
      forget();
    });
    session.on('close', forget);
    // Its streams see the error too and end without a status.
    session.on('error', forget);
    this.session = session;
    return session;
  }
}

/** Cuts a stream's DATA into gRPC messages: a message inside one chunk is handed on as a view, one across chunks is gathered. */
export class MessageReader {
  private readonly prefix = Buffer.alloc(5);
  private prefixHave = 0;
  private body: Buffer | undefined;
  private bodyHave = 0;

  constructor(private readonly onMessage: (message: Buffer) => void) {}

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.body) {
        const n = Math.min(this.body.length - this.bodyHave, chunk.length - pos);
        chunk.copy(this.body, this.bodyHave, pos, pos + n);
        this.bodyHave += n;
        pos += n;
        if (this.bodyHave === this.body.length) {
          const body = this.body;
          this.body = undefined;
          this.onMessage(body);
        }
        continue;
      }
      let length: number;
      if (this.prefixHave === 0 && chunk.length - pos >= 5) {
        length = this.messageLength(chunk, pos);
        pos += 5;
        if (chunk.length - pos >= length) {
          this.onMessage(chunk.subarray(pos, pos + length));
          pos += length;
          continue;
        }
      } else {
        const n = Math.min(5 - this.prefixHave, chunk.length - pos);
        chunk.copy(this.prefix, this.prefixHave, pos, pos + n);
        this.prefixHave += n;
        pos += n;
        if (this.prefixHave < 5) continue;
        this.prefixHave = 0;
        length = this.messageLength(this.prefix, 0);
      }
      this.body = Buffer.allocUnsafe(length);
      this.bodyHave = 0;
      if (length === 0) {
        this.body = undefined;
        this.onMessage(Buffer.alloc(0));
      }
    }
  }

  private messageLength(buf: Buffer, at: number): number {
    if (buf[at] !== 0) throw new Error('a compressed gRPC message (this client asks for none)');
    return buf.readUInt32BE(at + 1);
  }
}

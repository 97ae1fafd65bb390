// The simulated Envoys' gRPC client (grpc-wire-client.ts): messages cut out of DATA chunks however they split, and
// which ends of a stream count as its connection going away (a reconnect), against a real node:http2 server.
import { once } from 'node:events';
import { constants as h2, createServer, type Http2Server, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Server, ServerCredentials, status, type ServerDuplexStream } from '@grpc/grpc-js';
import { connectionWentAway, GrpcConnection, MessageReader, type StreamEnd } from './grpc-wire-client';

const framed = (body: string): Buffer => {
  const message = Buffer.from(body);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
};

function readAll(chunks: Buffer[]): string[] {
  const messages: string[] = [];
  const reader = new MessageReader((message) => messages.push(message.toString()));
  for (const chunk of chunks) reader.push(chunk);
  return messages;
}

describe('MessageReader', () => {
  const bodies = ['first', '', 'x'.repeat(70_000), 'last'];
  const stream = Buffer.concat(bodies.map(framed));

  it('reads several messages from one chunk, an empty one included', () => {
    expect(readAll([stream])).toEqual(bodies);
  });

  it('reads messages whose prefix and body are split across chunks, at every size of chunk', () => {
    for (const size of [1, 2, 3, 4, 5, 6, 7, 13, 16_384]) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size));
      expect(readAll(chunks)).toEqual(bodies);
    }
  });

  it('refuses a compressed message (the client asks for none)', () => {
    const compressed = framed('z');
    compressed[0] = 1;
    expect(() => readAll([compressed])).toThrow(/compressed/);
  });
});

describe('connectionWentAway, on how a real node:http2 server ended the stream', () => {
  let server: Http2Server;
  let port: number;
  let opened: (stream: ServerHttp2Stream) => void = () => undefined;
  beforeAll(async () => {
    server = createServer();
    // The server's own side of a reset or of a faulty close is not what these tests look at.
    server.on('session', (session) => session.on('error', () => undefined));
    server.on('stream', (stream) => {
      stream.on('error', () => undefined);
      opened(stream);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.close();
    await once(server, 'close');
  });

  /** Opens a stream on a new connection, lets the server end it with `end`, and returns how the client saw it end. */
  async function endedBy(end: (stream: ServerHttp2Stream, session: ServerHttp2Session) => void): Promise<StreamEnd> {
    const connection = new GrpcConnection(`127.0.0.1:${port}`, 0);
    const atServer = new Promise<ServerHttp2Stream>((resolve) => (opened = resolve));
    const ended = new Promise<StreamEnd>((resolve) => connection.open('/test.Service/Stream', () => undefined, resolve));
    const stream = await atServer;
    const session = stream.session as ServerHttp2Session;
    end(stream, session);
    try {
      return await ended;
    } finally {
      connection.close();
      session.destroy();
    }
  }
  const GRPC_HEADERS = { ':status': 200, 'content-type': 'application/grpc' };
  const withStatus = (code: number) => (stream: ServerHttp2Stream) =>
    stream.respond(
      { ...GRPC_HEADERS, 'grpc-status': String(code), 'grpc-message': 'max%20connection%20age%20reached' },
      { endStream: true },
    );
  const reset = (code: number) => (stream: ServerHttp2Stream) => {
    stream.respond(GRPC_HEADERS);
    stream.close(code);
  };
  const goaway = (session: ServerHttp2Session): void => session.goaway(h2.NGHTTP2_NO_ERROR, 2 ** 31 - 1, Buffer.from('max_age'));
  /** The GOAWAY, then in a later turn (once the client may have read it) `then`: as the age's grace, or another end. */
  const afterGoaway =
    (then: (stream: ServerHttp2Stream, session: ServerHttp2Session) => void) =>
    (stream: ServerHttp2Stream, session: ServerHttp2Session) => {
      stream.respond(GRPC_HEADERS);
      goaway(session);
      setTimeout(() => then(stream, session), 50);
    };
  const cut = (goawayFirst: boolean, error?: Error) => (stream: ServerHttp2Stream, session: ServerHttp2Session) => {
    stream.respond(GRPC_HEADERS);
    if (goawayFirst) goaway(session);
    session.destroy(error);
  };

  it("is true for UNAVAILABLE, which the control plane ends its streams with at a connection's max age", async () => {
    const end = await endedBy(withStatus(status.UNAVAILABLE));
    expect(end).toEqual({ status: status.UNAVAILABLE, details: 'max connection age reached' });
    expect(connectionWentAway(end)).toBe(true);
  });

  it('is true for a stream cut with its connection, closed cleanly, with or without a GOAWAY first (the grace)', async () => {
    for (const end of [await endedBy(cut(false)), await endedBy(cut(true))]) {
      expect(end).toMatchObject({ status: undefined, connectionGone: true });
      expect(connectionWentAway(end)).toBe(true);
    }
  });

  it("is true for the cut at the end of a GOAWAY'd connection's grace, which node:http2 sends as a reset with NO_ERROR", async () => {
    const end = await endedBy(afterGoaway((_stream, session) => session.destroy()));
    expect(end).toMatchObject({ status: undefined, afterGoaway: true });
    // Whether the client read the resets before the socket's close decides which; both are the connection going away.
    if (!(end as { connectionGone: boolean }).connectionGone) expect(end).toMatchObject({ rstCode: h2.NGHTTP2_NO_ERROR });
    expect(connectionWentAway(end)).toBe(true);
  });

  it("is true for every stream grpc-js's own max connection age cuts (the control plane's backstop), the grace 0", async () => {
    const grpcServer = new Server({ 'grpc.max_connection_age_ms': 100, 'grpc.max_connection_age_grace_ms': 0 });
    const bytes = (b: Buffer): Buffer => b;
    grpcServer.register(
      '/test.Service/Stream',
      (call: ServerDuplexStream<Buffer, Buffer>) => call.on('data', () => undefined),
      bytes,
      bytes,
      'bidi',
    );
    const grpcPort = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    try {
      const ends: StreamEnd[] = [];
      for (let i = 0; i < 10; i++) {
        const connection = new GrpcConnection(`127.0.0.1:${grpcPort}`, 0);
        ends.push(
          ...(await Promise.all(
            [1, 2, 3].map(() => new Promise<StreamEnd>((resolve) => connection.open('/test.Service/Stream', () => undefined, resolve))),
          )),
        );
        connection.close();
      }
      // Mostly reset with NO_ERROR on the live connection (what a CI run's simulated Envoy stopped at), some cut with it.
      expect(ends.filter((end) => !connectionWentAway(end))).toEqual([]);
    } finally {
      grpcServer.forceShutdown();
    }
  });

  it('is false for any other status, for a reset of the stream alone, and for a connection closed with an error', async () => {
    const others = {
      INTERNAL: await endedBy(withStatus(status.INTERNAL)),
      RESOURCE_EXHAUSTED: await endedBy(withStatus(status.RESOURCE_EXHAUSTED)),
      'RST_STREAM NO_ERROR': await endedBy(reset(h2.NGHTTP2_NO_ERROR)),
      'RST_STREAM REFUSED_STREAM': await endedBy(reset(h2.NGHTTP2_REFUSED_STREAM)),
      'RST_STREAM CANCEL': await endedBy(reset(h2.NGHTTP2_CANCEL)),
      'connection closed with an error': await endedBy(cut(false, new Error('a fault'))),
      // Going away is no licence for any reset: a fault's code still stops the run.
      'RST_STREAM INTERNAL_ERROR after a GOAWAY': await endedBy(afterGoaway((stream) => stream.close(h2.NGHTTP2_INTERNAL_ERROR))),
      'RST_STREAM CANCEL after a GOAWAY': await endedBy(afterGoaway((stream) => stream.close(h2.NGHTTP2_CANCEL))),
    };
    expect(others['RST_STREAM NO_ERROR']).toMatchObject({ rstCode: h2.NGHTTP2_NO_ERROR, connectionGone: false, afterGoaway: false });
    expect(others['RST_STREAM INTERNAL_ERROR after a GOAWAY']).toMatchObject({ connectionGone: false, afterGoaway: true });
    expect(others['RST_STREAM CANCEL']).toMatchObject({ rstCode: h2.NGHTTP2_CANCEL, connectionGone: false });
    expect(others['connection closed with an error']).toMatchObject({ connectionGone: true, error: { code: 'ERR_HTTP2_SESSION_ERROR' } });
    expect(Object.entries(others).filter(([, end]) => connectionWentAway(end))).toEqual([]);
  });
});

// gRFC A9 connection management on a real grpc-js server bound by bindGrpcServer, in plaintext and on
// the guarded TLS port (whose connections reach grpc-js through its connection injector): a connection
// through its HTTP/2 preface that opens no call is closed after the idle limit; one with an open stream
// is not, however long the stream is quiet; past the age limit a client gets GOAWAY (`max_age`), its open
// stream is cut after the grace, and a client that reopens it gets a new connection.
import type { SecureClientSessionOptions } from 'node:http2';
import {
  credentials,
  connectivityState,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
  status,
  type ChannelCredentials,
  type ClientDuplexStream,
  type ServerDuplexStream,
} from '@grpc/grpc-js';
import { createTestPki, eventually, openHttp2Session, type TestPki, rawBytesMethod } from '@trellis/testing';
import { bindGrpcServer, grpcConnectionOptions, stopGrpcServer, type GrpcConnectionLimits } from './grpc-server';

jest.setTimeout(120_000);

/** A bidirectional stream that answers each message with the peer (address:port) the server sees it from. */
const ECHO = rawBytesMethod('/test.Echo/Echo', 'bidi');
const EchoClient = makeGenericClientConstructor({ echo: ECHO }, 'test.Echo');
type EchoClientInstance = InstanceType<typeof EchoClient> & { echo(): ClientDuplexStream<Buffer, Buffer> };

const IDLE_MS = 1_000;
/** How long a quiet stream is kept open to show the idle limit leaves it alone: several idle limits. */
const QUIET_MS = 4 * IDLE_MS;
const WITHIN_MS = 60_000;

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});
afterAll(() => pki?.remove());

interface Transport {
  name: string;
  server: () => ServerCredentials;
  client: () => ChannelCredentials;
  /** node:http2 options for a raw client session (the test's own eyes on GOAWAY). */
  raw: (port: number) => { url: string; options: SecureClientSessionOptions };
}

const TRANSPORTS: Transport[] = [
  {
    name: 'plaintext',
    server: () => ServerCredentials.createInsecure(),
    client: () => credentials.createInsecure(),
    raw: (port) => ({ url: `http://127.0.0.1:${port}`, options: {} }),
  },
  {
    name: 'the guarded TLS port',
    server: () => ServerCredentials.createSsl(pki.ca, [{ cert_chain: pki.server.cert, private_key: pki.server.key }], true),
    client: () => credentials.createSsl(pki.ca, pki.client('a').key, pki.client('a').cert),
    raw: (port) => ({
      url: `https://127.0.0.1:${port}`,
      options: { ca: pki.ca, cert: pki.client('a').cert, key: pki.client('a').key, servername: 'localhost' },
    }),
  },
];

describe.each(TRANSPORTS)('gRPC connection limits ($name)', (transport) => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function start(limits: GrpcConnectionLimits): Promise<number> {
    const server = new Server(grpcConnectionOptions(limits));
    server.addService(
      { echo: ECHO },
      {
        echo: (call: ServerDuplexStream<Buffer, Buffer>) => {
          call.on('data', () => call.write(Buffer.from(call.getPeer())));
          call.on('end', () => call.end());
          call.on('error', () => undefined);
        },
      },
    );
    const port = await bindGrpcServer(server, '127.0.0.1', 0, transport.server());
    cleanups.push(() => stopGrpcServer(server, 1_000));
    return port;
  }

  function client(port: number): EchoClientInstance {
    const c = new EchoClient(`127.0.0.1:${port}`, transport.client(), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.ssl_target_name_override': 'localhost',
    }) as EchoClientInstance;
    cleanups.push(() => c.close());
    return c;
  }

  /** A raw HTTP/2 session through its preface (and TLS handshake), recording the GOAWAY frames it receives. */
  async function rawSession(port: number) {
    const { url, options } = transport.raw(port);
    const opened = await openHttp2Session(url, options);
    cleanups.push(() => opened.session.destroy());
    return opened;
  }

  /** Writes one message on `stream` and resolves with the peer the server saw it from. */
  function roundTrip(stream: ClientDuplexStream<Buffer, Buffer>): Promise<string> {
    return new Promise((resolve, reject) => {
      const onData = (reply: Buffer) => {
        stream.off('error', reject);
        resolve(reply.toString());
      };
      stream.once('data', onData);
      stream.once('error', reject);
      stream.write(Buffer.from('ping'));
    });
  }

  it('closes a connection through its preface that opens no call, after the idle limit, with GOAWAY NO_ERROR', async () => {
    const port = await start({ maxConnectionIdleMs: IDLE_MS });
    const { session, goaways } = await rawSession(port);
    await eventually('the idle connection to be closed', () => session.closed || session.destroyed, WITHIN_MS);
    expect(goaways[0]).toMatchObject({ code: 0 });
  });

  it('leaves a connection with an open stream alone, however quiet; once its last call ends the idle clock starts', async () => {
    const port = await start({ maxConnectionIdleMs: IDLE_MS });
    const c = client(port);
    const stream = c.echo();
    stream.on('error', () => undefined);
    const peer = await roundTrip(stream);
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    expect(await roundTrip(stream)).toBe(peer); // the same stream, on the same connection
    stream.end();
    // The connection is now idle: the server closes it and the channel notices.
    await eventually(
      'the channel to lose its connection',
      () => c.getChannel().getConnectivityState(false) !== connectivityState.READY,
      WITHIN_MS,
    );
    // A new call connects again, transparently.
    const again = c.echo();
    again.on('error', () => undefined);
    expect(await roundTrip(again)).not.toBe(peer);
    again.end();
  });

  it('sends GOAWAY max_age past the age limit, cuts an open stream after the grace, and a reopened stream runs on a new connection', async () => {
    const port = await start({ maxConnectionAgeMs: 1_500, maxConnectionAgeGraceMs: 1_000 });
    const { goaways } = await rawSession(port);
    await eventually('a GOAWAY', () => goaways.length > 0, WITHIN_MS);
    expect(goaways[0]).toEqual({ code: 0, data: 'max_age' });

    const c = client(port);
    const first = c.echo();
    const peer = await roundTrip(first);
    const cut = new Promise<unknown>((resolve) => first.on('error', resolve));
    // UNAVAILABLE: what an xDS client retries on (grpc-js-xds at once, since it had responses; Envoy with its backoff).
    expect(await cut).toMatchObject({ code: status.UNAVAILABLE });
    const second = c.echo();
    second.on('error', () => undefined);
    expect(await roundTrip(second)).not.toBe(peer);
    second.cancel();
  });
});

describe('grpcConnectionOptions', () => {
  it('leaves out a limit of 0 (grpc-js would close at once) and always pairs an age with a grace', () => {
    expect(grpcConnectionOptions({ maxConnectionIdleMs: 0, maxConnectionAgeMs: 0 })).toEqual({});
    expect(grpcConnectionOptions({ maxConnectionIdleMs: 300_000, maxConnectionAgeMs: 1_800_000 })).toEqual({
      'grpc.max_connection_idle_ms': 300_000,
      'grpc.max_connection_age_ms': 1_800_000,
      'grpc.max_connection_age_grace_ms': 10_000,
    });
    expect(grpcConnectionOptions({ maxConnectionAgeMs: 60_000, maxConnectionAgeGraceMs: 0 })).toEqual({
      'grpc.max_connection_age_ms': 60_000,
      'grpc.max_connection_age_grace_ms': 0,
    });
  });
});

// The per-connection identity cache leans on where grpc-js keeps a call's HTTP/2
// session (no public accessor); a real grpc-js server and client check it is still
// there: one session per connection, the same one for every call on it.
import {
  credentials,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { sessionOfCall } from './grpc-server';

const definition = {
  echo: {
    path: '/test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
} as const;

describe('sessionOfCall', () => {
  let server: Server;
  let port: number;
  const sessions: unknown[] = [];

  beforeAll(async () => {
    server = new Server();
    server.addService(definition, {
      echo: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
        sessions.push(sessionOfCall(call));
        callback(null, call.request);
      },
    });
    port = await new Promise((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
  });
  afterAll(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));

  it('finds the HTTP/2 session of each call: the same for calls on one connection, another for another connection', async () => {
    const Client = makeGenericClientConstructor(definition, 'Echo');
    // Separate channels (grpc.use_local_subchannel_pool) so the two clients cannot share a connection.
    const options = { 'grpc.use_local_subchannel_pool': 1 };
    const one = new Client(`127.0.0.1:${port}`, credentials.createInsecure(), options);
    const two = new Client(`127.0.0.1:${port}`, credentials.createInsecure(), options);
    const echo = (client: InstanceType<typeof Client>) =>
      new Promise<void>((resolve, reject) =>
        (client as unknown as { echo(b: Buffer, cb: (e: Error | null) => void): void }).echo(Buffer.from('x'), (e) =>
          e ? reject(e) : resolve(),
        ),
      );
    await echo(one);
    await echo(one);
    await echo(two);
    one.close();
    two.close();
    expect(sessions).toHaveLength(3);
    expect(sessions.every((s) => typeof s === 'object' && s !== null)).toBe(true);
    expect(sessions[0]).toBe(sessions[1]);
    expect(sessions[2]).not.toBe(sessions[0]);
  });
});

// Request ids on the gRPC server (below); and: the per-connection identity cache leans on where grpc-js keeps a call's HTTP/2
// session (no public accessor); a real grpc-js server and client check it is still
// there: one session per connection, the same one for every call on it.
import type { Http2Session } from 'node:http2';
import { Writable } from 'node:stream';
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { AuthorizationClient, CheckRequest, CheckResponse } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { createLogger, Health } from '@trellis/runtime';
import { stopGrpcServer } from '@trellis/runtime/grpc';
import type { CheckService } from '../check/check-service';
import { sessionOfCall, startGrpcServer } from './grpc-server';
import { StreamsById, streamsOf } from './session-streams';

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

describe('request ids on the authz gRPC server', () => {
  const lines: Array<Record<string, unknown>> = [];
  const seen: Array<Metadata | undefined> = [];
  let started: { server: Server; port: number };

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    // Only what the handler hands over is looked at here; CheckService itself is check-service.test.ts.
    const checks = {
      check: (_attributes: unknown, _peer: unknown, metadata?: Metadata) => {
        seen.push(metadata);
        return Buffer.from(CheckResponse.encode(CheckResponse.fromPartial({ status: { code: 0 } })).finish());
      },
    } as unknown as CheckService;
    const health = new Health();
    started = await startGrpcServer(
      checks,
      health,
      '127.0.0.1',
      0,
      { tls: undefined, requireClientCertificate: false, trustDomain: () => 'trellis.local' },
      createLogger('authz', 'debug', sink),
    );
  });
  afterAll(() => stopGrpcServer(started.server, 1000));

  const withHeaders = (headers: Record<string, string>) => {
    const metadata = new Metadata();
    for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
    return metadata;
  };

  it('echoes and logs the request id of a health check', async () => {
    const Health = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');
    const client = new Health(`127.0.0.1:${started.port}`, credentials.createInsecure()) as unknown as {
      Check(r: object, m: Metadata, cb: (e: Error | null) => void): { on(e: 'metadata', l: (m: Metadata) => void): void };
      close(): void;
    };
    const echoed = await new Promise<Metadata>((resolve, reject) => {
      let headers: Metadata | undefined;
      client
        .Check({ service: '' }, withHeaders({ 'x-request-id': 'probe-7' }), (err) => (err ? reject(err) : resolve(headers!)))
        .on('metadata', (m) => (headers = m));
    });
    client.close();
    expect(echoed.get('x-request-id')).toEqual(['probe-7']);
    for (let i = 0; i < 100 && !lines.some((l) => l['requestId'] === 'probe-7'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(lines.find((l) => l['requestId'] === 'probe-7')).toMatchObject({ method: '/grpc.health.v1.Health/Check', code: 'OK' });
  });

  it('hands a Check its call metadata and leaves the Check itself to CheckService (no interceptor line, no echo)', async () => {
    const client = new AuthorizationClient(`127.0.0.1:${started.port}`, credentials.createInsecure());
    const echoed = await new Promise<Metadata>((resolve, reject) => {
      let headers: Metadata | undefined;
      client
        .check(
          CheckRequest.fromPartial({}),
          withHeaders({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }),
          (err) => (err ? reject(err) : resolve(headers!)),
        )
        .on('metadata', (m) => (headers = m));
    });
    // The connection's first Check gave its session the streams registry of session-streams.ts (grpc-js keeps its
    // sessions in a private map per HTTP/2 server: read here only, to see the swap reach a real grpc-js server's session).
    const servers = (started.server as unknown as { http2Servers: Map<unknown, { sessions: Set<Http2Session> }> }).http2Servers;
    const sessions = [...servers.values()].flatMap((server) => [...server.sessions]);
    expect(sessions.length).toBeGreaterThan(0);
    expect(sessions.some((session) => streamsOf(session) instanceof StreamsById)).toBe(true);
    client.close();
    expect(seen.at(-1)?.get('traceparent')).toEqual(['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']);
    expect(echoed.get('x-request-id')).toEqual([]);
    expect(lines.some((l) => l['method'] === '/envoy.service.auth.v3.Authorization/Check')).toBe(false);
  });
});

import { Writable } from 'node:stream';
import { credentials, makeGenericClientConstructor, Metadata, Server, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { Health } from '../health';
import { createLogger } from '../logger';
import { bindGrpcServer, serveGrpcHealth, stopGrpcServer } from './grpc-server';
import { requestIdInterceptor } from './request-id-interceptor';

interface HealthClient {
  Check(
    req: { service: string },
    metadata: Metadata,
    cb: (err: ServiceError | null, res: { status: string }) => void,
  ): { on(event: 'metadata', listener: (m: Metadata) => void): void };
  Watch(
    req: { service: string },
    metadata: Metadata,
  ): {
    on(event: 'metadata', listener: (m: Metadata) => void): void;
    on(event: 'data', listener: (res: { status: string }) => void): void;
    on(event: 'error', listener: (err: ServiceError) => void): void;
    cancel(): void;
  };
  close(): void;
}
const HealthClientCtor = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');

describe('requestIdInterceptor', () => {
  const lines: Array<Record<string, unknown>> = [];
  let server: Server;
  let client: HealthClient;

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    server = new Server({ interceptors: [requestIdInterceptor(createLogger('test', 'debug', sink))] });
    serveGrpcHealth(server, new Health(), []);
    const port = await bindGrpcServer(server, '127.0.0.1', 0);
    client = new HealthClientCtor(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as HealthClient;
  });
  afterAll(async () => {
    client.close();
    await stopGrpcServer(server, 1000);
  });

  /** One Check with these request headers; the response headers it got back. */
  const call = (headers: Record<string, string>) =>
    new Promise<Metadata>((resolve, reject) => {
      const metadata = new Metadata();
      for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
      let received: Metadata | undefined;
      client.Check({ service: '' }, metadata, (err) => (err ? reject(err) : resolve(received!))).on('metadata', (m) => (received = m));
    });
  const logged = async (requestId: string) => {
    for (let i = 0; i < 100 && !lines.some((l) => l['requestId'] === requestId); i++) await new Promise((r) => setTimeout(r, 20));
    return lines.find((l) => l['requestId'] === requestId);
  };

  it("keeps the caller's x-request-id, echoes it and logs the call with it", async () => {
    const headers = await call({ 'x-request-id': 'req-42.a' });
    expect(headers.get('x-request-id')).toEqual(['req-42.a']);
    expect(await logged('req-42.a')).toMatchObject({ method: '/grpc.health.v1.Health/Check', code: 'OK', msg: 'grpc call' });
  });

  it('takes the trace id of a W3C traceparent and echoes the traceparent', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const headers = await call({ traceparent });
    expect(headers.get('x-request-id')).toEqual(['4bf92f3577b34da6a3ce929d0e0e4736']);
    expect(headers.get('traceparent')).toEqual([traceparent]);
    expect(await logged('4bf92f3577b34da6a3ce929d0e0e4736')).toBeDefined();
  });

  it('generates one for a call without (or with an unusable) id, and never echoes a bad traceparent', async () => {
    const headers = await call({
      'x-request-id': 'bad id {forged:log}',
      traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    });
    const [id] = headers.get('x-request-id');
    expect(String(id)).toMatch(/^[0-9a-f-]{36}$/);
    expect(headers.get('traceparent')).toEqual([]);
    expect(await logged(String(id))).toBeDefined();
  });

  it("passes a stream's messages through and sends its headers, with the id, before the first message", async () => {
    const metadata = new Metadata();
    metadata.set('x-request-id', 'watch-7');
    const call = client.Watch({ service: '' }, metadata);
    call.on('error', () => undefined); // the CANCELLED our cancel() causes
    let headers: Metadata | undefined;
    const first = await new Promise<{ status: string }>((resolve) => {
      call.on('metadata', (m) => (headers = m));
      call.on('data', resolve);
    });
    call.cancel();
    expect(first.status).toBeDefined();
    expect(headers?.get('x-request-id')).toEqual(['watch-7']);
  });
});

// W3C trace context across real grpc-js servers on loopback: a client calls A, A's
// handler calls B, B's calls C, each hop with the SDK's interceptors. The trace id
// must be the same at every hop, each hop's parent id new, and concurrent requests
// must not see each other's context.
import { Writable } from 'node:stream';
import { credentials, Metadata, Server, ServerCredentials, status, type ServiceError } from '@grpc/grpc-js';
import { CallReply, HopClient, HopService, type CallRequest } from '@trellis/envoy-types/trellis/demo/v1/hop';
import { currentCallTrace, traceContextInterceptor, traceContextServerInterceptor, type CallLogger } from '../src';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;
const TRACEPARENT_SHAPE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** What each hop saw: the traceparent in its metadata, and the context its handler read after an await. */
interface Seen {
  hop: string;
  origin: string;
  traceparent: string;
  requestId: string | undefined;
  traceId: string | undefined;
}

interface Hop {
  name: string;
  server: Server;
  port: number;
  client?: HopClient;
}

const lines: Array<Record<string, unknown>> = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  },
});
const logger: CallLogger = {
  info: (fields, message) => sink.write(`${JSON.stringify({ ...fields, msg: message })}\n`),
  debug: () => undefined,
};

const seen: Seen[] = [];
const call = (client: HopClient, origin: string, metadata = new Metadata()) =>
  new Promise<{ reply: CallReply; headers: Metadata }>((resolve, reject) => {
    let headers = new Metadata();
    client
      .call({ origin }, metadata, (err: ServiceError | null, reply?: CallReply) =>
        err ? reject(err) : resolve({ reply: reply!, headers }),
      )
      .on('metadata', (m: Metadata) => (headers = m));
  });

/** A hop that records what it saw, waits a little (async work between receiving and calling on), then calls `next`. */
async function startHop(name: string, next: Hop | undefined, serverLogger: CallLogger = logger): Promise<Hop> {
  const server = new Server({ interceptors: [traceContextServerInterceptor({ logger: serverLogger })] });
  const client = next
    ? new HopClient(`127.0.0.1:${next.port}`, credentials.createInsecure(), { interceptors: [traceContextInterceptor()] })
    : undefined;
  server.addService(HopService, {
    call: (request: { request: CallRequest; metadata: Metadata }, callback: (err: ServiceError | null, reply?: CallReply) => void) => {
      void (async () => {
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
        const trace = currentCallTrace();
        seen.push({
          hop: name,
          origin: request.request.origin,
          traceparent: String(request.metadata.get('traceparent')[0]),
          requestId: trace?.requestId,
          traceId: trace?.traceId,
        });
        const downstream = client ? (await call(client, request.request.origin)).reply.hops : [];
        callback(null, CallReply.fromPartial({ hops: [{ service: name }, ...downstream] }));
      })().catch((err: Error) =>
        callback({ name: 'Error', message: err.message, code: status.INTERNAL, details: err.message, metadata: new Metadata() }),
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { name, server, port, client };
}

describe('trace context across A → B → C (real grpc-js servers)', () => {
  const hops: Hop[] = [];
  let entry: HopClient;

  beforeAll(async () => {
    const c = await startHop('c', undefined);
    const b = await startHop('b', c);
    const a = await startHop('a', b);
    hops.push(c, b, a);
    // The entry client has no interceptor: what it sends is exactly what each test sets.
    entry = new HopClient(`127.0.0.1:${a.port}`, credentials.createInsecure());
  });
  afterAll(() => {
    entry.close();
    for (const hop of hops) {
      hop.client?.close();
      hop.server.forceShutdown();
    }
  });

  const seenFor = (origin: string) => ['a', 'b', 'c'].map((hop) => seen.find((s) => s.origin === origin && s.hop === hop)!);
  const parsed = (traceparent: string) => {
    const [, traceId, parentId, flags] = TRACEPARENT_SHAPE.exec(traceparent) ?? [];
    return { traceId, parentId, flags };
  };

  it("carries the caller's trace id through every hop, each with a new parent id, and the caller's request id", async () => {
    const metadata = new Metadata();
    metadata.set('traceparent', TRACEPARENT);
    metadata.set('x-request-id', 'req-chain-1');
    const { reply, headers } = await call(entry, 'chain-1', metadata);
    expect(reply.hops.map((h) => h.service)).toEqual(['a', 'b', 'c']);
    const [a, b, c] = seenFor('chain-1').map((s) => ({ ...s, ...parsed(s.traceparent) }));
    expect([a!.traceId, b!.traceId, c!.traceId]).toEqual([TRACE_ID, TRACE_ID, TRACE_ID]);
    expect(a!.parentId).toBe('00f067aa0ba902b7');
    expect(new Set([a!.parentId, b!.parentId, c!.parentId]).size).toBe(3);
    // The sampled flag travels with the trace.
    expect([a!.flags, b!.flags, c!.flags]).toEqual(['01', '01', '01']);
    expect([a!.requestId, b!.requestId, c!.requestId]).toEqual(['req-chain-1', 'req-chain-1', 'req-chain-1']);
    // Echoed to the caller.
    expect(headers.get('x-request-id')).toEqual(['req-chain-1']);
    expect(headers.get('traceparent')).toEqual([TRACEPARENT]);
  });

  it('starts a trace at A when the caller sent none, and B and C continue it', async () => {
    const { headers } = await call(entry, 'chain-2');
    const chain = seenFor('chain-2').map((s) => parsed(s.traceparent).traceId);
    expect(chain[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(chain).toEqual([chain[0], chain[0], chain[0]]);
    expect(seenFor('chain-2').map((s) => s.requestId)).toEqual([chain[0], chain[0], chain[0]]);
    expect(headers.get('x-request-id')).toEqual([chain[0]]);
  });

  it('starts a new trace for an invalid traceparent, and the call succeeds', async () => {
    const metadata = new Metadata();
    metadata.set('traceparent', `00-${TRACE_ID}-0000000000000000-01`);
    const { reply } = await call(entry, 'chain-3', metadata);
    expect(reply.hops).toHaveLength(3);
    const chain = seenFor('chain-3').map((s) => parsed(s.traceparent).traceId);
    expect(chain[0]).not.toBe(TRACE_ID);
    expect(chain).toEqual([chain[0], chain[0], chain[0]]);
  });

  it('keeps concurrent requests apart: each chain sees only its own trace', async () => {
    const origins = Array.from({ length: 12 }, (_, i) => `concurrent-${i}`);
    const traceIds = origins.map((_, i) => `${i.toString(16).padStart(2, '0')}${'ab'.repeat(15)}`);
    await Promise.all(
      origins.map((origin, i) => {
        const metadata = new Metadata();
        metadata.set('traceparent', `00-${traceIds[i]}-00f067aa0ba902b7-00`);
        return call(entry, origin, metadata);
      }),
    );
    for (const [i, origin] of origins.entries()) {
      expect({ origin, traceIds: seenFor(origin).map((s) => parsed(s.traceparent).traceId) }).toEqual({
        origin,
        traceIds: [traceIds[i], traceIds[i], traceIds[i]],
      });
      expect(seenFor(origin).map((s) => s.traceId)).toEqual([traceIds[i], traceIds[i], traceIds[i]]);
    }
  });

  it('logs each call with its request id and trace id', async () => {
    const metadata = new Metadata();
    metadata.set('x-request-id', 'req-logged-1');
    await call(entry, 'chain-4', metadata);
    for (let i = 0; i < 100 && lines.filter((l) => l['requestId'] === 'req-logged-1').length < 3; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const logged = lines.filter((l) => l['requestId'] === 'req-logged-1');
    expect(logged).toHaveLength(3);
    expect(logged.every((l) => l['method'] === '/trellis.demo.v1.Hop/Call' && l['code'] === 'OK')).toBe(true);
    expect(new Set(logged.map((l) => l['traceId'])).size).toBe(1);
  });
});

describe('the interceptors never turn their own failure into a failed process', () => {
  it('a logger that throws fails neither the call nor the process', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const throwing: CallLogger = {
      info: () => {
        throw new Error('log sink gone');
      },
      debug: () => undefined,
    };
    const hop = await startHop('lonely', undefined, throwing);
    const client = new HopClient(`127.0.0.1:${hop.port}`, credentials.createInsecure(), { interceptors: [traceContextInterceptor()] });
    try {
      const { reply } = await call(client, 'throwing-logger');
      expect(reply.hops.map((h) => h.service)).toEqual(['lonely']);
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      client.close();
      hop.server.forceShutdown();
    }
  });
});

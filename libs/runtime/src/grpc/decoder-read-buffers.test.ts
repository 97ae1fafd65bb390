import { connect, type ClientHttp2Session } from 'node:http2';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { StreamDecoder } from '@grpc/grpc-js/build/src/stream-decoder';
import { releaseDecodedReadBuffers } from './decoder-read-buffers';
import { stopGrpcServer } from './grpc-server';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** A full collection, after the current job (a WeakRef's target is kept until the job that made it ends). */
async function collectGarbage(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  gc();
}

/** One gRPC message, framed: flag, 4-byte length, payload. */
function framed(payloadBytes: number): Buffer {
  const message = Buffer.alloc(5 + payloadBytes, 7);
  message[0] = 0;
  message.writeUInt32BE(payloadBytes, 1);
  return message;
}

beforeAll(() => {
  expect(releaseDecodedReadBuffers()).toBe(true);
});

describe('releaseDecodedReadBuffers', () => {
  it("lets go of a completed message's chunks: the read buffer they were views of is collected", async () => {
    const decoder = new StreamDecoder(-1);
    let messages: Buffer[] = [];
    const readBufferGone = await (async () => {
      // What Node hands grpc-js: DATA chunks that are views into one socket read buffer holding more than them.
      const readBuffer = new ArrayBuffer(64 * 1024);
      const message = framed(52_000);
      Buffer.from(readBuffer).set(message, 100);
      for (let at = 100; at < 100 + message.length; at += 16_384)
        messages = messages.concat(decoder.write(Buffer.from(readBuffer, at, Math.min(16_384, 100 + message.length - at))));
      return new WeakRef(readBuffer);
    })();
    expect(messages).toHaveLength(1);
    expect(messages[0]!.length).toBe(5 + 52_000);
    expect(messages[0]!.buffer).not.toBe(readBufferGone.deref());
    await collectGarbage();
    expect(readBufferGone.deref()).toBeUndefined();
    // The decoder still reads what comes next: a message split right after its flag.
    const next = framed(10);
    next[0] = 0;
    expect(decoder.write(next.subarray(0, 1))).toEqual([]);
    expect(decoder.write(next.subarray(1))).toEqual([next]);
  });

  it('leaves a grpc-js server holding none of the first requests of streams that sent nothing since', async () => {
    const server = new Server();
    const calls: ServerDuplexStream<Buffer, Buffer>[] = [];
    let received = 0;
    let allReceived: () => void = () => {};
    const streams = 200;
    const arrived = new Promise<void>((resolve) => (allReceived = resolve));
    server.addService(
      {
        chat: {
          path: '/test.Test/Chat',
          requestStream: true,
          responseStream: true,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b.length,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      {
        chat: (call: ServerDuplexStream<Buffer, Buffer>) => {
          calls.push(call);
          call.on('data', () => {
            if (++received === streams) allReceived();
          });
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const sessions: ClientHttp2Session[] = [];
    try {
      await collectGarbage();
      const before = process.memoryUsage().arrayBuffers;
      // As an Envoy's first xDS request: ~52 KB, several DATA frames, interleaved with other streams' on a connection.
      const first = framed(52_000);
      for (let c = 0; c < 2; c++) sessions.push(connect(`http://127.0.0.1:${port}`));
      for (let i = 0; i < streams; i++) {
        const stream = sessions[i % 2]!.request({
          ':method': 'POST',
          ':path': '/test.Test/Chat',
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        stream.on('error', () => {});
        stream.write(first);
      }
      await arrived;
      await collectGarbage();
      // Kept, they would be 200 x ~52 KB (~10 MiB); the streams stay open, as ADS streams waiting for their first push.
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(2 * 2 ** 20);
      expect(calls).toHaveLength(streams);
    } finally {
      for (const session of sessions) session.destroy();
      await stopGrpcServer(server, 1_000);
    }
  });
});

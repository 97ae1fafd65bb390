import { connect, type ClientHttp2Session } from 'node:http2';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { StreamDecoder } from '@grpc/grpc-js/build/src/stream-decoder';
import { stopGrpcServer } from './grpc-server';
import { readRequestsAsTheyArrive, ReadingDecoder, WHOLE_MESSAGE_BYTES, type RequestReader } from './request-readers';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function collectGarbage(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  gc();
}

/** One gRPC message, framed: flag, 4-byte length, payload. */
function framed(payload: Buffer, flag = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = flag;
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
}

/** Keeps a copy of every byte: the message as sent. */
class CopyingReader implements RequestReader {
  private parts: Buffer[] = [];
  read(chunk: Buffer, start: number, end: number): void {
    this.parts.push(Buffer.from(chunk.subarray(start, end)));
  }
  finish(): Buffer {
    const message = Buffer.concat(this.parts);
    this.parts = [];
    return message;
  }
}

/** Keeps nothing but a count: the message it gives is the count of bytes read, as 4 bytes. */
class CountingReader implements RequestReader {
  static total = 0;
  private bytes = 0;
  read(_chunk: Buffer, start: number, end: number): void {
    this.bytes += end - start;
    CountingReader.total += end - start;
  }
  finish(): Buffer {
    const message = Buffer.alloc(4);
    message.writeUInt32BE(this.bytes);
    this.bytes = 0;
    return message;
  }
}

describe('ReadingDecoder', () => {
  it("frames messages as grpc-js's decoder does, however the data is split", () => {
    const stream = Buffer.concat([
      framed(Buffer.alloc(20_000, 1)),
      framed(Buffer.alloc(0)),
      framed(Buffer.from('compressed'), 1),
      framed(Buffer.from('last')),
    ]);
    for (const size of [1, 3, 5, 6, 16_384, stream.length]) {
      const ours = new ReadingDecoder(-1, new CopyingReader());
      const theirs = new StreamDecoder(-1);
      const got: Buffer[] = [];
      const want: Buffer[] = [];
      for (let at = 0; at < stream.length; at += size) {
        got.push(...ours.write(stream.subarray(at, at + size)));
        want.push(...theirs.write(stream.subarray(at, at + size)));
      }
      expect(got).toHaveLength(4);
      expect(got).toEqual(want);
    }
  });

  it('copies a short message that arrives whole without its reader, and reads a longer or split one with it', () => {
    let read = 0;
    const reader: RequestReader = {
      read: (_chunk, start, end) => void (read += end - start),
      finish: () => Buffer.from('read'),
    };
    const short = framed(Buffer.alloc(WHOLE_MESSAGE_BYTES, 2));
    const long = framed(Buffer.alloc(WHOLE_MESSAGE_BYTES + 1, 3));
    const decoder = new ReadingDecoder(-1, reader);
    expect(decoder.write(Buffer.concat([short, short]))).toEqual([short, short]);
    expect(read).toBe(0);
    expect(decoder.write(long)).toEqual([framed(Buffer.from('read'))]);
    expect(read).toBe(WHOLE_MESSAGE_BYTES + 1);
    // Split across chunks, a short message is read as it arrives too: nothing is held partial.
    expect([...decoder.write(short.subarray(0, 100)), ...decoder.write(short.subarray(100))]).toEqual([framed(Buffer.from('read'))]);
    expect(read).toBe(2 * WHOLE_MESSAGE_BYTES + 1);
  });

  it("refuses a message over the limit at its prefix, in grpc-js's words", () => {
    const message = framed(Buffer.alloc(101));
    const theirs = (() => {
      try {
        new StreamDecoder(100).write(message);
      } catch (err) {
        return String(err);
      }
    })();
    expect(theirs).toContain('larger than max');
    expect(() => new ReadingDecoder(100, new CopyingReader()).write(message.subarray(0, 5))).toThrow(theirs!.replace(/^Error: /, ''));
  });
});

describe('readRequestsAsTheyArrive', () => {
  it('has a method read by its reader as the bytes arrive: partial messages of 200 streams are not held', async () => {
    expect(readRequestsAsTheyArrive(new Map([['/test.Test/Chat', () => new CountingReader()]]))).toBe(true);
    const server = new Server();
    const sizes: number[] = [];
    const streams = 200;
    let allReceived: () => void = () => {};
    const received = new Promise<void>((resolve) => (allReceived = resolve));
    server.addService(
      {
        chat: {
          path: '/test.Test/Chat',
          requestStream: true,
          responseStream: true,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b.readUInt32BE(0),
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      {
        chat: (call: ServerDuplexStream<number, Buffer>) => {
          call.on('data', (size: number) => {
            sizes.push(size);
            if (sizes.length === streams) allReceived();
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
      // As an Envoy's first xDS request (~52 KB), each stream sends all but its last bytes, interleaved on 2 connections.
      const message = framed(Buffer.alloc(52_000, 7));
      const sent = 40_000;
      for (let c = 0; c < 2; c++) sessions.push(connect(`http://127.0.0.1:${port}`));
      const requests = Array.from({ length: streams }, (_, i) => {
        const stream = sessions[i % 2]!.request({
          ':method': 'POST',
          ':path': '/test.Test/Chat',
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        stream.on('error', () => {});
        stream.write(message.subarray(0, sent));
        return stream;
      });
      const deadline = Date.now() + 60_000;
      while (CountingReader.total < streams * (sent - 5) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(CountingReader.total).toBe(streams * (sent - 5));
      await collectGarbage();
      // Held whole, they would be 200 x 40 KB (~7.6 MiB) until their last bytes came.
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(2 * 2 ** 20);
      for (const stream of requests) stream.write(message.subarray(sent));
      await received;
      expect(sizes).toEqual(Array.from({ length: streams }, () => 52_000));
    } finally {
      for (const session of sessions) session.destroy();
      await stopGrpcServer(server, 1_000);
    }
  });
});

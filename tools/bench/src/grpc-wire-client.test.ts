// The simulated Envoys' gRPC message framing (grpc-wire-client.ts): messages cut out of DATA chunks however they split.
import { MessageReader } from './grpc-wire-client';

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

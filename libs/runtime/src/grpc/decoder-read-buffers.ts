// grpc-js reads a stream's messages out of the HTTP/2 DATA chunks Node hands it, and Node's chunks
// are views into the socket's read buffers (up to 64 KiB each, shared with whatever else that read
// returned). grpc-js's StreamDecoder (1.14) keeps views of the last message's chunks (its partial
// message list and its 1-byte compression flag) until the stream's next message starts: a stream
// whose last message was large keeps the read buffers under it. An Envoy's first xDS request is
// ~52 KB (its node lists every extension compiled in), and an ADS stream sends nothing more until
// it ACKs its first response, so every stream waiting for its first push held ~52 KB: 248 MiB of
// array buffers after a full GC for 5,000 streams that had sent one such request, 0 with this.
// The fix belongs in grpc-js; until then each completed message's views are dropped here.
import { StreamDecoder } from '@grpc/grpc-js/build/src/stream-decoder';

/** The fields of grpc-js's StreamDecoder this touches (private in its types). */
interface DecoderState {
  readState: number;
  readCompressFlag: Buffer;
  readPartialMessage: Buffer[];
}

/** StreamDecoder's ReadState.NO_DATA: between messages, nothing partly read. */
const NO_DATA = 0;

/** The compression flags, as buffers of their own: the decoder only reads them (into the framed message it builds). */
const FLAGS = [Buffer.from([0]), Buffer.from([1])];

let installed: boolean | undefined;

/**
 * Makes grpc-js's message decoder, process-wide, let go of the chunks of each message it has read in full (what it
 * keeps between messages is then two small buffers of its own). Idempotent. False when grpc-js's decoder is not
 * the shape this was written against (a grpc-js upgrade: its unit test says so), and then nothing is changed.
 */
export function releaseDecodedReadBuffers(): boolean {
  if (installed !== undefined) return installed;
  const probe = new StreamDecoder(-1) as unknown as Partial<DecoderState>;
  const write: unknown = StreamDecoder.prototype.write;
  installed =
    typeof write === 'function' &&
    probe.readState === NO_DATA &&
    Buffer.isBuffer(probe.readCompressFlag) &&
    Array.isArray(probe.readPartialMessage);
  if (!installed) return false;
  const readMessages = write as StreamDecoder['write'];
  StreamDecoder.prototype.write = function (this: StreamDecoder, data: Buffer): Buffer[] {
    const messages = readMessages.call(this, data);
    const state = this as unknown as DecoderState;
    if (state.readState !== NO_DATA) return messages;
    if (state.readPartialMessage.length > 0) state.readPartialMessage = [];
    const flag = state.readCompressFlag;
    // The flag's byte in a buffer of its own: the view kept the whole read buffer it sat in.
    if (flag !== FLAGS[0] && flag !== FLAGS[1]) state.readCompressFlag = FLAGS[flag[0]!] ?? Buffer.from(flag);
    return messages;
  };
  return true;
}

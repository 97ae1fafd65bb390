// grpc-js holds each request message whole until its last byte arrives: the DATA chunks Node hands it are views into
// the socket's read buffers, kept in a list and concatenated when the message completes. Streams that share a
// connection send their messages interleaved, so a connection's messages mostly complete near the end of its data,
// and until then every partial message is held: with 100 streams a connection, each opening with an Envoy's ~52 KB
// first request (its node lists every extension compiled in), that is the connection storm's ~250 MiB of array
// buffers. A method given a reader here has its messages read as the bytes arrive instead, the reader keeping (as
// copies, never views) only what the handler's decoder needs; grpc-js then gets that as the message.
import { BaseServerInterceptingCall } from '@grpc/grpc-js/build/src/server-interceptors';

/** Reads one message as its bytes arrive and gives what it kept when the last has: one reader per stream, reused. */
export interface RequestReader {
  /** The message's next bytes, `chunk[start, end)`: a view into a socket read buffer, valid only during the call. */
  read(chunk: Buffer, start: number, end: number): void;
  /** The message to decode, its last byte read; the reader is then ready for the stream's next message. */
  finish(): Buffer;
}

/** The fields of grpc-js's BaseServerInterceptingCall this touches (private in its types). */
interface CallState {
  decoder: { write(data: Buffer): Buffer[]; maxReadMessageLength?: number };
  handler?: { path?: unknown };
}

/** A gRPC message's prefix: its compression flag and 4-byte length. */
const PREFIX_BYTES = 5;

/**
 * A message at most this long that arrives whole in one chunk is copied out as grpc-js copies it, without its reader:
 * nothing of it is ever held partial, and most requests (an Envoy's ACKs) are a few hundred bytes, for which a
 * reader's field-by-field copies cost more than the one copy.
 */
export const WHOLE_MESSAGE_BYTES = 4_096;

/**
 * grpc-js's StreamDecoder, framing messages the same way (prefix, length limit and its error, framed output), with
 * each uncompressed message's body given to `reader` as it arrives. A compressed message (Envoy sends none) is
 * copied out whole: a reader reads protobuf, not deflate.
 */
export class ReadingDecoder {
  private readonly prefix = Buffer.alloc(PREFIX_BYTES);
  private prefixRead = 0;
  private remaining = 0;
  private compressed: Buffer[] | undefined;

  constructor(
    private readonly maxMessageBytes: number,
    private readonly reader: RequestReader,
  ) {}

  write(data: Buffer): Buffer[] {
    const messages: Buffer[] = [];
    let pos = 0;
    while (pos < data.length) {
      if (this.prefixRead < PREFIX_BYTES) {
        const n = Math.min(PREFIX_BYTES - this.prefixRead, data.length - pos);
        data.copy(this.prefix, this.prefixRead, pos, pos + n);
        this.prefixRead += n;
        pos += n;
        if (this.prefixRead < PREFIX_BYTES) break;
        const size = this.prefix.readUInt32BE(1);
        // grpc-js's own check and words: its server answers RESOURCE_EXHAUSTED with them.
        if (this.maxMessageBytes !== -1 && size > this.maxMessageBytes)
          throw new Error(`Received message larger than max (${size} vs ${this.maxMessageBytes})`);
        if (this.prefix[0] === 0 && size <= WHOLE_MESSAGE_BYTES && data.length - pos >= size) {
          messages.push(this.copyWhole(data, pos, size));
          pos += size;
          continue;
        }
        this.remaining = size;
        this.compressed = this.prefix[0] === 0 ? undefined : [];
        if (size === 0) messages.push(this.complete());
        continue;
      }
      const end = Math.min(data.length, pos + this.remaining);
      if (this.compressed) this.compressed.push(Buffer.from(data.subarray(pos, end)));
      else this.reader.read(data, pos, end);
      this.remaining -= end - pos;
      pos = end;
      if (this.remaining === 0) messages.push(this.complete());
    }
    return messages;
  }

  /** A short message whole in `data` at `pos`, framed with its prefix: one allocation and one copy. */
  private copyWhole(data: Buffer, pos: number, size: number): Buffer {
    const framed = Buffer.allocUnsafe(PREFIX_BYTES + size);
    this.prefix.copy(framed, 0);
    data.copy(framed, PREFIX_BYTES, pos, pos + size);
    this.prefixRead = 0;
    return framed;
  }

  /** The message just read, framed as grpc-js's decoder frames it (flag, length, body). */
  private complete(): Buffer {
    const body = this.compressed ? Buffer.concat(this.compressed) : this.reader.finish();
    const framed = Buffer.allocUnsafe(PREFIX_BYTES + body.length);
    framed[0] = this.prefix[0]!;
    framed.writeUInt32BE(body.length, 1);
    body.copy(framed, PREFIX_BYTES);
    this.prefixRead = 0;
    this.compressed = undefined;
    return framed;
  }
}

let installed: ReadonlyMap<string, () => RequestReader> | undefined;

/**
 * Has grpc-js's server, process-wide, read the requests of each method in `readers` (by path, as
 * `/package.Service/Method`) with a reader of its own per call. Installs once: false when already installed with
 * other readers, or when grpc-js is not the shape this was written against (a grpc-js upgrade; its unit test says
 * so), and then nothing is changed.
 */
export function readRequestsAsTheyArrive(readers: ReadonlyMap<string, () => RequestReader>): boolean {
  if (installed) return installed === readers;
  const proto = BaseServerInterceptingCall.prototype as unknown as { handleDataFrame?: unknown };
  const handleDataFrame = proto.handleDataFrame;
  if (typeof handleDataFrame !== 'function') return false;
  installed = readers;
  const readFrame = handleDataFrame as (this: CallState, data: Buffer) => void;
  proto.handleDataFrame = function (this: CallState, data: Buffer): void {
    const decoder = this.decoder;
    // A call's first DATA frame swaps its decoder, before it has read a byte.
    if (!(decoder instanceof ReadingDecoder) && typeof this.handler?.path === 'string') {
      const reader = readers.get(this.handler.path);
      const max = decoder.maxReadMessageLength;
      if (reader && typeof max === 'number') this.decoder = new ReadingDecoder(max, reader());
    }
    readFrame.call(this, data);
  };
  return true;
}

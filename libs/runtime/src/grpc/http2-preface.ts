// The client connection preface of HTTP/2 (RFC 9113 §3.4): the fixed 24-byte magic, then a
// SETTINGS frame (possibly empty). A connection that has sent both has started speaking
// HTTP/2; one that has not after its deadline is holding the server's socket for nothing.

export const HTTP2_CLIENT_MAGIC = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const FRAME_HEADER_BYTES = 9;
const SETTINGS_FRAME_TYPE = 0x4;
/** SETTINGS_MAX_FRAME_SIZE's initial value: a larger first frame is a protocol error. */
const MAX_FIRST_FRAME_PAYLOAD = 16_384;

/** How far a connection's first bytes are through the client preface. */
export type Http2PrefaceProgress =
  /** A prefix of one; `needs` is the preface's whole length once the SETTINGS frame's header is in. */
  | { state: 'incomplete'; needs?: number }
  /** The magic and the whole first SETTINGS frame are there. */
  | { state: 'complete' }
  /** Not HTTP/2: HTTP/2 itself must answer it. */
  | { state: 'invalid' };

/** Where `received`, the first bytes of a connection, stands in the client preface. */
export function http2PrefaceProgress(received: Buffer): Http2PrefaceProgress {
  const magic = Math.min(received.length, HTTP2_CLIENT_MAGIC.length);
  if (!received.subarray(0, magic).equals(HTTP2_CLIENT_MAGIC.subarray(0, magic))) return { state: 'invalid' };
  const header = received.subarray(HTTP2_CLIENT_MAGIC.length, HTTP2_CLIENT_MAGIC.length + FRAME_HEADER_BYTES);
  if (header.length > 3 && header[3] !== SETTINGS_FRAME_TYPE) return { state: 'invalid' };
  if (header.length < FRAME_HEADER_BYTES) return { state: 'incomplete' };
  const payload = header.readUIntBE(0, 3);
  // A SETTINGS frame on stream 0 whose payload is whole settings (6 bytes each).
  if (payload % 6 !== 0 || payload > MAX_FIRST_FRAME_PAYLOAD || (header.readUInt32BE(5) & 0x7fffffff) !== 0) return { state: 'invalid' };
  const needs = HTTP2_CLIENT_MAGIC.length + FRAME_HEADER_BYTES + payload;
  return received.length >= needs ? { state: 'complete' } : { state: 'incomplete', needs };
}

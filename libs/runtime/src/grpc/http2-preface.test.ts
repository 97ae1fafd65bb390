import { HTTP2_CLIENT_MAGIC, http2PrefaceProgress } from './http2-preface';

/** A frame header: 24-bit length, type, flags, 31-bit stream id. */
function frameHeader(length: number, type: number, stream = 0): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(length, 0, 3);
  header[3] = type;
  header.writeUInt32BE(stream, 5);
  return header;
}

const SETTINGS = 0x4;
const preface = (payload: number) => Buffer.concat([HTTP2_CLIENT_MAGIC, frameHeader(payload, SETTINGS), Buffer.alloc(payload)]);

describe('http2PrefaceProgress', () => {
  it('is complete once the magic and the whole first SETTINGS frame are in, and not a byte before', () => {
    for (const payload of [0, 6, 36]) {
      const whole = preface(payload);
      expect(http2PrefaceProgress(whole)).toEqual({ state: 'complete' });
      expect(http2PrefaceProgress(Buffer.concat([whole, Buffer.from('more frames')]))).toEqual({ state: 'complete' });
      for (let length = 0; length < whole.length; length++) {
        expect(http2PrefaceProgress(whole.subarray(0, length)).state).toBe('incomplete');
      }
    }
  });

  it('says how long the preface is once the SETTINGS header is in', () => {
    expect(http2PrefaceProgress(HTTP2_CLIENT_MAGIC)).toEqual({ state: 'incomplete' });
    expect(http2PrefaceProgress(preface(36).subarray(0, 40))).toEqual({ state: 'incomplete', needs: 24 + 9 + 36 });
  });

  it('is invalid at the first byte that is not HTTP/2', () => {
    expect(http2PrefaceProgress(Buffer.from('GET / HTTP/1.1\r\n'))).toEqual({ state: 'invalid' });
    expect(http2PrefaceProgress(Buffer.from('PRX'))).toEqual({ state: 'invalid' });
  });

  it('is invalid when the first frame is not a well-formed SETTINGS frame on stream 0', () => {
    expect(http2PrefaceProgress(Buffer.concat([HTTP2_CLIENT_MAGIC, frameHeader(8, 0x6).subarray(0, 4)]))).toEqual({ state: 'invalid' }); // PING
    expect(http2PrefaceProgress(Buffer.concat([HTTP2_CLIENT_MAGIC, frameHeader(7, SETTINGS)]))).toEqual({ state: 'invalid' }); // not whole settings
    expect(http2PrefaceProgress(Buffer.concat([HTTP2_CLIENT_MAGIC, frameHeader(6, SETTINGS, 1)]))).toEqual({ state: 'invalid' });
    expect(http2PrefaceProgress(Buffer.concat([HTTP2_CLIENT_MAGIC, frameHeader(16_386, SETTINGS)]))).toEqual({ state: 'invalid' });
  });
});

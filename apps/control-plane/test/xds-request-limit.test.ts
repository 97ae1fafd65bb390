// Attack: one connection opens many xDS streams and starts a large first request on each without finishing it. The
// control plane holds a request until its last byte arrives, so what one connection can make it hold is its streams
// (TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION) times the largest request it takes (TRELLIS_XDS_MAX_REQUEST_BYTES). A
// stream whose message declares more is refused with RESOURCE_EXHAUSTED when its 5-byte prefix arrives, before any
// of its body is kept; requests within the limit, an Envoy's ~52 KB first request among them, are served on the same
// connection afterwards.
import { connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { status } from '@grpc/grpc-js';
import { TypeUrl } from '@trellis/envoy-types';
import { AggregatedDiscoveryServiceService } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { DiscoveryRequest } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { envoyNode } from './support/ads-client';
import { startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';

jest.setTimeout(180_000);

const CAP = 16;
const MAX_REQUEST_BYTES = 256 * 1024;
const STREAMS = 3 * CAP;

/** How a stream ended: its first response, or its gRPC status and message, or an HTTP/2 reset's code. */
type Outcome = { answered: true } | { answered: false; status?: number; message: string; rstCode?: number };

/** Opens an ADS stream on `session` and writes `bytes` on it (a message's prefix and as much of its body as given). */
function openStream(session: ClientHttp2Session, bytes: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    const stream = session.request({
      [h2.HTTP2_HEADER_METHOD]: 'POST',
      [h2.HTTP2_HEADER_PATH]: AggregatedDiscoveryServiceService.streamAggregatedResources.path,
      [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      [h2.HTTP2_HEADER_TE]: 'trailers',
    });
    let settled = false;
    const settle = (outcome: Outcome): void => {
      if (settled) return;
      settled = true;
      resolve(outcome);
      stream.close(h2.NGHTTP2_CANCEL);
    };
    const ended = (headers: Record<string, string | string[] | undefined>): void => {
      if (headers['grpc-status'] === undefined) return;
      settle({
        answered: false,
        status: Number(headers['grpc-status']),
        message: decodeURIComponent(String(headers['grpc-message'] ?? '')),
      });
    };
    stream.on('response', ended);
    stream.on('trailers', ended);
    let received = 0;
    stream.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > 5) settle({ answered: true });
    });
    stream.on('error', (err: Error) => settle({ answered: false, message: err.message, rstCode: stream.rstCode }));
    stream.on('close', () => settle({ answered: false, message: 'closed', rstCode: stream.rstCode }));
    stream.write(bytes);
  });
}

/** A gRPC message's 5-byte prefix (uncompressed, `length`) followed by `body`. */
function framed(length: number, body: Uint8Array): Buffer {
  const bytes = Buffer.alloc(5 + body.length);
  bytes.writeUInt32BE(length, 1);
  bytes.set(body, 5);
  return bytes;
}

describe('attack: one connection opening many xDS streams with large first requests', () => {
  let h: ControlPlaneHarness;
  let session: ClientHttp2Session;

  beforeAll(async () => {
    h = await startControlPlaneHarness({ TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION: CAP, TRELLIS_XDS_MAX_REQUEST_BYTES: MAX_REQUEST_BYTES });
    await h.store.createService({ name: 'a', team: 'core', protocol: 'http', port: 8080 }, 'test');
    // One connection: what a single attacking client holds.
    session = connect(`http://${h.xdsAddress}`);
  });
  afterAll(async () => {
    session?.destroy();
    await h?.stop();
  });

  it('refuses each request larger than the limit at its prefix, then serves Envoy-sized ones on the same connection', async () => {
    // Each stream says its request is 4× the limit and sends 64 KiB of it, never the rest.
    const oversize = framed(4 * MAX_REQUEST_BYTES, Buffer.alloc(64 * 1024, 0x0a));
    const refused = await Promise.all(Array.from({ length: STREAMS }, () => openStream(session, oversize)));

    const ended = refused.filter((o): o is Extract<Outcome, { answered: false }> => !o.answered);
    expect(ended).toHaveLength(STREAMS);
    const refusedWith = (code: status, details: RegExp) => ended.filter((o) => o.status === code && details.test(o.message)).length;
    // The streams that got a slot were refused for their size: the first CAP at least (a slot frees as one is
    // refused, so how many later ones found a slot rather than the cap depends on the timing). Streams sent before
    // the client had the server's SETTINGS and beyond HTTP/2's ceiling (the cap + 8) are reset by HTTP/2 itself.
    const tooLarge = refusedWith(status.RESOURCE_EXHAUSTED, /larger than max/);
    const overCap = refusedWith(status.RESOURCE_EXHAUSTED, /too many xDS streams on one connection/);
    const overHttp2Ceiling = ended.filter((o) => o.status === undefined && o.rstCode === h2.NGHTTP2_REFUSED_STREAM).length;
    expect(tooLarge).toBeGreaterThanOrEqual(CAP);
    expect({ accountedFor: tooLarge + overCap + overHttp2Ceiling }).toEqual({ accountedFor: STREAMS });

    // Every refused stream gave its slot back: the cap's worth of Envoy-sized first requests is served.
    const body = DiscoveryRequest.encode(
      DiscoveryRequest.fromPartial({ node: envoyNode('a', { id: 'a-big' }), typeUrl: TypeUrl.Cluster }),
    ).finish();
    expect(body.length).toBeGreaterThan(40_000);
    expect(body.length).toBeLessThan(MAX_REQUEST_BYTES);
    const served = await Promise.all(Array.from({ length: CAP }, () => openStream(session, framed(body.length, body))));
    expect(served.filter((o) => !o.answered)).toEqual([]);
  });
});

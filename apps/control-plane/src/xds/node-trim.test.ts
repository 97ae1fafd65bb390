// A request read as it arrives, its node trimmed, must decode to what the whole request decodes to, however its bytes
// are split into chunks; a request framed wrongly must still be refused.
import fc from 'fast-check';
import { TypeUrl } from '@trellis/envoy-types';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import { Node } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { DeltaDiscoveryRequest, DiscoveryRequest } from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { envoyNode } from '../../test/support/ads-client';
import { OUTBOUND_PORT_METADATA } from '../envoy/names';
import { NODE_FIELD, NodeTrimmingReader } from './node-trim';
import { decodeDeltaDiscoveryRequest, decodeDiscoveryRequest } from './wire';

/** `bytes` read by `reader` in chunks that end at `cuts` (offsets), each chunk a view into a larger buffer. */
function readInChunks(reader: NodeTrimmingReader, bytes: Buffer, cuts: readonly number[]): Buffer {
  const host = Buffer.alloc(bytes.length + 20, 0xee);
  bytes.copy(host, 10);
  let from = 0;
  for (const cut of [...new Set(cuts)]
    .filter((c) => c > 0 && c < bytes.length)
    .sort((a, b) => a - b)
    .concat(bytes.length)) {
    reader.read(host, 10 + from, 10 + cut);
    from = cut;
  }
  return reader.finish();
}

function answer<R>(decode: () => R): R | { threw: true } {
  try {
    return decode();
  } catch {
    return { threw: true };
  }
}

const sotwRequest = (node: Node, extra: Partial<DiscoveryRequest> = {}): Buffer =>
  Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromPartial({ node, typeUrl: TypeUrl.Cluster, ...extra })).finish());

describe('NodeTrimmingReader', () => {
  const node = envoyNode('checkout', { id: 'checkout-7f9c', metadata: { [OUTBOUND_PORT_METADATA]: 15001, team: 'payments' } });

  it("keeps of an Envoy's first request only what is read, in chunks of any size", () => {
    const whole = sotwRequest(node, { versionInfo: '', resourceNames: [] });
    expect(whole.length).toBeGreaterThan(30_000);
    const reader = new NodeTrimmingReader(NODE_FIELD.sotw);
    for (const size of [1, 7, 1_000, 16_384, whole.length]) {
      const cuts = Array.from({ length: Math.ceil(whole.length / size) }, (_, i) => i * size);
      const trimmed = readInChunks(reader, whole, cuts);
      expect(trimmed.length).toBeLessThan(200);
      expect(decodeDiscoveryRequest(trimmed)).toEqual(decodeDiscoveryRequest(whole));
    }
    expect(decodeDiscoveryRequest(readInChunks(reader, whole, [])).node).toEqual(
      expect.objectContaining({ id: 'checkout-7f9c', cluster: 'checkout', userAgentName: 'envoy' }),
    );
  });

  it("keeps of a Delta first request only what is read, and reads the stream's next request after it", () => {
    const reader = new NodeTrimmingReader(NODE_FIELD.delta);
    const first = Buffer.from(
      DeltaDiscoveryRequest.encode(
        DeltaDiscoveryRequest.fromPartial({ node, typeUrl: TypeUrl.Cluster, resourceNamesSubscribe: ['a', 'b'], responseNonce: '' }),
      ).finish(),
    );
    const trimmed = readInChunks(reader, first, [3, 100, 16_384, 30_000]);
    expect(trimmed.length).toBeLessThan(200);
    expect(decodeDeltaDiscoveryRequest(trimmed)).toEqual(decodeDeltaDiscoveryRequest(first));
    const ack = Buffer.from(
      DeltaDiscoveryRequest.encode(DeltaDiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster, responseNonce: '1' })).finish(),
    );
    expect(readInChunks(reader, ack, [2])).toEqual(ack);
  });

  it('gives a request the decoder reads as it reads the whole one, for any request and any chunks (property)', () => {
    const name = fc.string({ maxLength: 12 });
    const requestBytes = fc
      .record({
        versionInfo: name,
        resourceNames: fc.array(name, { maxLength: 3 }),
        typeUrl: name,
        responseNonce: name,
        node: fc.option(
          fc.record({
            id: name,
            cluster: name,
            userAgentName: name,
            metadata: fc.dictionary(name, fc.oneof(name, fc.integer({ min: 0, max: 65535 })), { maxKeys: 2 }),
            clientFeatures: fc.array(name, { maxLength: 3 }),
            extensions: fc.array(fc.record({ name, category: name, typeUrls: fc.array(name, { maxLength: 2 }) }), { maxLength: 4 }),
            locality: fc.record({ region: name, zone: name }),
          }),
          { nil: undefined },
        ),
        errorDetail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: name }), { nil: undefined }),
      })
      .map((r) => Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromPartial(r)).finish()));
    fc.assert(
      fc.property(requestBytes, fc.array(fc.nat({ max: 400 }), { maxLength: 6 }), (whole, cuts) => {
        const trimmed = readInChunks(new NodeTrimmingReader(NODE_FIELD.sotw), whole, cuts);
        expect(decodeDiscoveryRequest(trimmed)).toEqual(decodeDiscoveryRequest(whole));
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('reads bad bytes as the whole request, or refuses them, or reads a node whose skipped fields were bad (property)', () => {
    const node = Buffer.from(Node.encode(Node.fromPartial({ id: 'a-1', cluster: 'a', clientFeatures: ['x'] })).finish());
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b)),
      // A real node, cut or with bytes changed.
      fc
        .tuple(
          fc.nat({ max: node.length + 2 }),
          fc.array(fc.tuple(fc.nat({ max: node.length + 1 }), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
        )
        .map(([keep, changes]) => {
          const request = Buffer.concat([Buffer.from([0x12, node.length]), node]).subarray(0, keep + 2);
          for (const [at, value] of changes) if (at < request.length) request[at] = value;
          return request;
        }),
    );
    fc.assert(
      fc.property(bytes, fc.array(fc.nat({ max: 60 }), { maxLength: 4 }), (whole, cuts) => {
        const trimmed = answer(() => decodeDiscoveryRequest(readInChunks(new NodeTrimmingReader(NODE_FIELD.sotw), whole, cuts)));
        const read = answer(() => decodeDiscoveryRequest(whole));
        if ('threw' in trimmed) return;
        // Where the generated decoder fails inside a node field nothing reads, the trimmed request no longer holds it
        // (wire.ts's own reader skips such fields by their framing too): then it reads the request's node.
        if ('threw' in read) expect(trimmed.node).toBeDefined();
        else expect(trimmed).toEqual(read);
      }),
      { numRuns: propertyRuns(1_000) },
    );
  });

  it('refuses a node framed wrongly: a field past its end, a group, a node past the request', () => {
    const reader = new NodeTrimmingReader(NODE_FIELD.sotw);
    // Field 9 says 9 bytes; the node holds 3 more.
    const pastNode = Buffer.from([0x12, 5, 0x0a, 1, 0x61, 0x4a, 9, 0, 0, 0]);
    // A group (field 9, wire type 3) in the node.
    const group = Buffer.from([0x12, 5, 0x0a, 1, 0x61, 0x4b, 0x4c]);
    const cut = Buffer.from([0x12, 40, 0x0a, 3, 0x61, 0x2d, 0x31]);
    for (const bytes of [pastNode, group, cut]) expect(() => decodeDiscoveryRequest(readInChunks(reader, bytes, [4]))).toThrow();
    // The reader goes on to the next request.
    const ok = sotwRequest(Node.fromPartial({ id: 'a-1', cluster: 'a' }));
    expect(decodeDiscoveryRequest(readInChunks(reader, ok, [1]))).toEqual(decodeDiscoveryRequest(ok));
  });
});

// The hand-written response encoders must produce exactly the generated encoders' bytes,
// and the hand-written request decoder the generated decoder's message (its node cut down to
// the fields the control plane reads) or its error.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { credentials, Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import fc from 'fast-check';
import { ADS_PUSH_ORDER, TypeUrl } from '@trellis/envoy-types';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import { AggregatedDiscoveryServiceClient } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { Node } from '@trellis/envoy-types/envoy/config/core/v3/base';
import {
  DeltaDiscoveryRequest,
  DeltaDiscoveryResponse,
  DiscoveryRequest,
  DiscoveryResponse,
} from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';
import { envoyNode } from '../../test/support/ads-client';
import { makeCluster } from '../../test/support/resources';
import { OUTBOUND_PORT_METADATA } from '../envoy/names';
import { identityOf } from './ads-server';
import {
  AdsServiceDefinition,
  decodeDeltaDiscoveryRequest,
  decodeDiscoveryRequest,
  encodeDeltaDiscoveryResponse,
  encodeDiscoveryResponse,
  NODE_FIELDS_READ,
  projectNode,
} from './wire';

const generated = (response: DiscoveryResponse): Buffer => Buffer.from(DiscoveryResponse.encode(response).finish());
const generatedDelta = (response: DeltaDiscoveryResponse): Buffer => Buffer.from(DeltaDiscoveryResponse.encode(response).finish());

// Strings with multi-byte characters (lone surrogates included), ASCII ones around the length up to which the encoder
// writes ASCII in JS (64), and long ones of both kinds.
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ minLength: 60, maxLength: 70 }),
  fc.string({ unit: 'binary', minLength: 60, maxLength: 130 }),
);
const any = fc.record({ typeUrl: text, value: fc.uint8Array({ maxLength: 400 }).map((bytes) => Buffer.from(bytes)) });
const controlPlane = fc.option(fc.record({ identifier: text }), { nil: undefined });

describe('encodeDiscoveryResponse', () => {
  it('writes the generated encoder bytes for a response with resources', () => {
    const response = DiscoveryResponse.fromPartial({
      versionInfo: 'v1',
      resources: [makeCluster('a').any, makeCluster('b').any],
      typeUrl: TypeUrl.Cluster,
      nonce: '7',
      controlPlane: { identifier: 'cp' },
    });
    expect(encodeDiscoveryResponse(response)).toEqual(generated(response));
  });

  it('writes the generated encoder bytes for an empty response', () => {
    const response = DiscoveryResponse.fromPartial({ versionInfo: 'v0', typeUrl: TypeUrl.Listener, nonce: '1' });
    expect(encodeDiscoveryResponse(response)).toEqual(generated(response));
  });

  it('writes the generated encoder bytes for any response (property)', () => {
    fc.assert(
      fc.property(
        fc.record({
          versionInfo: text,
          resources: fc.array(any, { maxLength: 5 }),
          canary: fc.boolean(),
          typeUrl: text,
          nonce: text,
          controlPlane,
        }),
        (fields) => {
          const response = DiscoveryResponse.fromPartial(fields);
          expect(encodeDiscoveryResponse(response)).toEqual(generated(response));
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });
  it('writes the generated encoder bytes for responses sharing one frozen resource array, whose bytes it keeps (property)', () => {
    // Sessions hand every response with the same resources the same frozen array; from its second response on the
    // encoder copies the resources' kept bytes. Each response around them differs (version, nonce, canary, control plane).
    const around = fc.record({ versionInfo: text, canary: fc.boolean(), typeUrl: text, nonce: text, controlPlane });
    fc.assert(
      fc.property(fc.array(any, { maxLength: 5 }), fc.array(around, { minLength: 1, maxLength: 4 }), (anys, responses) => {
        const shared = Object.freeze(anys.map((a) => ({ $type: 'google.protobuf.Any' as const, ...a })));
        for (const fields of responses) {
          const response = DiscoveryResponse.fromPartial({ ...fields, resources: [...shared] });
          expect(encodeDiscoveryResponse({ ...response, resources: shared as never })).toEqual(generated(response));
        }
      }),
      { numRuns: propertyRuns(200) },
    );
  });
});

describe('encodeDeltaDiscoveryResponse', () => {
  const resource = fc.record({
    name: text,
    aliases: fc.array(text, { maxLength: 2 }),
    version: text,
    resource: fc.option(any, { nil: undefined }),
  });

  it('writes the generated encoder bytes for any response Trellis sends (property)', () => {
    fc.assert(
      fc.property(
        fc.record({
          systemVersionInfo: text,
          resources: fc.array(resource, { maxLength: 5 }),
          typeUrl: text,
          removedResources: fc.array(text, { maxLength: 3 }),
          nonce: text,
          controlPlane,
        }),
        (fields) => {
          const response = DeltaDiscoveryResponse.fromPartial(fields);
          expect(encodeDeltaDiscoveryResponse(response)).toEqual(generatedDelta(response));
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });

  it('falls back to the generated encoder for fields Trellis does not set', () => {
    const response = DeltaDiscoveryResponse.fromPartial({
      systemVersionInfo: 'v1',
      resources: [{ name: 'a', version: '1', resource: makeCluster('a').any, ttl: { seconds: '5', nanos: 0 } }],
      typeUrl: TypeUrl.Cluster,
      removedResourceNames: [{ name: 'b' }],
      nonce: '3',
    });
    expect(encodeDeltaDiscoveryResponse(response)).toEqual(generatedDelta(response));
  });
});

describe('AdsServiceDefinition on a grpc-js server', () => {
  // Its serializers write every response into one scratch buffer, which is only sound while grpc-js copies each
  // serialized message before it serializes the next: many different responses written in one go (none waiting for
  // the transport) must each arrive as sent, on SotW and Delta streams at once.
  let server: Server;
  let client: AggregatedDiscoveryServiceClient;
  const count = 300;
  // Sizes from a few bytes to past the scratch's initial 64 KiB (it grows) and past its 1 MiB limit (a buffer of its own).
  const sizeOf = (i: number): number => (i % 50 === 7 ? 70_000 + i : i % 97 === 3 ? (1 << 20) + i : (i * 37) % 3000);
  const value = (i: number): Buffer => Buffer.alloc(sizeOf(i), i % 251);
  const sotw = (i: number): DiscoveryResponse =>
    DiscoveryResponse.fromPartial({
      versionInfo: `v${i}`,
      resources: [{ typeUrl: TypeUrl.Cluster, value: value(i) }],
      typeUrl: TypeUrl.Cluster,
      nonce: String(i),
      controlPlane: { identifier: 'cp' },
    });
  const delta = (i: number): DeltaDiscoveryResponse =>
    DeltaDiscoveryResponse.fromPartial({
      systemVersionInfo: `v${i}`,
      resources: [{ name: `r${i}`, version: String(i), resource: { typeUrl: TypeUrl.Cluster, value: value(i + 1) } }],
      typeUrl: TypeUrl.Cluster,
      nonce: String(i),
    });

  beforeAll(async () => {
    server = new Server();
    server.addService(AdsServiceDefinition, {
      streamAggregatedResources: (call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) =>
        call.once('data', () => {
          for (let i = 0; i < count; i++) call.write(sotw(i));
        }),
      deltaAggregatedResources: (call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) =>
        call.once('data', () => {
          for (let i = 0; i < count; i++) call.write(delta(i));
        }),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    client = new AggregatedDiscoveryServiceClient(`127.0.0.1:${port}`, credentials.createInsecure(), {
      'grpc.max_receive_message_length': 4 << 20,
    });
  });

  afterAll(async () => {
    client.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  });

  const receive = <T>(stream: NodeJS.EventEmitter & { write(m: unknown): boolean; cancel(): void }, first: unknown): Promise<T[]> =>
    new Promise((resolve, reject) => {
      const got: T[] = [];
      stream.on('data', (message: T) => {
        got.push(message);
        if (got.length === count) {
          stream.cancel();
          resolve(got);
        }
      });
      stream.on('error', (err: { code?: number }) => {
        if (got.length < count) reject(err);
      });
      stream.write(first);
    });

  it('delivers every SotW and Delta response of a burst as written', async () => {
    const [sotwGot, deltaGot] = await Promise.all([
      receive<DiscoveryResponse>(client.streamAggregatedResources(), DiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster })),
      receive<DeltaDiscoveryResponse>(client.deltaAggregatedResources(), DeltaDiscoveryRequest.fromPartial({ typeUrl: TypeUrl.Cluster })),
    ]);
    // Compared as bytes (jest's deep equality walks a megabyte buffer byte by byte, slowly).
    const sotwWrong = sotwGot.map((_, i) => i).filter((i) => !generated(sotwGot[i]!).equals(generated(sotw(i))));
    const deltaWrong = deltaGot.map((_, i) => i).filter((i) => !generatedDelta(deltaGot[i]!).equals(generatedDelta(delta(i))));
    expect({ sotwWrong, deltaWrong }).toEqual({ sotwWrong: [], deltaWrong: [] });
  });
});

/** A decoder's answer: the message, or the error it throws. */
function answer<R>(decode: () => R): R | { threw: string } {
  try {
    return decode();
  } catch (err) {
    return { threw: String(err) };
  }
}

// ASCII and other text, long enough for multi-byte lengths (mostly ASCII: a request is read by hand only when all of
// its up to ~20 strings are); type URLs served, near-misses of them and others.
const name = fc.oneof(
  { arbitrary: fc.string({ maxLength: 40 }), weight: 12 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 40 }), weight: 1 },
  { arbitrary: fc.string({ minLength: 120, maxLength: 300 }), weight: 1 },
);
const typeUrl = fc.oneof(
  fc.constantFrom(...ADS_PUSH_ORDER),
  fc.constantFrom(...ADS_PUSH_ORDER).map((url) => `${url.slice(0, -1)}x`),
  name,
);
const common = { versionInfo: name, resourceNames: fc.array(name, { maxLength: 6 }), typeUrl, responseNonce: name };
// Nodes with the fields the control plane reads and those it skips (an Envoy's build version, extensions, ...).
const json = fc.oneof(fc.integer({ min: 1, max: 65535 }), name, fc.boolean(), fc.constant(null));
const node = fc.record(
  {
    id: name,
    cluster: name,
    userAgentName: name,
    metadata: fc.dictionary(name, fc.oneof(json, fc.array(json, { maxLength: 3 }), fc.dictionary(name, json, { maxKeys: 2 })), {
      maxKeys: 3,
    }),
    locality: fc.record({ region: name, zone: name }),
    userAgentVersionType: fc.oneof(
      fc.record({ $case: fc.constant('userAgentVersion' as const), value: name }),
      fc.record({
        $case: fc.constant('userAgentBuildVersion' as const),
        value: fc.record({ version: fc.record({ majorNumber: fc.nat(), minorNumber: fc.nat(), patch: fc.nat() }) }),
      }),
    ),
    extensions: fc.array(fc.record({ name, category: name, typeUrls: fc.array(name, { maxLength: 2 }), disabled: fc.boolean() }), {
      maxLength: 4,
    }),
    clientFeatures: fc.array(name, { maxLength: 3 }),
    listeningAddresses: fc.array(
      fc.record({ address: fc.constant({ $case: 'pipe' as const, value: { path: '/tmp/envoy.sock', mode: 0 } }) }),
      {
        maxLength: 1,
      },
    ),
  },
  { requiredKeys: [] },
);

/**
 * For cut, extended and arbitrary bytes: the hand-written decoder gives the generated decoder's answer, except where
 * the generated one fails inside a node field the control plane skips (framed, never decoded): then it reads the request.
 */
function agreesOnBadBytes<R extends { node?: unknown }>(hand: R | { threw: string }, generated: R | { threw: string }): void {
  if ('threw' in generated && !('threw' in hand)) expect(hand.node).toBeDefined();
  else expect(hand).toEqual(generated);
}

describe('decodeDiscoveryRequest', () => {
  /** The generated decoder's answer: the message (its node cut down as the control plane reads it), or the error it throws. */
  const generatedDecode = (bytes: Buffer) => answer(() => projectNode(DiscoveryRequest.decode(bytes)));
  const handDecode = (bytes: Buffer) => answer(() => decodeDiscoveryRequest(bytes));
  const encode = (request: DiscoveryRequest): Buffer => Buffer.from(DiscoveryRequest.encode(request).finish());
  // In the shapes sidecars send (an ACK, a first request with its node: the fast path) and with every other field too.
  const request = fc.oneof(
    fc.record(common),
    fc.record({ ...common, node }),
    fc.record({
      ...common,
      node: fc.option(node, { nil: undefined }),
      errorDetail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: name }), { nil: undefined }),
      resourceLocators: fc.array(fc.record({ name }), { maxLength: 2 }),
    }),
  );

  it("reads of an Envoy's first request the node fields the control plane uses, and skips its extensions", () => {
    const sent = envoyNode('checkout', { id: 'checkout-7f9c', metadata: { [OUTBOUND_PORT_METADATA]: 15001, team: 'payments' } });
    const bytes = encode(DiscoveryRequest.fromPartial({ node: sent, typeUrl: TypeUrl.Cluster }));
    expect(bytes.length).toBeGreaterThan(30_000);
    const decoded = decodeDiscoveryRequest(bytes);
    expect(decoded).toEqual(projectNode(DiscoveryRequest.decode(bytes)));
    expect(decoded.node).toEqual(
      expect.objectContaining({ id: 'checkout-7f9c', cluster: 'checkout', userAgentName: 'envoy', extensions: [], locality: undefined }),
    );
    expect(decoded.node!.metadata).toEqual({ [OUTBOUND_PORT_METADATA]: 15001, team: 'payments' });
    expect(identityOf(decoded.node)).toEqual({ service: 'checkout', kind: 'envoy', outboundPort: 15001 });
    expect(Object.keys(NODE_FIELDS_READ).sort()).toEqual(['cluster', 'id', 'metadata', 'userAgentName']);
  });

  it('reads a node whose skipped fields are framed but not valid inside, and refuses one cut short', () => {
    // Field 9 (extensions) holding 3 bytes that are no Extension (tag 0x7f, wire type 7): skipped by its framing.
    const nodeBytes = Buffer.concat([
      Buffer.from(Node.encode(Node.fromPartial({ id: 'a-1', cluster: 'a' })).finish()),
      Buffer.from([0x4a, 3, 0x7f, 0x7f, 0x7f]),
    ]);
    const request = Buffer.concat([Buffer.from([0x12, nodeBytes.length]), nodeBytes]);
    expect(() => DiscoveryRequest.decode(request)).toThrow();
    expect(decodeDiscoveryRequest(request).node).toEqual(Node.fromPartial({ id: 'a-1', cluster: 'a' }));
    // The node's length says more than the request holds: the generated decoder's error.
    const cut = Buffer.from([0x12, 40, 0x0a, 3, 0x61, 0x2d, 0x31]);
    expect(() => decodeDiscoveryRequest(cut)).toThrow();
    expect(handDecode(cut)).toEqual(generatedDecode(cut));
  });

  it('reads a sidecar ACK as the generated decoder does, type URL as the shared constant', () => {
    const bytes = encode(
      DiscoveryRequest.fromPartial({
        versionInfo: 'a1b2c3d4e5f60718',
        resourceNames: ['outbound|8080||hub'],
        typeUrl: TypeUrl.ClusterLoadAssignment,
        responseNonce: '3',
      }),
    );
    const decoded = decodeDiscoveryRequest(bytes);
    expect(decoded).toEqual(DiscoveryRequest.decode(bytes));
    expect(decoded.typeUrl).toBe(TypeUrl.ClusterLoadAssignment);
  });

  it('gives the generated decoder message for any request (property)', () => {
    fc.assert(
      fc.property(request, (fields) => {
        const bytes = encode(DiscoveryRequest.fromPartial(fields));
        expect(decodeDiscoveryRequest(bytes)).toEqual(projectNode(DiscoveryRequest.decode(bytes)));
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('gives the generated decoder answer for cut, extended and arbitrary bytes (property)', () => {
    const mangled = fc.oneof(
      // A request cut anywhere.
      fc.tuple(request, fc.nat()).map(([fields, at]) => {
        const bytes = encode(DiscoveryRequest.fromPartial(fields));
        return bytes.subarray(0, at % (bytes.length + 1));
      }),
      // A request with arbitrary bytes after it (unknown fields, bad tags, groups).
      fc
        .tuple(request, fc.uint8Array({ maxLength: 12 }))
        .map(([fields, tail]) => Buffer.concat([encode(DiscoveryRequest.fromPartial(fields)), tail])),
      // Arbitrary bytes, often starting with a tag the fast path reads.
      fc
        .tuple(fc.constantFrom(0x0a, 0x1a, 0x22, 0x2a, 0x12), fc.uint8Array({ maxLength: 40 }))
        .map(([tag, rest]) => Buffer.from([tag, ...rest])),
    );
    fc.assert(
      fc.property(mangled, (bytes) => agreesOnBadBytes(handDecode(Buffer.from(bytes)), generatedDecode(Buffer.from(bytes)))),
      { numRuns: propertyRuns(500) },
    );
  });
});

describe('decodeDeltaDiscoveryRequest', () => {
  const generatedDecode = (bytes: Buffer) => answer(() => projectNode(DeltaDiscoveryRequest.decode(bytes)));
  const handDecode = (bytes: Buffer) => answer(() => decodeDeltaDiscoveryRequest(bytes));
  const encode = (request: DeltaDiscoveryRequest): Buffer => Buffer.from(DeltaDiscoveryRequest.encode(request).finish());
  const common = {
    typeUrl,
    resourceNamesSubscribe: fc.array(name, { maxLength: 4 }),
    resourceNamesUnsubscribe: fc.array(name, { maxLength: 2 }),
    initialResourceVersions: fc.dictionary(name, name, { maxKeys: 4 }),
    responseNonce: name,
  };
  // An ACK, a first request (node, subscriptions, what a reconnecting proxy holds), and every other field too.
  const request = fc.oneof(
    fc.record(common),
    fc.record({ ...common, node }),
    fc.record({
      ...common,
      node: fc.option(node, { nil: undefined }),
      errorDetail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: name }), { nil: undefined }),
      resourceLocatorsSubscribe: fc.array(fc.record({ name }), { maxLength: 2 }),
    }),
  );

  it("reads a Delta first request with an Envoy's node and a sidecar's ACK as the generated decoder does", () => {
    const first = encode(
      DeltaDiscoveryRequest.fromPartial({
        node: envoyNode('checkout', { metadata: { [OUTBOUND_PORT_METADATA]: 15001 } }),
        typeUrl: TypeUrl.Cluster,
        initialResourceVersions: { 'outbound|8080||hub': 'a1b2', hub: '' },
      }),
    );
    const decoded = decodeDeltaDiscoveryRequest(first);
    expect(decoded).toEqual(projectNode(DeltaDiscoveryRequest.decode(first)));
    expect(identityOf(decoded.node)).toEqual({ service: 'checkout', kind: 'envoy', outboundPort: 15001 });
    const ack = encode(DeltaDiscoveryRequest.fromPartial({ typeUrl: TypeUrl.ClusterLoadAssignment, responseNonce: '4' }));
    expect(decodeDeltaDiscoveryRequest(ack)).toEqual(DeltaDiscoveryRequest.decode(ack));
    expect(decodeDeltaDiscoveryRequest(ack).typeUrl).toBe(TypeUrl.ClusterLoadAssignment);
  });

  it('gives the generated decoder message for any request (property)', () => {
    fc.assert(
      fc.property(request, (fields) => {
        const bytes = encode(DeltaDiscoveryRequest.fromPartial(fields));
        expect(decodeDeltaDiscoveryRequest(bytes)).toEqual(projectNode(DeltaDiscoveryRequest.decode(bytes)));
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('gives the generated decoder answer for cut, extended and arbitrary bytes (property)', () => {
    const mangled = fc.oneof(
      fc.tuple(request, fc.nat()).map(([fields, at]) => {
        const bytes = encode(DeltaDiscoveryRequest.fromPartial(fields));
        return bytes.subarray(0, at % (bytes.length + 1));
      }),
      fc
        .tuple(request, fc.uint8Array({ maxLength: 12 }))
        .map(([fields, tail]) => Buffer.concat([encode(DeltaDiscoveryRequest.fromPartial(fields)), tail])),
      // Arbitrary bytes, often starting with a tag the fast path reads (a map entry's among them).
      fc
        .tuple(fc.constantFrom(0x0a, 0x12, 0x1a, 0x22, 0x2a, 0x32), fc.uint8Array({ maxLength: 40 }))
        .map(([tag, rest]) => Buffer.from([tag, ...rest])),
      fc.uint8Array({ maxLength: 12 }).map((entry) => Buffer.from([0x2a, entry.length, ...entry])),
    );
    fc.assert(
      fc.property(mangled, (bytes) => agreesOnBadBytes(handDecode(Buffer.from(bytes)), generatedDecode(Buffer.from(bytes)))),
      { numRuns: propertyRuns(500) },
    );
  });
});

describe('the request readers', () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;

  // A session keeps what the first request's reader returned (node id, cluster, metadata) for the stream's life:
  // none of it may be a view of, or a string sliced from, the ~52 KB the request arrived in.
  it("return nothing that keeps an Envoy's first request's bytes alive", async () => {
    const node = envoyNode('checkout', {
      id: `checkout-${'7f9c'.repeat(10)}`,
      metadata: { [OUTBOUND_PORT_METADATA]: 15001, team: 'payments' },
    });
    const read = [(buffer: Buffer) => decodeDiscoveryRequest(buffer).node, (buffer: Buffer) => decodeDeltaDiscoveryRequest(buffer).node];
    const encoded = [
      Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromPartial({ node, typeUrl: TypeUrl.Cluster })).finish()),
      Buffer.from(DeltaDiscoveryRequest.encode(DeltaDiscoveryRequest.fromPartial({ node, typeUrl: TypeUrl.Cluster })).finish()),
    ];
    for (const [i, readNode] of read.entries()) {
      let kept: Node | undefined;
      const requestBytes = (() => {
        // In a buffer of its own, as the message grpc-js hands the deserializer.
        const bytes = new ArrayBuffer(encoded[i]!.length);
        Buffer.from(bytes).set(encoded[i]!);
        kept = readNode(Buffer.from(bytes));
        return new WeakRef(bytes);
      })();
      await new Promise((resolve) => setImmediate(resolve));
      gc();
      expect(requestBytes.deref()).toBeUndefined();
      expect(identityOf(kept)).toEqual({ service: 'checkout', kind: 'envoy', outboundPort: 15001 });
      expect(kept!.id).toBe(node.id);
    }
  });
});

import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { CheckRequest } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { CONTEXT_DESTINATION, CONTEXT_DIRECTION, CONTEXT_SOURCE } from '@trellis/mesh-schema';
import { propertyRuns } from '@trellis/mesh-schema/testing';
import fc from 'fast-check';
import { checkRequest } from '../../test/support/harness';
import { referenceDecodeCheckAttributes } from '../../test/support/reference-check-attributes';
import { decodeCheckAttributes, type CheckAttributes } from './check-attributes';

const ROUTE_KEYS = [CONTEXT_DIRECTION, CONTEXT_SOURCE, CONTEXT_DESTINATION] as const;

const routeContextOf = (extensions: Readonly<Record<string, string>> | undefined) =>
  Object.fromEntries(ROUTE_KEYS.map((key) => [key, extensions && Object.hasOwn(extensions, key) ? extensions[key] : undefined]));
const leanRouteContext = (lean: CheckAttributes) => Object.fromEntries(ROUTE_KEYS.map((key) => [key, lean.contextExtensions[key]]));

describe('decodeCheckAttributes', () => {
  it('reads the same route context, host, path and headers as the generated decoder', () => {
    const request = checkRequest({
      context: { 'trellis.direction': 'edge', 'trellis.source': 'a', 'other.key': 'x' },
      headers: { authorization: 'Bearer x', cookie: 'CF_Authorization=y', 'x-empty': '' },
      host: 'shop.example.com:8443',
      path: '/admin?q=1',
    });
    request.attributes!.source = { address: undefined, service: 'spoofed', labels: { a: 'b' }, principal: 'p', certificate: '' };
    const bytes = CheckRequest.encode(request).finish();
    const full = CheckRequest.decode(bytes);
    const lean = decodeCheckAttributes(bytes);
    expect(leanRouteContext(lean)).toEqual(routeContextOf(full.attributes!.contextExtensions));
    expect(lean.contextExtensions[CONTEXT_DESTINATION]).toBeUndefined();
    expect(lean.http()).toEqual({
      host: full.attributes!.request!.http!.host,
      path: full.attributes!.request!.http!.path,
      headers: full.attributes!.request!.http!.headers,
    });
  });

  it('has no HTTP attributes and no context for an empty request', () => {
    const lean = decodeCheckAttributes(new Uint8Array());
    expect(leanRouteContext(lean)).toEqual(routeContextOf({}));
    expect(lean.http()).toBeUndefined();
  });

  it('marks bytes that are not protobuf as malformed instead of throwing', () => {
    const lean = decodeCheckAttributes(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    expect(lean.malformed).toBe(true);
    expect(lean.http()).toBeUndefined();
    expect(decodeCheckAttributes(CheckRequest.encode(checkRequest({})).finish()).malformed).toBe(false);
  });

  it('hands out the same string object for the same value, Check after Check', () => {
    const bytes = CheckRequest.encode(
      checkRequest({ context: { 'trellis.source': 'checkout', 'trellis.destination': 'orders' } }),
    ).finish();
    const [first, second] = [decodeCheckAttributes(bytes), decodeCheckAttributes(Buffer.from(bytes))];
    expect(second.contextExtensions[CONTEXT_SOURCE]).toBe('checkout');
    expect(Object.is(first.contextExtensions[CONTEXT_SOURCE], second.contextExtensions[CONTEXT_SOURCE])).toBe(true);
  });
});

// What a proxy (or an attacker) can put in a CheckRequest, written field by field so the
// bytes can hold what an encoder of JS objects cannot: repeated map keys, entries without
// a key or value, unknown fields, known field numbers with another wire type.
type Piece =
  | { kind: 'extension'; fields: EntryField[] }
  | { kind: 'request'; headers: [string, string][]; path: string | undefined; host: string | undefined; extra: boolean }
  | { kind: 'unknown'; field: number; wireType: 'varint' | 'fixed32' | 'fixed64' | 'bytes'; bytes: Uint8Array }
  | { kind: 'mistyped'; field: 4 | 10 };
type EntryField = { field: 1 | 2; value: Uint8Array } | { field: 3; value: Uint8Array } | { field: 1 | 2; varint: number };

const utf8 = (text: string) => new TextEncoder().encode(text);
// Keys that are the route's, that nearly are, and that only look alike once decoded badly.
const keyBytes = fc.oneof(
  fc.constantFrom(...ROUTE_KEYS.map(utf8)),
  fc.constantFrom(
    utf8('trellis.sourc'),
    utf8('trellis.source\0'),
    utf8('\ufefftrellis.source'),
    utf8('TRELLIS.SOURCE'),
    utf8('trellis.destination '),
    Uint8Array.from([...utf8('trellis'), 0xc0, 0xae, ...utf8('source')]), // an overlong '.'
    Uint8Array.from([...utf8('trellis.sourc'), 0xe5]), // 'e' with the high bit set
  ),
  fc.string().map(utf8),
);
// Service-like names (repeated, so the interner sees them again), any text, invalid UTF-8, long values.
const valueBytes = fc.oneof(
  fc.constantFrom('outbound', 'inbound', 'edge', 'checkout', 'orders', 'payments', '').map(utf8),
  fc.string({ unit: 'grapheme', maxLength: 20 }).map(utf8),
  fc.uint8Array({ maxLength: 24 }),
  fc.string({ minLength: 60, maxLength: 120 }).map(utf8),
);
const entryField: fc.Arbitrary<EntryField> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ field: fc.constant(1 as const), value: keyBytes }) },
  { weight: 4, arbitrary: fc.record({ field: fc.constant(2 as const), value: valueBytes }) },
  { weight: 1, arbitrary: fc.record({ field: fc.constant(3 as const), value: fc.uint8Array({ maxLength: 8 }) }) },
  { weight: 1, arbitrary: fc.record({ field: fc.constantFrom(1 as const, 2 as const), varint: fc.nat() }) },
);
const piece: fc.Arbitrary<Piece> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.oneof(
      // A well-formed entry of a route key, the common case.
      fc.tuple(fc.constantFrom(...ROUTE_KEYS.map(utf8)), valueBytes).map(([key, value]): Piece => ({
        kind: 'extension',
        fields: [
          { field: 1, value: key },
          { field: 2, value },
        ],
      })),
      fc.array(entryField, { maxLength: 5 }).map((fields): Piece => ({ kind: 'extension', fields })),
    ),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('request' as const),
      headers: fc.array(fc.tuple(fc.constantFrom('authorization', 'x-request-id', ':path', 'cookie', ''), fc.string()), { maxLength: 4 }),
      path: fc.option(fc.string(), { nil: undefined }),
      host: fc.option(fc.string(), { nil: undefined }),
      extra: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('unknown' as const),
      // Numbers AttributeContext does not define (1, 2, 4, 10–13 are messages the generated decoder would parse).
      field: fc.constantFrom(3, 5, 6, 7, 8, 9, 14, 15, 19, 20, 1000),
      wireType: fc.constantFrom('varint' as const, 'fixed32' as const, 'fixed64' as const, 'bytes' as const),
      bytes: fc.uint8Array({ maxLength: 12 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('mistyped' as const), field: fc.constantFrom(4 as const, 10 as const) }) },
);

function attributeContextBytes(pieces: readonly Piece[]): Uint8Array {
  const w = new BinaryWriter();
  for (const p of pieces) {
    switch (p.kind) {
      case 'extension': {
        const entry = new BinaryWriter();
        for (const f of p.fields) {
          if ('varint' in f) entry.tag(f.field, WireType.Varint).uint32(f.varint);
          else entry.tag(f.field, WireType.LengthDelimited).bytes(f.value);
        }
        w.tag(10, WireType.LengthDelimited).bytes(entry.finish());
        break;
      }
      case 'request': {
        const http = new BinaryWriter();
        for (const [key, value] of p.headers)
          http
            .tag(3, WireType.LengthDelimited)
            .fork()
            .tag(1, WireType.LengthDelimited)
            .string(key)
            .tag(2, WireType.LengthDelimited)
            .string(value)
            .join();
        if (p.path !== undefined) http.tag(4, WireType.LengthDelimited).string(p.path);
        if (p.host !== undefined) http.tag(5, WireType.LengthDelimited).string(p.host);
        if (p.extra) http.tag(2, WireType.LengthDelimited).string('GET').tag(99, WireType.Varint).uint32(7);
        w.tag(4, WireType.LengthDelimited).fork().tag(2, WireType.LengthDelimited).bytes(http.finish()).join();
        break;
      }
      case 'unknown':
        if (p.wireType === 'varint') w.tag(p.field, WireType.Varint).uint64(BigInt(p.bytes.length) * 1_000_003n);
        else if (p.wireType === 'fixed32') w.tag(p.field, WireType.Bit32).fixed32(p.bytes.length);
        else if (p.wireType === 'fixed64') w.tag(p.field, WireType.Bit64).fixed64(p.bytes.length);
        else w.tag(p.field, WireType.LengthDelimited).bytes(p.bytes);
        break;
      case 'mistyped':
        w.tag(p.field, WireType.Varint).uint32(1);
        break;
    }
  }
  return w.finish();
}

/** A CheckRequest with one AttributeContext (the generated decoder replaces, not merges, a repeated one). */
function checkRequestBytes(pieces: readonly Piece[], outerNoise: Uint8Array | undefined): Uint8Array {
  const w = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(attributeContextBytes(pieces));
  if (outerNoise) w.tag(7, WireType.LengthDelimited).bytes(outerNoise);
  return w.finish();
}

/** Damage: truncate, overwrite, insert or delete bytes somewhere. */
const damage = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({ kind: fc.constant('overwrite' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), byte: fc.nat(255) }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 6 }),
  }),
  fc.record({
    kind: fc.constant('delete' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    count: fc.integer({ min: 1, max: 4 }),
  }),
);
type Damage = typeof damage extends fc.Arbitrary<infer D> ? D : never;
function damaged(bytes: Uint8Array, hits: readonly Damage[]): Buffer {
  let out = Buffer.from(bytes);
  for (const hit of hits) {
    const at = Math.floor(hit.at * out.length);
    if (hit.kind === 'truncate') out = out.subarray(0, at);
    else if (hit.kind === 'overwrite' && out.length > 0) out[Math.min(at, out.length - 1)] = hit.byte;
    else if (hit.kind === 'insert') out = Buffer.concat([out.subarray(0, at), hit.bytes, out.subarray(at)]);
    else if (hit.kind === 'delete') out = Buffer.concat([out.subarray(0, at), out.subarray(at + hit.count)]);
  }
  return out;
}

/** The reader in use and the one before it agree on everything a Check reads. */
function expectSameAsReference(bytes: Uint8Array): void {
  const lean = decodeCheckAttributes(bytes);
  const reference = referenceDecodeCheckAttributes(bytes);
  expect(lean.malformed).toBe(reference.malformed);
  expect(leanRouteContext(lean)).toEqual(routeContextOf(reference.contextExtensions));
  expect(lean.http()).toEqual(reference.http());
}

describe('decodeCheckAttributes against the generated decoder and the reader before it (property)', () => {
  it('reads what the generated decoder reads from any well-formed CheckRequest', () => {
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 10 }), fc.option(fc.uint8Array({ maxLength: 8 }), { nil: undefined }), (pieces, noise) => {
        const bytes = checkRequestBytes(pieces, noise);
        const full = CheckRequest.decode(bytes);
        const lean = decodeCheckAttributes(bytes);
        expect(lean.malformed).toBe(false);
        expect(leanRouteContext(lean)).toEqual(routeContextOf(full.attributes?.contextExtensions));
        const http = full.attributes?.request?.http;
        expect(lean.http()).toEqual(http ? { host: http.host, path: http.path, headers: http.headers } : undefined);
        expectSameAsReference(bytes);
      }),
      { numRuns: propertyRuns(500) },
    );
  });

  it('on damaged and random bytes, is malformed exactly when the reader before it was, and otherwise reads the same', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc
            .tuple(fc.array(piece, { maxLength: 8 }), fc.array(damage, { minLength: 1, maxLength: 3 }))
            .map(([pieces, hits]) => damaged(checkRequestBytes(pieces, undefined), hits)),
          fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
          // Two AttributeContexts: merged, as protobuf (and Envoy) define it.
          fc
            .tuple(fc.array(piece, { maxLength: 4 }), fc.array(piece, { maxLength: 4 }))
            .map(([a, b]) => Buffer.concat([checkRequestBytes(a, undefined), checkRequestBytes(b, undefined)])),
        ),
        (bytes) => expectSameAsReference(bytes),
      ),
      { numRuns: propertyRuns(1000) },
    );
  });
});

describe('decodeCheckAttributes on hostile bytes', () => {
  it('never throws on truncated or random input', () => {
    const valid = Buffer.from(
      CheckRequest.encode(checkRequest({ context: { 'trellis.direction': 'inbound' }, headers: { authorization: 'Bearer x' } })).finish(),
    );
    for (let cut = 0; cut < valid.length; cut++) {
      const lean = decodeCheckAttributes(valid.subarray(0, cut));
      expect(() => lean.http()).not.toThrow();
      expectSameAsReference(valid.subarray(0, cut));
    }
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    for (let i = 0; i < 500; i++) {
      const bytes = Buffer.from(Array.from({ length: 1 + (i % 64) }, random));
      expect(() => decodeCheckAttributes(bytes).http()).not.toThrow();
    }
  });
});

// Encoding of ADS responses straight into one buffer. A response is mostly its
// resources' bytes, which snapshots share across streams (one `Any` per distinct
// resource): they are copied once, into the response, with a few bytes of framing
// written around them — no protobuf writer, no intermediate copies, nothing kept
// per resource. The output is byte-for-byte what the generated encoders produce
// (same field order, proto3 defaults left out); `wire.test.ts` holds them to it.
// A Delta response using fields Trellis never sets falls back to the generated encoder.
// SotW and Delta requests are read by hand too (every stream sends ~8 of them in a first push):
// the common shape (version, names, type URL, nonce, Delta's initial versions; ASCII) straight
// from the bytes, and of the first request's node only what the control plane reads (an Envoy's
// node also lists every extension compiled into it: ~50 KB the generated decoder would turn into
// objects per stream); anything else (an error detail, locators, unknown fields, non-ASCII text)
// by the generated decoder.
import { ADS_PUSH_ORDER } from '@trellis/envoy-types';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import { AggregatedDiscoveryServiceService } from '@trellis/envoy-types/envoy/service/discovery/v3/ads';
import { Node, type ControlPlane } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { Struct } from '@trellis/envoy-types/google/protobuf/struct';
import {
  DeltaDiscoveryRequest,
  DeltaDiscoveryResponse,
  DiscoveryRequest,
  type DiscoveryResponse,
  type Resource,
} from '@trellis/envoy-types/envoy/service/discovery/v3/discovery';

// Field tags (field number << 3 | wire type 2, length-delimited; 0 for varint).
const enum Tag {
  Field1 = (1 << 3) | 2,
  Field2 = (2 << 3) | 2,
  Field3Varint = 3 << 3,
  Field3 = (3 << 3) | 2,
  Field4 = (4 << 3) | 2,
  Field5 = (5 << 3) | 2,
  Field6 = (6 << 3) | 2,
  Field7 = (7 << 3) | 2,
}

function varintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

/** Size of a length-delimited field (one-byte tag) with a payload of `n` bytes. */
function fieldSize(n: number): number {
  return 1 + varintSize(n) + n;
}

/** Texts up to this many UTF-16 units are measured and written in JS when they are ASCII (see textLength). */
const SHORT_TEXT = 64;

/**
 * A text's UTF-8 length. Versions (16 hex digits), nonces (a few base-36 digits) and most names are short and ASCII:
 * their length is their string length, found and (Out.text) written in JS, where a call into the runtime
 * (Buffer.byteLength, then Buffer.write) costs more than these few characters — twice per text and response.
 * Anything else by Buffer.byteLength (UTF-8 of a non-ASCII text is always longer than its string).
 */
function textLength(s: string): number {
  if (s.length > SHORT_TEXT) return Buffer.byteLength(s);
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s);
  return s.length;
}

/** A field's size when present, 0 when proto3 leaves it out (empty). */
function stringFieldSize(s: string): number {
  return s === '' ? 0 : fieldSize(textLength(s));
}

/**
 * The UTF-8 bytes of the texts every response repeats: type URLs (the response's and each `Any`'s) and the control
 * plane's identifier. Each costs a lookup instead of a length count and a text encoding. Bounded: only the served
 * types and one identifier are expected.
 */
const repeatedTexts = new Map<string, Buffer>();

function repeatedTextBytes(text: string): Buffer {
  let bytes = repeatedTexts.get(text);
  if (!bytes) {
    bytes = Buffer.from(text, 'utf8');
    if (repeatedTexts.size < 64) repeatedTexts.set(text, bytes);
  }
  return bytes;
}

/** The size of a field holding a repeated text (repeatedTextBytes), 0 when empty. */
function repeatedTextFieldSize(s: string): number {
  return s === '' ? 0 : fieldSize(repeatedTextBytes(s).length);
}

function anySize(any: Any): number {
  return repeatedTextFieldSize(any.typeUrl) + (any.value.length === 0 ? 0 : fieldSize(any.value.length));
}

function controlPlaneSize(cp: ControlPlane): number {
  return repeatedTextFieldSize(cp.identifier);
}

/** Where an encoder writes a message of `size` bytes. */
type Allocate = (size: number) => Buffer;

const fresh: Allocate = (size) => Buffer.allocUnsafe(size);

/**
 * grpc-js's server copies each serialized response into a buffer of its own, behind the 5-byte gRPC frame prefix,
 * at once and keeps no reference to it (server-interceptors.js, `serializeMessage`): the buffer a serializer returns
 * is garbage as soon as it returns. The service definition's serializers therefore write into one scratch buffer and
 * hand grpc-js a view of it, valid until the next response is encoded: one allocation and one copy of every
 * response's bytes fewer (in a first push, ~20,000 responses that also filled Node's 8 KiB buffer pools and their
 * slabs twice as fast). Larger responses than the scratch keeps get a buffer of their own.
 */
const SCRATCH_MAX_BYTES = 1 << 20;
let scratch = Buffer.allocUnsafeSlow(64 * 1024);

const transient: Allocate = (size) => {
  if (size > SCRATCH_MAX_BYTES) return Buffer.allocUnsafe(size);
  if (size > scratch.length) scratch = Buffer.allocUnsafeSlow(Math.min(SCRATCH_MAX_BYTES, 2 ** Math.ceil(Math.log2(size))));
  return scratch.subarray(0, size);
};

class Out {
  private pos = 0;
  constructor(readonly buf: Buffer) {}

  varint(n: number): this {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[this.pos++] = n;
    return this;
  }

  /** Tag and length of a length-delimited field whose payload follows. */
  open(tag: Tag, length: number): this {
    this.buf[this.pos++] = tag;
    return this.varint(length);
  }

  /** A singular string: left out when empty. */
  string(tag: Tag, s: string): this {
    return s === '' ? this : this.element(tag, s);
  }

  /** An element of a repeated string: always written. */
  element(tag: Tag, s: string): this {
    const length = textLength(s);
    this.open(tag, length);
    if (length === s.length && length <= SHORT_TEXT) {
      // ASCII (textLength): each character is its byte.
      for (let i = 0; i < length; i++) this.buf[this.pos++] = s.charCodeAt(i);
    } else {
      this.pos += this.buf.write(s, this.pos, 'utf8');
    }
    return this;
  }

  /** A text every response repeats (repeatedTextBytes): left out when empty. */
  repeatedText(tag: Tag, s: string): this {
    return s === '' ? this : this.bytes(tag, repeatedTextBytes(s));
  }

  get position(): number {
    return this.pos;
  }

  /** Bytes already encoded (fields and all). */
  raw(bytes: Uint8Array): this {
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  bytes(tag: Tag, bytes: Uint8Array): this {
    if (bytes.length === 0) return this;
    this.open(tag, bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  any(tag: Tag, any: Any, size = anySize(any)): this {
    this.open(tag, size);
    return this.repeatedText(Tag.Field1, any.typeUrl).bytes(Tag.Field2, any.value);
  }

  controlPlane(tag: Tag, cp: ControlPlane): this {
    return this.open(tag, controlPlaneSize(cp)).repeatedText(Tag.Field1, cp.identifier);
  }

  done(): Buffer {
    if (this.pos !== this.buf.length) throw new Error(`encoded ${this.pos} bytes into a ${this.buf.length}-byte response`);
    return this.buf;
  }
}

/**
 * The encoded resources (field 2, repeated) of SotW responses by their `Any` array: sessions hand every response
 * with the same resources the same array (session-common.ts responseResources), e.g. the clusters of a callee's
 * hundreds of callers after a change, so the second response with an array keeps its resources' bytes and later
 * ones copy them whole. `null`: seen once (an array used once, like most of a first push's, costs no copy). Only
 * frozen arrays are remembered: their content cannot change.
 */
const encodedResources = new WeakMap<readonly Any[], Buffer | null>();

/**
 * A SotW response's bytes, in a buffer of its own (`allocate`: see `transient` for the one grpc-js gets).
 */
export function encodeDiscoveryResponse(response: DiscoveryResponse, allocate: Allocate = fresh): Buffer {
  // Only a frozen array cannot change between two responses.
  const known = Object.isFrozen(response.resources) ? encodedResources.get(response.resources) : null;
  if (known) return encodeWithResources(response, known, allocate);
  const anySizes = response.resources.map(anySize);
  let size = stringFieldSize(response.versionInfo) + repeatedTextFieldSize(response.typeUrl) + stringFieldSize(response.nonce);
  let resourcesSize = 0;
  for (const n of anySizes) resourcesSize += fieldSize(n);
  size += resourcesSize;
  if (response.canary) size += 2;
  if (response.controlPlane) size += fieldSize(controlPlaneSize(response.controlPlane));
  const out = new Out(allocate(size)).string(Tag.Field1, response.versionInfo);
  const start = out.position;
  response.resources.forEach((any, i) => out.any(Tag.Field2, any, anySizes[i]));
  if (known === null && resourcesSize > 0 && Object.isFrozen(response.resources)) {
    // Its own memory, not a view of the response (which would keep the whole allocation pool slab alive).
    const bytes = Buffer.allocUnsafeSlow(resourcesSize);
    out.buf.copy(bytes, 0, start, start + resourcesSize);
    encodedResources.set(response.resources, bytes);
  } else if (known === undefined && resourcesSize > 0) encodedResources.set(response.resources, null);
  return finishResponse(out, response);
}

/** The same bytes as above, with the resources' encoding copied in. */
function encodeWithResources(response: DiscoveryResponse, resources: Buffer, allocate: Allocate): Buffer {
  let size =
    stringFieldSize(response.versionInfo) + resources.length + repeatedTextFieldSize(response.typeUrl) + stringFieldSize(response.nonce);
  if (response.canary) size += 2;
  if (response.controlPlane) size += fieldSize(controlPlaneSize(response.controlPlane));
  const out = new Out(allocate(size)).string(Tag.Field1, response.versionInfo).raw(resources);
  return finishResponse(out, response);
}

/** The fields after the resources. */
function finishResponse(out: Out, response: DiscoveryResponse): Buffer {
  if (response.canary) out.varint(Tag.Field3Varint).varint(1);
  out.repeatedText(Tag.Field4, response.typeUrl).string(Tag.Field5, response.nonce);
  if (response.controlPlane) out.controlPlane(Tag.Field6, response.controlPlane);
  return out.done();
}

/** The Delta resource fields Trellis sets (name, version, the resource); the others need the generated encoder. */
function plainResource(r: Resource): boolean {
  return r.resourceName === undefined && r.ttl === undefined && r.cacheControl === undefined && r.metadata === undefined;
}

function resourceSize(r: Resource): number {
  let size = stringFieldSize(r.name) + stringFieldSize(r.version);
  for (const alias of r.aliases) size += fieldSize(textLength(alias));
  if (r.resource) size += fieldSize(anySize(r.resource));
  return size;
}

export function encodeDeltaDiscoveryResponse(response: DeltaDiscoveryResponse, allocate: Allocate = fresh): Buffer {
  if (response.removedResourceNames.length > 0 || !response.resources.every(plainResource)) {
    const bytes = DeltaDiscoveryResponse.encode(response).finish();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  const resourceSizes = response.resources.map(resourceSize);
  let size = stringFieldSize(response.systemVersionInfo) + repeatedTextFieldSize(response.typeUrl) + stringFieldSize(response.nonce);
  for (const n of resourceSizes) size += fieldSize(n);
  for (const name of response.removedResources) size += fieldSize(textLength(name));
  if (response.controlPlane) size += fieldSize(controlPlaneSize(response.controlPlane));
  const out = new Out(allocate(size)).string(Tag.Field1, response.systemVersionInfo);
  response.resources.forEach((r, i) => {
    // The generated encoder's order: name (3), aliases (4), version (1), resource (2).
    out.open(Tag.Field2, resourceSizes[i]!).string(Tag.Field3, r.name);
    for (const alias of r.aliases) out.element(Tag.Field4, alias);
    out.string(Tag.Field1, r.version);
    if (r.resource) out.any(Tag.Field2, r.resource);
  });
  out.repeatedText(Tag.Field4, response.typeUrl);
  for (const name of response.removedResources) out.element(Tag.Field6, name);
  out.string(Tag.Field5, response.nonce);
  if (response.controlPlane) out.controlPlane(Tag.Field7, response.controlPlane);
  return out.done();
}

/** The served type URLs by length (no two share one): a request naming one gets the shared constant, no new string. */
const SERVED_TYPE_URLS = new Map(ADS_PUSH_ORDER.map((typeUrl) => [typeUrl.length, typeUrl]));

/** The text of `buf[start, end)` when it is all ASCII (then UTF-8 and Latin-1 agree), else undefined. */
function asciiText(buf: Buffer, start: number, end: number): string | undefined {
  if (end - start > 32) {
    for (let i = start; i < end; i++) if (buf[i]! > 0x7f) return undefined;
    return buf.toString('latin1', start, end);
  }
  // Short text (versions, nonces, most names) is built in JS: cheaper than a call into the runtime.
  let text = '';
  for (let i = start; i < end; i++) {
    const byte = buf[i]!;
    if (byte > 0x7f) return undefined;
    text += String.fromCharCode(byte);
  }
  return text;
}

function typeUrlText(buf: Buffer, start: number, end: number): string | undefined {
  const served = SERVED_TYPE_URLS.get(end - start);
  if (served !== undefined && sameAscii(buf, start, served)) return served;
  return asciiText(buf, start, end);
}

/** Whether the bytes at `start` spell `text` (ASCII, the length already checked); compared from the end, where type URLs differ. */
function sameAscii(buf: Buffer, start: number, text: string): boolean {
  for (let i = text.length - 1; i >= 0; i--) if (buf[start + i] !== text.charCodeAt(i)) return false;
  return true;
}

/**
 * A SotW request, equal to what the generated `DiscoveryRequest.decode` returns, except that its node carries only
 * the fields the control plane reads (`NODE_FIELDS_READ`; the others at their defaults). Version, resource names,
 * type URL, nonce and the node's fields are read here when in ASCII; a request with any other field (a NACK's error
 * detail, resource locators, unknown fields) or other text goes to the generated decoder whole, so its error for
 * bad bytes is the generated decoder's. The node's other fields are skipped by their framing, not decoded: their
 * content is never checked (nothing reads it).
 */
export function decodeDiscoveryRequest(buf: Buffer): DiscoveryRequest {
  return readCommonRequest(buf) ?? projectNode(DiscoveryRequest.decode(buf));
}

/**
 * Of a proxy's node, what the control plane reads: its id, its cluster (the service), its metadata (the outbound
 * port) and user agent name (ads-server.ts `identityOf`). An Envoy's node also carries its build version and every
 * extension compiled into it, with their type URLs (hundreds of entries); those, its locality, client features,
 * listening addresses and dynamic parameters are left at their defaults. Field numbers of envoy.config.core.v3.Node.
 */
export const NODE_FIELDS_READ = { id: 1, cluster: 2, metadata: 3, userAgentName: 6 } as const;

/** `request` with its node cut down to `NODE_FIELDS_READ`, as the hand-written readers give it. */
export function projectNode<R extends DiscoveryRequest | DeltaDiscoveryRequest>(request: R): R {
  if (request.node) {
    const { id, cluster, metadata, userAgentName } = request.node;
    request.node = Node.fromPartial({ id, cluster, userAgentName });
    request.node.metadata = metadata;
  }
  return request;
}

/** Reads a varint of at most `maxBytes` bytes at `pos`: [value, next position], or undefined when longer or cut. */
function readVarint(buf: Buffer, pos: number, end: number, maxBytes: number): [number, number] | undefined {
  let value = 0;
  for (let i = 0; i < maxBytes; i++) {
    if (pos >= end) return undefined;
    const byte = buf[pos++]!;
    // Multiplication, not shifts: a 5-byte length would overflow 32-bit shifts into a negative number.
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) return [value, pos];
  }
  return undefined;
}

/**
 * The node in `buf[start, end)`, cut down to `NODE_FIELDS_READ`, or undefined for anything the generated decoder
 * should judge: non-ASCII text, groups, a bad tag or length, metadata it cannot decode. Later occurrences of a
 * field replace earlier ones, as in the generated decoder.
 */
function readNode(buf: Buffer, start: number, end: number): Node | undefined {
  let id = '';
  let cluster = '';
  let userAgentName = '';
  let metadata: { [key: string]: unknown } | undefined;
  let pos = start;
  while (pos < end) {
    const tagRead = readVarint(buf, pos, end, 5);
    if (!tagRead || tagRead[0] === 0) return undefined;
    const [tag, afterTag] = tagRead;
    pos = afterTag;
    const wireType = tag % 8;
    if (wireType === 0) {
      const skipped = readVarint(buf, pos, end, 10);
      if (!skipped) return undefined;
      pos = skipped[1];
    } else if (wireType === 1) pos += 8;
    else if (wireType === 5) pos += 4;
    else if (wireType === 2) {
      const lengthRead = readVarint(buf, pos, end, 5);
      if (!lengthRead) return undefined;
      const fieldStart = lengthRead[1];
      pos = fieldStart + lengthRead[0];
      if (pos > end) return undefined;
      const field = (tag - wireType) / 8;
      if (field === NODE_FIELDS_READ.metadata) {
        try {
          metadata = Struct.unwrap(Struct.decode(buf.subarray(fieldStart, pos)));
        } catch {
          return undefined;
        }
      } else if (field === NODE_FIELDS_READ.id || field === NODE_FIELDS_READ.cluster || field === NODE_FIELDS_READ.userAgentName) {
        const text = asciiText(buf, fieldStart, pos);
        if (text === undefined) return undefined;
        if (field === NODE_FIELDS_READ.id) id = text;
        else if (field === NODE_FIELDS_READ.cluster) cluster = text;
        else userAgentName = text;
      }
    } else return undefined; // groups (3, 4) and the invalid wire types 6 and 7
    if (pos > end) return undefined;
  }
  const node = Node.fromPartial({ id, cluster, userAgentName });
  node.metadata = metadata;
  return node;
}

function readCommonRequest(buf: Buffer): DiscoveryRequest | undefined {
  const request: DiscoveryRequest = {
    $type: DiscoveryRequest.$type,
    versionInfo: '',
    node: undefined,
    resourceNames: [],
    resourceLocators: [],
    typeUrl: '',
    responseNonce: '',
    errorDetail: undefined,
  };
  const end = buf.length;
  let pos = 0;
  while (pos < end) {
    const tag = buf[pos++]!;
    // Fields 1 to 5, length-delimited (one-byte tags); anything else is the generated decoder's.
    if (tag !== Tag.Field1 && tag !== Tag.Field2 && tag !== Tag.Field3 && tag !== Tag.Field4 && tag !== Tag.Field5) return undefined;
    // The length, a varint of at most 3 bytes here (up to 2 MiB: an Envoy's node is ~50 KB); a longer one is the
    // generated decoder's.
    let length = 0;
    for (let shift = 0; ; shift += 7) {
      if (shift > 14 || pos >= end) return undefined;
      const byte = buf[pos++]!;
      length |= (byte & 0x7f) << shift;
      if (byte < 0x80) break;
    }
    const start = pos;
    pos += length;
    if (pos > end) return undefined;
    if (tag === Tag.Field2) {
      const node = readNode(buf, start, pos);
      if (!node) return undefined;
      request.node = node;
      continue;
    }
    const text = tag === Tag.Field4 ? typeUrlText(buf, start, pos) : asciiText(buf, start, pos);
    if (text === undefined) return undefined;
    if (tag === Tag.Field1) request.versionInfo = text;
    else if (tag === Tag.Field3) request.resourceNames.push(text);
    else if (tag === Tag.Field4) request.typeUrl = text;
    else request.responseNonce = text;
  }
  return request;
}

/**
 * A Delta request, equal to what the generated `DeltaDiscoveryRequest.decode` returns, its node cut down as for SotW
 * (`decodeDiscoveryRequest`). Node, type URL, subscribed and unsubscribed names, initial resource versions and nonce
 * are read here when in ASCII; anything else (a NACK's error detail, resource locators, unknown fields, other text)
 * goes to the generated decoder whole.
 */
export function decodeDeltaDiscoveryRequest(buf: Buffer): DeltaDiscoveryRequest {
  return readCommonDeltaRequest(buf) ?? projectNode(DeltaDiscoveryRequest.decode(buf));
}

// DeltaDiscoveryRequest's fields, all length-delimited: node 1, type URL 2, names subscribed 3 and unsubscribed 4,
// initial resource versions 5 (map entries: key 1, value 2), nonce 6.
function readCommonDeltaRequest(buf: Buffer): DeltaDiscoveryRequest | undefined {
  const request: DeltaDiscoveryRequest = {
    $type: DeltaDiscoveryRequest.$type,
    node: undefined,
    typeUrl: '',
    resourceNamesSubscribe: [],
    resourceNamesUnsubscribe: [],
    resourceLocatorsSubscribe: [],
    resourceLocatorsUnsubscribe: [],
    initialResourceVersions: {},
    responseNonce: '',
    errorDetail: undefined,
  };
  const end = buf.length;
  let pos = 0;
  while (pos < end) {
    const tag = buf[pos++]!;
    if (tag !== Tag.Field1 && tag !== Tag.Field2 && tag !== Tag.Field3 && tag !== Tag.Field4 && tag !== Tag.Field5 && tag !== Tag.Field6)
      return undefined;
    const lengthRead = readVarint(buf, pos, end, 3);
    if (!lengthRead) return undefined;
    const start = lengthRead[1];
    pos = start + lengthRead[0];
    if (pos > end) return undefined;
    if (tag === Tag.Field1) {
      const node = readNode(buf, start, pos);
      if (!node) return undefined;
      request.node = node;
    } else if (tag === Tag.Field5) {
      const entry = readVersionEntry(buf, start, pos);
      if (!entry) return undefined;
      request.initialResourceVersions[entry[0]] = entry[1];
    } else {
      const text = tag === Tag.Field2 ? typeUrlText(buf, start, pos) : asciiText(buf, start, pos);
      if (text === undefined) return undefined;
      if (tag === Tag.Field2) request.typeUrl = text;
      else if (tag === Tag.Field3) request.resourceNamesSubscribe.push(text);
      else if (tag === Tag.Field4) request.resourceNamesUnsubscribe.push(text);
      else request.responseNonce = text;
    }
  }
  return request;
}

/** An initial-resource-versions map entry: [name, version] ('' for either left out), or undefined for anything else. */
function readVersionEntry(buf: Buffer, start: number, end: number): [string, string] | undefined {
  let key = '';
  let value = '';
  let pos = start;
  while (pos < end) {
    const tag = buf[pos++]!;
    if (tag !== Tag.Field1 && tag !== Tag.Field2) return undefined;
    const lengthRead = readVarint(buf, pos, end, 3);
    if (!lengthRead) return undefined;
    const fieldStart = lengthRead[1];
    pos = fieldStart + lengthRead[0];
    if (pos > end) return undefined;
    const text = asciiText(buf, fieldStart, pos);
    if (text === undefined) return undefined;
    if (tag === Tag.Field1) key = text;
    else value = text;
  }
  return [key, value];
}

/**
 * The ADS service definition with these encoders for both response types (into the scratch buffer grpc-js copies
 * from, `transient`) and the request decoders.
 */
export const AdsServiceDefinition = {
  ...AggregatedDiscoveryServiceService,
  streamAggregatedResources: {
    ...AggregatedDiscoveryServiceService.streamAggregatedResources,
    requestDeserialize: decodeDiscoveryRequest,
    responseSerialize: (response: DiscoveryResponse): Buffer => encodeDiscoveryResponse(response, transient),
  },
  deltaAggregatedResources: {
    ...AggregatedDiscoveryServiceService.deltaAggregatedResources,
    requestDeserialize: decodeDeltaDiscoveryRequest,
    responseSerialize: (response: DeltaDiscoveryResponse): Buffer => encodeDeltaDiscoveryResponse(response, transient),
  },
} as const;

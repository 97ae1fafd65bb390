// What a simulated Envoy of the fan-out benchmark reads of the control plane's responses and writes back,
// straight from and to the protobuf wire format. A response is scanned once, without decoding its resources:
//   DiscoveryResponse       type_url, version_info, nonce; per resource the byte length of its Any's value and,
//                           when asked (CDS and LDS, for the EDS and RDS follow-ups), the resource's name (field 1
//                           of a Cluster and of a Listener)
//   DeltaDiscoveryResponse  type_url, system_version_info, nonce; per resource its name, version and the byte
//                           length of its Any's value; removed_resources
// Every other field is skipped. Requests are written field by field in ts-proto's order, so their bytes are those
// of DiscoveryRequest.encode / DeltaDiscoveryRequest.encode (xds-wire.test.ts checks both directions against ts-proto),
// behind gRPC's 5-byte message prefix (grpc-wire-client.ts writes them as they are).
// The simulator is one process for thousands of streams: a full ts-proto decode of every response (each resource's
// bytes copied into a Buffer of its own) cost it more CPU than the server spent on the same change.
import { TypeUrl } from '@trellis/envoy-types';

/** The type URLs a response names, as Buffers, so a response's type_url is compared rather than decoded. */
const KNOWN_TYPE_URLS = Object.values(TypeUrl).map((url) => ({ url, bytes: Buffer.from(url, 'latin1') }));

function typeUrlAt(buf: Buffer, start: number, end: number): string {
  for (const known of KNOWN_TYPE_URLS) {
    if (known.bytes.length === end - start && sameBytes(known.bytes, buf, start)) return known.url;
  }
  return buf.toString('utf8', start, end);
}

/** Whether buf holds `known` from `start`; compared from the end, where type URLs differ (a loop beats Buffer.compare's native call here). */
function sameBytes(known: Buffer, buf: Buffer, start: number): boolean {
  for (let i = known.length - 1; i >= 0; i--) if (known[i] !== buf[start + i]) return false;
  return true;
}

/** A cursor over one message's fields. */
class WireScanner {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;
  /** The current field's number and wire type; for a length-delimited field its bytes' start and end. */
  field = 0;
  wireType = 0;
  start = 0;
  stop = 0;

  reset(buf: Buffer, start: number, end: number): this {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    return this;
  }

  /** Moves to the next field, past the current one's value; false at the end of the message. */
  next(): boolean {
    if (this.pos >= this.end) return false;
    const tag = this.varint();
    this.field = tag >>> 3;
    this.wireType = tag & 7;
    switch (this.wireType) {
      case 0:
        this.varint();
        break;
      case 1:
        this.pos += 8;
        break;
      case 2: {
        const length = this.varint();
        this.start = this.pos;
        this.stop = this.pos += length;
        break;
      }
      case 5:
        this.pos += 4;
        break;
      default:
        throw new Error(`unsupported protobuf wire type ${this.wireType} (field ${this.field})`);
    }
    if (this.pos > this.end) throw new Error(`protobuf field ${this.field} runs past its message`);
    return true;
  }

  /** The current length-delimited field as a string. */
  string(): string {
    return this.buf.toString('utf8', this.start, this.stop);
  }

  private varint(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.pos >= this.end) throw new Error('protobuf varint runs past its message');
      const byte = this.buf[this.pos++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new Error('protobuf varint longer than 5 bytes');
  }
}

/** Field 1 (a string) of an encoded message: the name of a Cluster, Listener, RouteConfiguration or ClusterLoadAssignment. */
function nameField(scanner: WireScanner, buf: Buffer, start: number, end: number): string {
  scanner.reset(buf, start, end);
  while (scanner.next()) if (scanner.field === 1 && scanner.wireType === 2) return scanner.string();
  return '';
}

/**
 * One SotW DiscoveryResponse as read: reused for every response (the handler reads it before the next arrives).
 */
export class SotwResponse {
  typeUrl = '';
  versionInfo = '';
  nonce = '';
  /** Resources and the bytes of their values. */
  resourceCount = 0;
  resourceBytes = 0;
  private buf: Buffer = Buffer.alloc(0);
  /** Each resource's value, as start and end offsets into `buf`. */
  private values: number[] = [];
  private readonly outer = new WireScanner();
  private readonly inner = new WireScanner();

  read(buf: Buffer): this {
    this.buf = buf;
    this.typeUrl = this.versionInfo = this.nonce = '';
    this.resourceCount = this.resourceBytes = 0;
    const s = this.outer.reset(buf, 0, buf.length);
    while (s.next()) {
      if (s.wireType !== 2) continue;
      if (s.field === 1) this.versionInfo = s.string();
      else if (s.field === 4) this.typeUrl = typeUrlAt(buf, s.start, s.stop);
      else if (s.field === 5) this.nonce = s.string();
      else if (s.field === 2) {
        // An Any: field 2 is its value.
        const any = this.inner.reset(buf, s.start, s.stop);
        while (any.next()) {
          if (any.field !== 2 || any.wireType !== 2) continue;
          this.values[2 * this.resourceCount] = any.start;
          this.values[2 * this.resourceCount + 1] = any.stop;
          this.resourceCount++;
          this.resourceBytes += any.stop - any.start;
        }
      }
    }
    return this;
  }

  /** The resources' names, sorted (decoded only when asked: an Envoy follows CDS with EDS and LDS with RDS by name). */
  names(): string[] {
    const names: string[] = new Array(this.resourceCount);
    for (let i = 0; i < this.resourceCount; i++) names[i] = nameField(this.inner, this.buf, this.values[2 * i]!, this.values[2 * i + 1]!);
    return names.sort();
  }
}

/** One DeltaDiscoveryResponse as read: reused for every response. */
export class DeltaResponse {
  typeUrl = '';
  systemVersionInfo = '';
  nonce = '';
  resourceBytes = 0;
  /** Per resource its name and version, in order. */
  readonly names: string[] = [];
  readonly versions: string[] = [];
  readonly removed: string[] = [];
  private readonly outer = new WireScanner();
  private readonly resource = new WireScanner();
  private readonly any = new WireScanner();

  read(buf: Buffer): this {
    this.typeUrl = this.systemVersionInfo = this.nonce = '';
    this.resourceBytes = 0;
    this.names.length = this.versions.length = this.removed.length = 0;
    const s = this.outer.reset(buf, 0, buf.length);
    while (s.next()) {
      if (s.wireType !== 2) continue;
      if (s.field === 1) this.systemVersionInfo = s.string();
      else if (s.field === 4) this.typeUrl = typeUrlAt(buf, s.start, s.stop);
      else if (s.field === 5) this.nonce = s.string();
      else if (s.field === 6) this.removed.push(s.string());
      else if (s.field === 2) {
        // A Resource: version 1, resource 2 (an Any, whose field 2 is the value), name 3.
        let name = '';
        let version = '';
        const r = this.resource.reset(buf, s.start, s.stop);
        while (r.next()) {
          if (r.wireType !== 2) continue;
          if (r.field === 3) name = r.string();
          else if (r.field === 1) version = r.string();
          else if (r.field === 2) {
            const any = this.any.reset(buf, r.start, r.stop);
            while (any.next()) if (any.field === 2 && any.wireType === 2) this.resourceBytes += any.stop - any.start;
          }
        }
        this.names.push(name);
        this.versions.push(version);
      }
    }
    return this;
  }
}

// ---- requests ----

/** gRPC's length prefix of a message: a compressed flag and 4 bytes of length. */
export const GRPC_PREFIX_BYTES = 5;

const varintSize = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);

/**
 * Writes a gRPC message (the 5-byte prefix: uncompressed, length) into one Buffer sized in a first pass (sizes are
 * summed by the same calls with `buf` unset).
 */
class RequestWriter {
  size = 0;
  private buf: Buffer | undefined;
  private pos = 0;

  begin(size: number): void {
    this.buf = Buffer.allocUnsafe(GRPC_PREFIX_BYTES + size);
    this.buf[0] = 0;
    this.buf.writeUInt32BE(size, 1);
    this.pos = GRPC_PREFIX_BYTES;
  }

  finish(): Buffer {
    const buf = this.buf!;
    if (this.pos !== buf.length) throw new Error(`request encoded to ${this.pos} bytes of ${buf.length}`);
    this.buf = undefined;
    this.size = 0;
    return buf;
  }

  /** A string field; proto3 leaves an empty one out unless it is a repeated field's element. */
  string(field: number, value: string, always = false): void {
    if (value === '' && !always) return;
    const length = Buffer.byteLength(value);
    if (!this.buf) {
      this.size += 1 + varintSize(length) + length;
      return;
    }
    this.tag(field, length);
    this.pos += this.buf.write(value, this.pos, 'utf8');
  }

  /** An already-encoded message field. */
  bytes(field: number, value: Uint8Array): void {
    if (!this.buf) {
      this.size += 1 + varintSize(value.length) + value.length;
      return;
    }
    this.tag(field, value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
  }

  /** A map<string, string> entry: a message of key (1) and value (2), each left out when empty. */
  mapEntry(field: number, key: string, value: string): void {
    const keyLength = Buffer.byteLength(key);
    const valueLength = Buffer.byteLength(value);
    const length =
      (keyLength > 0 ? 1 + varintSize(keyLength) + keyLength : 0) + (valueLength > 0 ? 1 + varintSize(valueLength) + valueLength : 0);
    if (!this.buf) {
      this.size += 1 + varintSize(length) + length;
      return;
    }
    this.tag(field, length);
    this.string(1, key);
    this.string(2, value);
  }

  private tag(field: number, length: number): void {
    const buf = this.buf!;
    buf[this.pos++] = (field << 3) | 2;
    let n = length;
    while (n >= 0x80) {
      buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    buf[this.pos++] = n;
  }
}

const writer = new RequestWriter();

/** Runs `fields` twice, to size the Buffer and to fill it. */
function encode(fields: (w: RequestWriter) => void): Buffer {
  fields(writer);
  writer.begin(writer.size);
  fields(writer);
  return writer.finish();
}

/** A SotW DiscoveryRequest, as a gRPC message: a subscription, or the ACK of a response (its version_info and nonce echoed). */
export function discoveryRequestMessage(request: {
  node?: Uint8Array;
  typeUrl: string;
  resourceNames: readonly string[];
  versionInfo: string;
  responseNonce: string;
}): Buffer {
  return encode((w) => {
    w.string(1, request.versionInfo);
    if (request.node) w.bytes(2, request.node);
    for (const name of request.resourceNames) w.string(3, name, true);
    w.string(4, request.typeUrl);
    w.string(5, request.responseNonce);
  });
}

/** A DeltaDiscoveryRequest, as a gRPC message: a subscription (with the versions held, on a new stream), or the ACK of a response. */
export function deltaDiscoveryRequestMessage(request: {
  node?: Uint8Array;
  typeUrl: string;
  resourceNamesSubscribe?: Iterable<string>;
  initialResourceVersions?: ReadonlyMap<string, string>;
  responseNonce?: string;
}): Buffer {
  return encode((w) => {
    if (request.node) w.bytes(1, request.node);
    w.string(2, request.typeUrl);
    for (const name of request.resourceNamesSubscribe ?? []) w.string(3, name, true);
    for (const [name, version] of request.initialResourceVersions ?? []) w.mapEntry(5, name, version);
    w.string(6, request.responseNonce ?? '');
  });
}

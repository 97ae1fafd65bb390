// What a Check needs from a CheckRequest, read straight from the wire.
//
// A full decode of CheckRequest builds the whole AttributeContext (peers,
// every header, metadata) on each call; a Check is decided on three per-route
// context extensions. This reader walks the protobuf bytes by offset with one
// cursor, recognises those three keys by their bytes and takes their values
// from an interner (the same string objects Check after Check), so a cache-hit
// Check leaves two small objects for the GC. Any other context extension is
// skipped. The HTTP request attributes are read only when asked (inbound and
// edge Checks, log lines). Field numbers are those of
// envoy/service/auth/v3/{external_auth,attribute_context}.proto.
import { CONTEXT_DESTINATION, CONTEXT_DIRECTION, CONTEXT_SOURCE } from '@trellis/mesh-contracts';
import { StringInterner } from './interned-strings';

export interface HttpAttributes {
  host: string;
  path: string;
  /** Lower-case header names, as Envoy sends them. */
  headers: Record<string, string>;
}

/** The context extensions a Check is decided on (undefined: not set on the route). Others are not read. */
export interface RouteContext {
  readonly [CONTEXT_DIRECTION]?: string | undefined;
  readonly [CONTEXT_SOURCE]?: string | undefined;
  readonly [CONTEXT_DESTINATION]?: string | undefined;
}

export interface CheckAttributes {
  /** The bytes were not a CheckRequest: the Check is denied (a throwing deserializer would fail the RPC instead). */
  readonly malformed: boolean;
  readonly contextExtensions: RouteContext;
  /** The HTTP request attributes, decoded on first use. */
  http(): HttpAttributes | undefined;
}

const CHECK_REQUEST_ATTRIBUTES = 1;
const ATTRIBUTES_REQUEST = 4;
const ATTRIBUTES_CONTEXT_EXTENSIONS = 10;
const REQUEST_HTTP = 2;
const HTTP_HEADERS = 3;
const HTTP_PATH = 4;
const HTTP_HOST = 5;
const MAP_KEY = 1;
const MAP_VALUE = 2;

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

const DIRECTION_KEY = Buffer.from(CONTEXT_DIRECTION);
const SOURCE_KEY = Buffer.from(CONTEXT_SOURCE);
const DESTINATION_KEY = Buffer.from(CONTEXT_DESTINATION);
const KNOWN_KEYS = [DIRECTION_KEY, SOURCE_KEY, DESTINATION_KEY];

const values = new StringInterner();

class MalformedError extends Error {}

/**
 * A cursor over a message's bytes [pos, limit). `enter()` narrows it to the payload of the
 * length-delimited field just read, `leave()` returns to the enclosing message after it: one
 * cursor walks every level, nothing is allocated per field.
 */
class Cursor {
  field = 0;
  wireType = 0;
  /** For length-delimited fields: where the payload starts and ends. */
  start = 0;
  end = 0;

  constructor(
    readonly buf: Buffer,
    public pos: number,
    public limit: number,
  ) {}

  /** Advances to the next field; false at the end of the message. */
  next(): boolean {
    if (this.pos >= this.limit) return false;
    const tag = this.varint();
    this.field = tag >>> 3;
    this.wireType = tag & 7;
    if (this.field === 0) throw new MalformedError('field number 0');
    switch (this.wireType) {
      case VARINT:
        this.varint();
        break;
      case FIXED64:
        this.pos += 8;
        break;
      case LENGTH_DELIMITED: {
        const length = this.varint();
        this.start = this.pos;
        this.end = this.pos + length;
        this.pos = this.end;
        break;
      }
      case FIXED32:
        this.pos += 4;
        break;
      default:
        throw new MalformedError(`unsupported wire type ${this.wireType}`);
    }
    if (this.pos > this.limit) throw new MalformedError('field runs past the end of its message');
    return true;
  }

  /** Whether the field just read is `field`, with `wireType`. */
  is(field: number, wireType: number): boolean {
    return this.field === field && this.wireType === wireType;
  }

  /** Into the length-delimited field just read; returns the limit to hand `leave()`. */
  enter(): number {
    const outer = this.limit;
    this.pos = this.start;
    this.limit = this.end;
    return outer;
  }

  /** Back in the enclosing message (whose limit `enter()` returned), after the field. */
  leave(outer: number): void {
    this.pos = this.limit;
    this.limit = outer;
  }

  string(): string {
    return this.buf.toString('utf8', this.start, this.end);
  }

  /** Whether the length-delimited payload just read is exactly `bytes`. */
  payloadIs(bytes: Buffer): boolean {
    if (this.end - this.start !== bytes.length) return false;
    for (let i = 0; i < bytes.length; i++) if (this.buf[this.start + i] !== bytes[i]) return false;
    return true;
  }

  private varint(): number {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.pos >= this.limit) throw new MalformedError('truncated varint');
      const byte = this.buf[this.pos++]!;
      result |= (byte & 0x7f) << shift;
      if (byte < 0x80) return result >>> 0;
    }
    // Lengths and tags fit in 32 bits; skip the rest of a longer (int64) varint.
    for (let i = 0; i < 5; i++) if (this.buf[this.pos++]! < 0x80) return result >>> 0;
    throw new MalformedError('varint too long');
  }
}

/** What decodeCheckAttributes returns: the route context now, the HTTP attributes when asked. */
class DecodedCheckAttributes implements CheckAttributes {
  private decodedHttp: HttpAttributes | undefined | null = null;

  constructor(
    readonly malformed: boolean,
    readonly contextExtensions: RouteContext,
    private readonly buf: Buffer,
    /** Where the AttributeContext.request payload lies; start -1: absent. */
    private readonly requestStart: number,
    private readonly requestEnd: number,
  ) {}

  http(): HttpAttributes | undefined {
    if (this.decodedHttp === null) {
      try {
        this.decodedHttp = this.requestStart >= 0 ? readHttp(new Cursor(this.buf, this.requestStart, this.requestEnd)) : undefined;
      } catch {
        this.decodedHttp = undefined;
      }
    }
    return this.decodedHttp;
  }
}

const MALFORMED = new DecodedCheckAttributes(true, {}, Buffer.alloc(0), -1, 0);

export function decodeCheckAttributes(bytes: Uint8Array): CheckAttributes {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let direction: string | undefined;
  let source: string | undefined;
  let destination: string | undefined;
  // Like the generated decoder, the last occurrence of a field wins.
  let requestStart = -1;
  let requestEnd = 0;
  try {
    const cursor = new Cursor(buf, 0, buf.length);
    while (cursor.next()) {
      if (!cursor.is(CHECK_REQUEST_ATTRIBUTES, LENGTH_DELIMITED)) continue;
      const afterAttributes = cursor.enter();
      while (cursor.next()) {
        if (cursor.is(ATTRIBUTES_REQUEST, LENGTH_DELIMITED)) {
          requestStart = cursor.start;
          requestEnd = cursor.end;
        } else if (cursor.is(ATTRIBUTES_CONTEXT_EXTENSIONS, LENGTH_DELIMITED)) {
          // One map<string, string> entry: the last key and value fields win, either may be absent ('').
          const afterEntry = cursor.enter();
          let key: Buffer | undefined;
          let valueStart = 0;
          let valueEnd = 0;
          while (cursor.next()) {
            if (cursor.is(MAP_KEY, LENGTH_DELIMITED)) key = knownKey(cursor);
            else if (cursor.is(MAP_VALUE, LENGTH_DELIMITED)) {
              valueStart = cursor.start;
              valueEnd = cursor.end;
            }
          }
          cursor.leave(afterEntry);
          if (key !== undefined) {
            const value = values.utf8(buf, valueStart, valueEnd);
            if (key === DIRECTION_KEY) direction = value;
            else if (key === SOURCE_KEY) source = value;
            else destination = value;
          }
        }
      }
      cursor.leave(afterAttributes);
    }
  } catch {
    return MALFORMED;
  }
  return new DecodedCheckAttributes(
    false,
    { [CONTEXT_DIRECTION]: direction, [CONTEXT_SOURCE]: source, [CONTEXT_DESTINATION]: destination },
    buf,
    requestStart,
    requestEnd,
  );
}

/** Which of the keys read here the payload just read is, if any. */
function knownKey(cursor: Cursor): Buffer | undefined {
  for (const known of KNOWN_KEYS) if (cursor.payloadIs(known)) return known;
  return undefined;
}

function readHttp(request: Cursor): HttpAttributes | undefined {
  let httpStart = -1;
  let httpEnd = 0;
  while (request.next()) {
    if (request.is(REQUEST_HTTP, LENGTH_DELIMITED)) {
      httpStart = request.start;
      httpEnd = request.end;
    }
  }
  if (httpStart < 0) return undefined;
  const http = new Cursor(request.buf, httpStart, httpEnd);
  const result: HttpAttributes = { host: '', path: '', headers: {} };
  while (http.next()) {
    if (http.is(HTTP_HEADERS, LENGTH_DELIMITED)) {
      const afterEntry = http.enter();
      readMapEntry(http, result.headers);
      http.leave(afterEntry);
    } else if (http.is(HTTP_PATH, LENGTH_DELIMITED)) result.path = http.string();
    else if (http.is(HTTP_HOST, LENGTH_DELIMITED)) result.host = http.string();
  }
  return result;
}

/** A map<string, string> entry (key = 1, value = 2), the cursor inside it. */
function readMapEntry(entry: Cursor, into: Record<string, string>): void {
  let key = '';
  let value = '';
  while (entry.next()) {
    if (entry.is(MAP_KEY, LENGTH_DELIMITED)) key = entry.string();
    else if (entry.is(MAP_VALUE, LENGTH_DELIMITED)) value = entry.string();
  }
  into[key] = value;
}

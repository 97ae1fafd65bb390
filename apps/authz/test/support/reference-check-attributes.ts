// The CheckRequest reader as it was before the interned, single-cursor one
// (apps/authz/src/check/check-attributes.ts at fbc8786), kept unchanged as the
// oracle of check-attributes.test.ts: on any bytes, the reader in use must say
// "malformed" exactly when this one did (a malformed request is denied; the
// denial must not move), and read the same route context and HTTP attributes.
// Test support only.
interface HttpAttributes {
  host: string;
  path: string;
  /** Lower-case header names, as Envoy sends them. */
  headers: Record<string, string>;
}

export interface ReferenceCheckAttributes {
  /** The bytes were not a CheckRequest: the Check is denied (a throwing deserializer would fail the RPC instead). */
  malformed: boolean;
  contextExtensions: Readonly<Record<string, string>>;
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

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

class MalformedError extends Error {}

/** A cursor over one message's bytes [pos, end). */
class Cursor {
  field = 0;
  wireType = 0;
  /** For length-delimited fields: where the payload starts and ends. */
  start = 0;
  end = 0;

  constructor(
    private readonly buf: Buffer,
    public pos: number,
    private readonly limit: number,
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

  string(): string {
    return this.buf.toString('utf8', this.start, this.end);
  }

  child(): Cursor {
    return new Cursor(this.buf, this.start, this.end);
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

export function referenceDecodeCheckAttributes(bytes: Uint8Array): ReferenceCheckAttributes {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const contextExtensions: Record<string, string> = {};
  let request: { start: number; end: number } | undefined;
  try {
    const outer = new Cursor(buf, 0, buf.length);
    while (outer.next()) {
      if (outer.field !== CHECK_REQUEST_ATTRIBUTES || outer.wireType !== LENGTH_DELIMITED) continue;
      const attributes = outer.child();
      while (attributes.next()) {
        if (attributes.wireType !== LENGTH_DELIMITED) continue;
        if (attributes.field === ATTRIBUTES_CONTEXT_EXTENSIONS) readMapEntry(attributes.child(), contextExtensions);
        else if (attributes.field === ATTRIBUTES_REQUEST) request = { start: attributes.start, end: attributes.end };
      }
    }
  } catch {
    return { malformed: true, contextExtensions: {}, http: () => undefined };
  }
  let http: HttpAttributes | undefined | null = null;
  return {
    malformed: false,
    contextExtensions,
    http() {
      if (http === null) {
        try {
          http = request ? readHttp(new Cursor(buf, request.start, request.end)) : undefined;
        } catch {
          http = undefined;
        }
      }
      return http;
    },
  };
}

function readHttp(request: Cursor): HttpAttributes | undefined {
  let http: Cursor | undefined;
  while (request.next()) if (request.field === REQUEST_HTTP && request.wireType === LENGTH_DELIMITED) http = request.child();
  if (!http) return undefined;
  const result: HttpAttributes = { host: '', path: '', headers: {} };
  while (http.next()) {
    if (http.wireType !== LENGTH_DELIMITED) continue;
    if (http.field === HTTP_HEADERS) readMapEntry(http.child(), result.headers);
    else if (http.field === HTTP_PATH) result.path = http.string();
    else if (http.field === HTTP_HOST) result.host = http.string();
  }
  return result;
}

/** A map<string, string> entry: key = 1, value = 2. */
function readMapEntry(entry: Cursor, into: Record<string, string>): void {
  let key = '';
  let value = '';
  while (entry.next()) {
    if (entry.wireType !== LENGTH_DELIMITED) continue;
    if (entry.field === 1) key = entry.string();
    else if (entry.field === 2) value = entry.string();
  }
  into[key] = value;
}

// What a Check needs from a CheckRequest, read straight from the wire.
//
// A full decode of CheckRequest builds the whole AttributeContext (peers,
// every header, metadata) on each call; an outbound Check needs only the
// per-route context extensions. This reader walks the protobuf once, keeps the
// context extensions, and decodes the HTTP request attributes only when asked
// (inbound and edge Checks). Field numbers are those of
// envoy/service/auth/v3/{external_auth,attribute_context}.proto.
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';

export interface HttpAttributes {
  host: string;
  path: string;
  /** Lower-case header names, as Envoy sends them. */
  headers: Record<string, string>;
}

export interface CheckAttributes {
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
const MAP_KEY = 1;
const MAP_VALUE = 2;

export function decodeCheckAttributes(bytes: Uint8Array): CheckAttributes {
  const contextExtensions: Record<string, string> = {};
  let request: Uint8Array | undefined;
  try {
    const outer = new BinaryReader(bytes);
    while (outer.pos < outer.len) {
      const [field, wireType] = outer.tag();
      if (field !== CHECK_REQUEST_ATTRIBUTES || wireType !== WireType.LengthDelimited) {
        outer.skip(wireType, field);
        continue;
      }
      const attributes = new BinaryReader(outer.bytes());
      while (attributes.pos < attributes.len) {
        const [attrField, attrWire] = attributes.tag();
        if (attrField === ATTRIBUTES_CONTEXT_EXTENSIONS && attrWire === WireType.LengthDelimited) {
          const [key, value] = readMapEntry(attributes.bytes());
          contextExtensions[key] = value;
        } else if (attrField === ATTRIBUTES_REQUEST && attrWire === WireType.LengthDelimited) {
          request = attributes.bytes();
        } else {
          attributes.skip(attrWire, attrField);
        }
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
          http = request ? readHttp(request) : undefined;
        } catch {
          http = undefined;
        }
      }
      return http;
    },
  };
}

function readHttp(requestBytes: Uint8Array): HttpAttributes | undefined {
  const request = new BinaryReader(requestBytes);
  let httpBytes: Uint8Array | undefined;
  while (request.pos < request.len) {
    const [field, wireType] = request.tag();
    if (field === REQUEST_HTTP && wireType === WireType.LengthDelimited) httpBytes = request.bytes();
    else request.skip(wireType, field);
  }
  if (!httpBytes) return undefined;
  const result: HttpAttributes = { host: '', path: '', headers: {} };
  const http = new BinaryReader(httpBytes);
  while (http.pos < http.len) {
    const [field, wireType] = http.tag();
    if (wireType !== WireType.LengthDelimited) {
      http.skip(wireType, field);
    } else if (field === HTTP_HEADERS) {
      const [key, value] = readMapEntry(http.bytes());
      result.headers[key] = value;
    } else if (field === HTTP_PATH) {
      result.path = http.string();
    } else if (field === HTTP_HOST) {
      result.host = http.string();
    } else {
      http.skip(wireType, field);
    }
  }
  return result;
}

function readMapEntry(entryBytes: Uint8Array): [string, string] {
  const entry = new BinaryReader(entryBytes);
  let key = '';
  let value = '';
  while (entry.pos < entry.len) {
    const [field, wireType] = entry.tag();
    if (field === MAP_KEY && wireType === WireType.LengthDelimited) key = entry.string();
    else if (field === MAP_VALUE && wireType === WireType.LengthDelimited) value = entry.string();
    else entry.skip(wireType, field);
  }
  return [key, value];
}

// Small builders shared by the translation functions.
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { packAny, typeUrlOf } from '@trellis/envoy-types';
import { Address } from '@trellis/envoy-types/envoy/config/core/v3/address';
import { ApiVersion, ConfigSource } from '@trellis/envoy-types/envoy/config/core/v3/config_source';
import { AccessLog } from '@trellis/envoy-types/envoy/config/accesslog/v3/accesslog';
import { StdoutAccessLog } from '@trellis/envoy-types/envoy/extensions/access_loggers/stream/v3/stream';
import { HttpProtocolOptions } from '@trellis/envoy-types/envoy/extensions/upstreams/http/v3/http_protocol_options';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import type { Duration } from '@trellis/envoy-types/google/protobuf/duration';
import { Struct } from '@trellis/envoy-types/google/protobuf/struct';

export function duration(ms: number): Duration {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

export function socketAddress(address: string, port: number): Address {
  return Address.fromPartial({
    address: { $case: 'socketAddress', value: { address, portSpecifier: { $case: 'portValue', value: port } } },
  });
}

/** Resources on the ADS stream itself (grpc-js-xds accepts `ads` or `self` only). */
export function adsConfigSource(): ConfigSource {
  return ConfigSource.fromPartial({ resourceApiVersion: ApiVersion.V3, configSourceSpecifier: { $case: 'ads', value: {} } });
}

/** What each access log line holds besides the tags (Envoy command operators). */
export const ACCESS_LOG_FIELDS: Readonly<Record<string, string>> = {
  start_time: '%START_TIME%',
  method: '%REQ(:METHOD)%',
  authority: '%REQ(:AUTHORITY)%',
  path: '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%',
  protocol: '%PROTOCOL%',
  response_code: '%RESPONSE_CODE%',
  grpc_status: '%GRPC_STATUS%',
  response_flags: '%RESPONSE_FLAGS%',
  bytes_received: '%BYTES_RECEIVED%',
  bytes_sent: '%BYTES_SENT%',
  duration_ms: '%DURATION%',
  upstream_cluster: '%UPSTREAM_CLUSTER%',
  upstream_host: '%UPSTREAM_HOST%',
  downstream_remote_address: '%DOWNSTREAM_REMOTE_ADDRESS%',
  request_id: '%REQ(X-REQUEST-ID)%',
  traceparent: '%REQ(TRACEPARENT)%',
};

/** The fields' Struct entries, encoded once: each listener only adds its tags in front. */
let accessLogFieldEntries: Uint8Array | undefined;
/** One writer for every access log (a new one grows from nothing each time); `finish()` copies the bytes out and resets it. */
const accessLogWriter = new BinaryWriter();

/**
 * One JSON line per request on stdout, tagged with where in the mesh it was logged.
 * Byte for byte the encoding of a StdoutAccessLog whose json_format is the tags
 * followed by ACCESS_LOG_FIELDS (common.test.ts): a Struct is a sequence of map
 * entries, so the fields' entries are encoded once and appended after the tags'
 * (encoding the 16-field Struct was most of the cost of a listener).
 */
export function stdoutJsonAccessLog(tags: Record<string, string>): AccessLog {
  for (const tag of Object.keys(tags)) if (tag in ACCESS_LOG_FIELDS) throw new Error(`access log tag "${tag}" is a field name`);
  accessLogFieldEntries ??= Struct.encode(Struct.wrap(ACCESS_LOG_FIELDS)).finish();
  // StdoutAccessLog.log_format (1) → SubstitutionFormatString.json_format (2) → Struct entries.
  let bytes: Uint8Array;
  try {
    accessLogWriter.uint32(10).fork().uint32(18).fork();
    bytes = Struct.encode(Struct.wrap(tags), accessLogWriter).raw(accessLogFieldEntries).join().join().finish();
  } catch (err) {
    accessLogWriter.finish(); // drop what a failed encoding left in the shared writer
    throw err;
  }
  return AccessLog.fromPartial({
    name: STDOUT_ACCESS_LOGGER,
    configType: {
      $case: 'typedConfig',
      value: { typeUrl: typeUrlOf(StdoutAccessLog), value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) },
    },
  });
}

// Field tags of the access log written in place below (AccessLog, Any, StdoutAccessLog,
// SubstitutionFormatString, Struct, Struct.FieldsEntry, Value).
const ACCESS_LOG_NAME = (1 << 3) | 2;
const ACCESS_LOG_TYPED_CONFIG = (4 << 3) | 2;
const ANY_TYPE_URL = (1 << 3) | 2;
const ANY_VALUE = (2 << 3) | 2;
const STDOUT_LOG_FORMAT = (1 << 3) | 2;
const FORMAT_JSON = (2 << 3) | 2;
const STRUCT_FIELDS = (1 << 3) | 2;
const ENTRY_KEY = (1 << 3) | 2;
const ENTRY_VALUE = (2 << 3) | 2;
const VALUE_STRING = (3 << 3) | 2;
const STDOUT_ACCESS_LOGGER = 'envoy.access_loggers.stdout';
let stdoutTypeUrl: Uint8Array | undefined;

/**
 * A constant's UTF-8 bytes, made once for `w.uint32(tag).bytes(…)`: the same bytes `.string(…)` writes, which for a
 * text over 32 characters allocates a view and a result on every write (type URLs and filter names, per sidecar).
 */
export function utf8(text: string): Uint8Array {
  return Buffer.from(text, 'utf8');
}

/**
 * Writes the body of `AccessLog.encode(stdoutJsonAccessLog(tags))` into `w`, byte for byte (common.test.ts):
 * what a connection manager written in place (sidecar-hcm.ts) holds, without the message and its copies.
 */
export function writeStdoutJsonAccessLog(tags: Record<string, string>, w: BinaryWriter): BinaryWriter {
  // One list of the keys (no [key, value] pair per tag: two connection managers per sidecar write these).
  const keys = Object.keys(tags);
  for (const tag of keys) if (tag in ACCESS_LOG_FIELDS) throw new Error(`access log tag "${tag}" is a field name`);
  accessLogFieldEntries ??= Struct.encode(Struct.wrap(ACCESS_LOG_FIELDS)).finish();
  stdoutTypeUrl ??= utf8(typeUrlOf(StdoutAccessLog));
  w.uint32(ACCESS_LOG_NAME).string(STDOUT_ACCESS_LOGGER);
  w.uint32(ACCESS_LOG_TYPED_CONFIG).fork().uint32(ANY_TYPE_URL).bytes(stdoutTypeUrl);
  w.uint32(ANY_VALUE).fork().uint32(STDOUT_LOG_FORMAT).fork().uint32(FORMAT_JSON).fork();
  // Struct.wrap and Struct.encode's order: the tags' own key order.
  for (const key of keys) {
    w.uint32(STRUCT_FIELDS).fork();
    if (key !== '') w.uint32(ENTRY_KEY).string(key);
    w.uint32(ENTRY_VALUE).fork().uint32(VALUE_STRING).string(tags[key]!).join().join();
  }
  return w.raw(accessLogFieldEntries).join().join().join().join();
}

/** Upstream protocol options: HTTP/2 to grpc and http2 services, HTTP/1.1 otherwise. */
export function http2ProtocolOptions(): Record<string, Any> {
  return {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': packAny(
      HttpProtocolOptions,
      HttpProtocolOptions.fromPartial({
        upstreamProtocolOptions: { $case: 'explicitHttpConfig', value: { protocolConfig: { $case: 'http2ProtocolOptions', value: {} } } },
      }),
    ),
  };
}

// The HTTP connection manager of a sidecar's listeners (inbound and outbound), and its
// encoding. Every sidecar identity has two of them, each naming its service, so a
// connection storm encodes 2 × identities of them: they are written straight into a
// writer around bytes encoded once (the RDS config source, the fixed settings, shared
// filters), instead of building the whole 60-field message object to encode it. The
// result is byte for byte `packAny(HttpConnectionManager, sidecarHttpConnectionManager(…))`,
// the plain form kept as the reference (sidecar-hcm.test.ts holds the two to it on
// generated input).
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { typeUrlOf } from '@trellis/envoy-types';
import { ConfigSource } from '@trellis/envoy-types/envoy/config/core/v3/config_source';
import { Http1ProtocolOptions } from '@trellis/envoy-types/envoy/config/core/v3/protocol';
import {
  HttpConnectionManager,
  HttpConnectionManager_CodecType,
  HttpConnectionManager_PathWithEscapedSlashesAction,
  HttpFilter,
} from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import type { TracingSettings } from '../model';
import { adsConfigSource, stdoutJsonAccessLog, writeStdoutJsonAccessLog } from './common';
import { sidecarTracing, writeSidecarTracing } from './tracing';

/** What differs between sidecar connection managers. */
export interface SidecarHcmParts {
  statPrefix: string;
  routeName: string;
  httpFilters: readonly HttpFilter[];
  /** The access log's tags (stdoutJsonAccessLog). */
  logTags: Record<string, string>;
  /** The service the tracer names, and the mesh's tracing settings (sidecarTracing). */
  service: string;
  tracing: TracingSettings | undefined;
  /** Also accept absolute-form requests, so an app can use the listener as its HTTP_PROXY. */
  explicitProxy: boolean;
}

/** The message itself, the plain way (the reference the encoding below is held to). */
export function sidecarHttpConnectionManager(parts: SidecarHcmParts): HttpConnectionManager {
  return HttpConnectionManager.fromPartial({
    statPrefix: parts.statPrefix,
    codecType: HttpConnectionManager_CodecType.AUTO,
    routeSpecifier: { $case: 'rds', value: { configSource: adsConfigSource(), routeConfigName: parts.routeName } },
    httpFilters: [...parts.httpFilters],
    accessLog: [stdoutJsonAccessLog(parts.logTags)],
    tracing: sidecarTracing(parts.service, parts.tracing),
    ...FIXED,
    ...(parts.explicitProxy ? { httpProtocolOptions: { allowAbsoluteUrl: true } } : {}),
  });
}

/** Settings every sidecar connection manager has; encoded after every field that varies (the generated encoder's order). */
const FIXED = {
  // Echo x-request-id to the client on every answer, a denial by ext_authz or RBAC included.
  alwaysSetRequestIdInResponse: true,
  // Filters (ext_authz, RBAC) and routes see the path the app will: RFC 3986 normalised,
  // slashes merged, escaped slashes refused. authz refuses any other form at the edge.
  normalizePath: true,
  mergeSlashes: true,
  pathWithEscapedSlashesAction: HttpConnectionManager_PathWithEscapedSlashesAction.REJECT_REQUEST,
} as const;

// Field tags (field number << 3 | wire type) of the fields written below.
const STAT_PREFIX = (2 << 3) | 2;
const RDS = (3 << 3) | 2;
const RDS_CONFIG_SOURCE = (1 << 3) | 2;
const RDS_ROUTE_CONFIG_NAME = (2 << 3) | 2;
const HTTP_FILTERS = (5 << 3) | 2;
const TRACING = (7 << 3) | 2;
const HTTP_PROTOCOL_OPTIONS = (8 << 3) | 2;
const ACCESS_LOG = (13 << 3) | 2;

let constants: { configSource: Uint8Array; explicitProxy: Uint8Array; fixed: Uint8Array; typeUrl: string } | undefined;
function encodedConstants(): NonNullable<typeof constants> {
  return (constants ??= {
    configSource: ConfigSource.encode(adsConfigSource()).finish(),
    explicitProxy: Http1ProtocolOptions.encode(Http1ProtocolOptions.fromPartial({ allowAbsoluteUrl: true })).finish(),
    fixed: HttpConnectionManager.encode(HttpConnectionManager.fromPartial(FIXED)).finish(),
    typeUrl: typeUrlOf(HttpConnectionManager),
  });
}

/** One writer for every encoding (they never overlap); `finish()` copies the bytes out. */
const writer = new BinaryWriter();

/** `packAny(HttpConnectionManager, sidecarHttpConnectionManager(parts))`, byte for byte. */
export function encodeSidecarHttpConnectionManager(parts: SidecarHcmParts): Any {
  let bytes: Uint8Array;
  try {
    bytes = writeSidecarHttpConnectionManager(parts, writer).finish();
  } catch (err) {
    writer.finish(); // drop what a failed encoding left in the shared writer
    throw err;
  }
  return {
    $type: 'google.protobuf.Any',
    typeUrl: encodedConstants().typeUrl,
    value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
  };
}

/** The type URL of an encoded connection manager (what an `Any` holding one names). */
export function httpConnectionManagerTypeUrl(): string {
  return encodedConstants().typeUrl;
}

/**
 * Writes the connection manager's fields (the message's body, without a tag or length) into `w`:
 * what a listener holding one writes in place, inside its own filter's `Any`, instead of copying it in.
 */
export function writeSidecarHttpConnectionManager(parts: SidecarHcmParts, w: BinaryWriter): BinaryWriter {
  const c = encodedConstants();
  // The generated encoder's field order; proto3 leaves empty strings out.
  if (parts.statPrefix !== '') w.uint32(STAT_PREFIX).string(parts.statPrefix);
  w.uint32(RDS).fork().uint32(RDS_CONFIG_SOURCE).bytes(c.configSource);
  if (parts.routeName !== '') w.uint32(RDS_ROUTE_CONFIG_NAME).string(parts.routeName);
  w.join();
  for (const filter of parts.httpFilters) HttpFilter.encode(filter, w.uint32(HTTP_FILTERS).fork()).join();
  writeSidecarTracing(parts.service, parts.tracing, w.uint32(TRACING).fork()).join();
  if (parts.explicitProxy) w.uint32(HTTP_PROTOCOL_OPTIONS).bytes(c.explicitProxy);
  writeStdoutJsonAccessLog(parts.logTags, w.uint32(ACCESS_LOG).fork()).join();
  return w.raw(c.fixed);
}

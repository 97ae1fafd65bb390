// The listeners of a sidecar (inbound, outbound HTTP, outbound TCP), and their encoding.
// A connection storm encodes two or three listeners per identity, each naming its service,
// and a listener is a small envelope (name, address, filter chains) around its connection
// manager: the envelope is written straight into a writer, with the connection manager
// written in place inside its filter's `Any` (sidecar-hcm.ts), instead of building the
// 30-field Listener object graph to encode it and copying the connection manager's bytes
// into it. The result is byte for byte `packAny(Listener, sidecarListener(…))`, the plain
// form kept as the reference (sidecar-listener.test.ts holds the two to it on generated
// input and on every listener of generated meshes).
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { packAny, typeUrlOf } from '@trellis/envoy-types';
import { Address } from '@trellis/envoy-types/envoy/config/core/v3/address';
import { TransportSocket, type TrafficDirection } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { Filter, FilterChainMatch, ListenerFilter } from '@trellis/envoy-types/envoy/config/listener/v3/listener_components';
import { HttpConnectionManager } from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import { socketAddress, utf8 } from './common';
import { FILTER } from './names';
import {
  httpConnectionManagerTypeUrl,
  sidecarHttpConnectionManager,
  writeSidecarHttpConnectionManager,
  type SidecarHcmParts,
} from './sidecar-hcm';

/** A network filter of a sidecar chain: its HTTP connection manager, or any other filter as a message. */
export type SidecarNetworkFilter = { hcm: SidecarHcmParts } | { filter: Filter };

export interface SidecarFilterChainParts {
  name: string;
  /** `filter_chain_match.transport_protocol` ("tls", "raw_buffer"), when the listener tells the two apart. */
  transportProtocol?: string;
  transportSocket?: TransportSocket;
  filters: readonly SidecarNetworkFilter[];
}

/** What makes up a sidecar listener. */
export interface SidecarListenerParts {
  name: string;
  host: string;
  port: number;
  trafficDirection: TrafficDirection;
  listenerFilters: readonly ListenerFilter[];
  filterChains: readonly SidecarFilterChainParts[];
}

/** The message itself, the plain way (the reference the encoding below is held to). */
export function sidecarListener(parts: SidecarListenerParts): Listener {
  return Listener.fromPartial({
    name: parts.name,
    address: socketAddress(parts.host, parts.port),
    trafficDirection: parts.trafficDirection,
    listenerFilters: [...parts.listenerFilters],
    filterChains: parts.filterChains.map((chain) => ({
      name: chain.name,
      ...(chain.transportProtocol !== undefined ? { filterChainMatch: { transportProtocol: chain.transportProtocol } } : {}),
      ...(chain.transportSocket ? { transportSocket: chain.transportSocket } : {}),
      filters: chain.filters.map((f) =>
        'hcm' in f
          ? {
              name: FILTER.httpConnectionManager,
              configType: { $case: 'typedConfig' as const, value: packAny(HttpConnectionManager, sidecarHttpConnectionManager(f.hcm)) },
            }
          : f.filter,
      ),
    })),
  });
}

// Field tags (field number << 3 | wire type) of the fields written below.
const LISTENER_NAME = (1 << 3) | 2;
const LISTENER_ADDRESS = (2 << 3) | 2;
const LISTENER_FILTER_CHAINS = (3 << 3) | 2;
const LISTENER_LISTENER_FILTERS = (9 << 3) | 2;
const LISTENER_TRAFFIC_DIRECTION = (16 << 3) | 0;
const CHAIN_MATCH = (1 << 3) | 2;
const CHAIN_FILTERS = (3 << 3) | 2;
const CHAIN_TRANSPORT_SOCKET = (6 << 3) | 2;
const CHAIN_NAME = (7 << 3) | 2;
const FILTER_NAME = (1 << 3) | 2;
const FILTER_TYPED_CONFIG = (4 << 3) | 2;
const ANY_TYPE_URL = (1 << 3) | 2;
const ANY_VALUE = (2 << 3) | 2;

/** Encoded addresses and filter chain matches: a few distinct ones serve every listener. */
const addresses = new Map<string, Uint8Array>();
const chainMatches = new Map<string, Uint8Array>();
let listenerTypeUrl: string | undefined;
/** The connection manager filter's name and its Any's type URL, as bytes (common.ts utf8). */
let hcmFilter: { name: Uint8Array; typeUrl: Uint8Array } | undefined;

function encodedAddress(host: string, port: number): Uint8Array {
  const key = `${host}|${port}`;
  let bytes = addresses.get(key);
  if (!bytes) addresses.set(key, (bytes = Address.encode(socketAddress(host, port)).finish()));
  return bytes;
}

function encodedChainMatch(transportProtocol: string): Uint8Array {
  let bytes = chainMatches.get(transportProtocol);
  if (!bytes)
    chainMatches.set(transportProtocol, (bytes = FilterChainMatch.encode(FilterChainMatch.fromPartial({ transportProtocol })).finish()));
  return bytes;
}

/** One writer for every encoding (they never overlap); `finish()` copies the bytes out. */
const writer = new BinaryWriter();

/** `packAny(Listener, sidecarListener(parts))`, byte for byte. */
export function encodeSidecarListener(parts: SidecarListenerParts): Any {
  let bytes: Uint8Array;
  try {
    bytes = writeListener(parts, writer).finish();
  } catch (err) {
    writer.finish(); // drop what a failed encoding left in the shared writer
    throw err;
  }
  listenerTypeUrl ??= typeUrlOf(Listener);
  return { $type: 'google.protobuf.Any', typeUrl: listenerTypeUrl, value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

// The generated encoders' field order; proto3 leaves empty strings and zero enums out.
function writeListener(parts: SidecarListenerParts, w: BinaryWriter): BinaryWriter {
  if (parts.name !== '') w.uint32(LISTENER_NAME).string(parts.name);
  w.uint32(LISTENER_ADDRESS).bytes(encodedAddress(parts.host, parts.port));
  for (const chain of parts.filterChains) {
    w.uint32(LISTENER_FILTER_CHAINS).fork();
    if (chain.transportProtocol !== undefined) w.uint32(CHAIN_MATCH).bytes(encodedChainMatch(chain.transportProtocol));
    for (const f of chain.filters) {
      w.uint32(CHAIN_FILTERS).fork();
      if ('hcm' in f) {
        hcmFilter ??= { name: utf8(FILTER.httpConnectionManager), typeUrl: utf8(httpConnectionManagerTypeUrl()) };
        w.uint32(FILTER_NAME).bytes(hcmFilter.name);
        w.uint32(FILTER_TYPED_CONFIG).fork().uint32(ANY_TYPE_URL).bytes(hcmFilter.typeUrl);
        writeSidecarHttpConnectionManager(f.hcm, w.uint32(ANY_VALUE).fork()).join();
        w.join();
      } else {
        Filter.encode(f.filter, w);
      }
      w.join();
    }
    if (chain.transportSocket) TransportSocket.encode(chain.transportSocket, w.uint32(CHAIN_TRANSPORT_SOCKET).fork()).join();
    if (chain.name !== '') w.uint32(CHAIN_NAME).string(chain.name);
    w.join();
  }
  for (const filter of parts.listenerFilters) ListenerFilter.encode(filter, w.uint32(LISTENER_LISTENER_FILTERS).fork()).join();
  if (parts.trafficDirection !== 0) w.uint32(LISTENER_TRAFFIC_DIRECTION).int32(parts.trafficDirection);
  return w;
}

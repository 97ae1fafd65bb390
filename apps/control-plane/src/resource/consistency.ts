// The check a snapshot passes before it is published (cf. go-control-plane's
// Snapshot.Consistent): every route configuration a listener names over RDS and
// every endpoint set an EDS cluster names is in the same set, and no two
// listeners bind the same address. It reads the encoded bytes, not what the
// translation meant to emit, so it also catches a builder that names the wrong
// resource. References are remembered per resource object: shared resources are
// decoded once, not once per identity.
import { TypeUrl } from '@trellis/envoy-types';
import { SocketAddress_Protocol } from '@trellis/envoy-types/envoy/config/core/v3/address';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import type { ResourceSet, XdsResource } from './xds-resource';

export interface References {
  /** Route configuration names fetched over RDS. */
  routes: string[];
  /** ClusterLoadAssignment names fetched over EDS. */
  endpoints: string[];
  /** `protocol address:port` a listener binds (API listeners bind nothing). */
  bind?: string;
}

const referencesOf = new WeakMap<XdsResource, References>();

/** What is wrong with a set, one sentence per problem; empty when it is consistent. */
export function snapshotInconsistencies(set: ResourceSet): string[] {
  const problems: string[] = [];
  const routes = set.get(TypeUrl.RouteConfiguration) ?? new Map();
  const endpoints = set.get(TypeUrl.ClusterLoadAssignment) ?? new Map();
  const bound = new Map<string, string>();
  for (const listener of set.get(TypeUrl.Listener)?.values() ?? []) {
    const refs = references(listener);
    for (const name of refs.routes) {
      if (!routes.has(name)) problems.push(`listener "${listener.name}" uses route configuration "${name}", which is not in the snapshot`);
    }
    if (refs.bind !== undefined) {
      const other = bound.get(refs.bind);
      if (other !== undefined) problems.push(`listeners "${other}" and "${listener.name}" both bind ${refs.bind}`);
      else bound.set(refs.bind, listener.name);
    }
  }
  for (const cluster of set.get(TypeUrl.Cluster)?.values() ?? []) {
    for (const name of references(cluster).endpoints) {
      if (!endpoints.has(name)) problems.push(`cluster "${cluster.name}" uses endpoints "${name}", which are not in the snapshot`);
    }
  }
  return problems;
}

/** What a listener or cluster refers to and binds, read from its bytes (remembered per resource object). */
export function references(resource: XdsResource): References {
  let refs = referencesOf.get(resource);
  if (!refs) {
    refs = resource.typeUrl === TypeUrl.Listener ? listenerReferences(resource.any) : clusterReferences(resource.any);
    referencesOf.set(resource, refs);
  }
  return refs;
}

// The references are read from the wire format directly, field by field, skipping
// everything else: decoding a whole listener and its connection managers cost more
// than building it. The scan works on offsets into the one buffer (no reader or
// sub-array per nested message: a listener is checked once per identity in a
// connection storm). Field numbers are those of the v3 protos named beside them.
const HCM_TYPE_SUFFIX = '.HttpConnectionManager';
const EDS = 3; // Cluster.DiscoveryType.EDS

const enum Wire {
  Varint = 0,
  Bit64 = 1,
  LengthDelimited = 2,
  StartGroup = 3,
  EndGroup = 4,
  Bit32 = 5,
}

/** A position in an encoded message: `pos` moves as fields are read. */
class Scan {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  static of(bytes: Uint8Array): Scan {
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return new Scan(buf, 0, buf.length);
  }

  /** A varint's low 32 bits (as int32 and uint32 read them); the rest of a longer one is consumed. */
  varint(): number {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      if (this.pos >= this.end) throw new Error('premature end of a varint');
      const byte = this.buf[this.pos++]!;
      if (shift < 32) value |= (byte & 0x7f) << shift;
      if (byte < 0x80) return value;
      if (shift >= 63) throw new Error('invalid varint');
    }
  }

  /** The nested message (or bytes) of a length-delimited field, as a scan of its own; this one moves past it. */
  nested(): Scan {
    const length = this.varint();
    const start = this.pos;
    if (length > this.end - start) throw new Error('premature end of a length-delimited field');
    this.pos += length;
    return new Scan(this.buf, start, start + length);
  }

  string(): string {
    const field = this.nested();
    return this.buf.toString('utf8', field.pos, field.end);
  }

  skip(wireType: number, fieldNo: number): void {
    switch (wireType) {
      case Wire.Varint:
        this.varint();
        return;
      case Wire.Bit64:
        this.advance(8);
        return;
      case Wire.LengthDelimited:
        this.advance(this.varint());
        return;
      case Wire.Bit32:
        this.advance(4);
        return;
      case Wire.StartGroup:
        for (;;) {
          const tag = this.tag();
          if ((tag & 7) === Wire.EndGroup) {
            if (tag >>> 3 !== fieldNo) throw new Error('invalid end group tag');
            return;
          }
          this.skip(tag & 7, tag >>> 3);
        }
      default:
        throw new Error(`cannot skip wire type ${wireType}`);
    }
  }

  /** A field's tag: its number is `tag >>> 3`, its wire type `tag & 7` (a number, not a pair: one per field scanned). */
  tag(): number {
    const tag = this.varint() >>> 0;
    if (tag >>> 3 === 0) throw new Error('illegal tag: field no 0');
    return tag;
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw new Error('premature end of a field');
    this.pos += n;
  }
}

// Tags (field number << 3 | wire type) of the fields the check reads, all length-delimited but the varints
// named so. A field of the right number with another wire type is skipped, as a decoder would reject it.
const fieldTag = (field: number, wireType: Wire): number => (field << 3) | wireType;
const LISTENER_ADDRESS = fieldTag(2, Wire.LengthDelimited);
const LISTENER_FILTER_CHAINS = fieldTag(3, Wire.LengthDelimited);
const LISTENER_API_LISTENER = fieldTag(19, Wire.LengthDelimited);
const CHAIN_FILTERS = fieldTag(3, Wire.LengthDelimited);
const FILTER_TYPED_CONFIG = fieldTag(4, Wire.LengthDelimited);
const API_LISTENER = fieldTag(1, Wire.LengthDelimited);
const ANY_TYPE_URL = fieldTag(1, Wire.LengthDelimited);
const ANY_VALUE = fieldTag(2, Wire.LengthDelimited);
const HCM_RDS = fieldTag(3, Wire.LengthDelimited);
const RDS_ROUTE_CONFIG_NAME = fieldTag(2, Wire.LengthDelimited);
const ADDRESS_SOCKET = fieldTag(1, Wire.LengthDelimited);
const SOCKET_PROTOCOL = fieldTag(1, Wire.Varint);
const SOCKET_ADDRESS = fieldTag(2, Wire.LengthDelimited);
const SOCKET_PORT_VALUE = fieldTag(3, Wire.Varint);
const SOCKET_NAMED_PORT = fieldTag(4, Wire.LengthDelimited);
const CLUSTER_NAME = fieldTag(1, Wire.LengthDelimited);
const CLUSTER_TYPE = fieldTag(2, Wire.Varint);
const CLUSTER_EDS_CONFIG = fieldTag(3, Wire.LengthDelimited);
const EDS_SERVICE_NAME = fieldTag(2, Wire.LengthDelimited);

// Each reader below is a loop over one message's fields (no callback per message: a connection storm checks
// thousands of listeners, each read once); a field it does not read is skipped, a repeated one read again
// (the last value of a singular field wins, as in a decoder).

function listenerReferences(any: Any): References {
  const routes: string[] = [];
  let bind: string | undefined;
  const listener = Scan.of(any.value);
  while (listener.pos < listener.end) {
    const t = listener.tag();
    if (t === LISTENER_ADDRESS) bind = bindAddress(listener.nested());
    else if (t === LISTENER_FILTER_CHAINS) chainRoutes(listener.nested(), routes);
    else if (t === LISTENER_API_LISTENER) {
      // ApiListener.api_listener: an Any.
      const api = listener.nested();
      while (api.pos < api.end) {
        const u = api.tag();
        if (u === API_LISTENER) pushRoute(rdsRoute(api.nested()), routes);
        else api.skip(u & 7, u >>> 3);
      }
    } else listener.skip(t & 7, t >>> 3);
  }
  return { routes, endpoints: [], ...(bind !== undefined ? { bind } : {}) };
}

/** FilterChain.filters → Filter.typed_config: the route configurations its connection managers name. */
function chainRoutes(chain: Scan, routes: string[]): void {
  while (chain.pos < chain.end) {
    const t = chain.tag();
    if (t !== CHAIN_FILTERS) {
      chain.skip(t & 7, t >>> 3);
      continue;
    }
    const filter = chain.nested();
    while (filter.pos < filter.end) {
      const u = filter.tag();
      if (u === FILTER_TYPED_CONFIG) pushRoute(rdsRoute(filter.nested()), routes);
      else filter.skip(u & 7, u >>> 3);
    }
  }
}

function pushRoute(route: string | undefined, routes: string[]): void {
  if (route !== undefined) routes.push(route);
}

/** The route configuration an Any names over RDS when it holds an HttpConnectionManager (its `rds.route_config_name`). */
function rdsRoute(any: Scan): string | undefined {
  let typeUrl = '';
  let value: Scan | undefined;
  while (any.pos < any.end) {
    const t = any.tag();
    if (t === ANY_TYPE_URL) typeUrl = any.string();
    else if (t === ANY_VALUE) value = any.nested();
    else any.skip(t & 7, t >>> 3);
  }
  if (!typeUrl.endsWith(HCM_TYPE_SUFFIX) || !value) return undefined;
  let route: string | undefined;
  while (value.pos < value.end) {
    const t = value.tag();
    if (t !== HCM_RDS) {
      value.skip(t & 7, t >>> 3);
      continue;
    }
    route = '';
    const rds = value.nested();
    while (rds.pos < rds.end) {
      const u = rds.tag();
      if (u === RDS_ROUTE_CONFIG_NAME) route = rds.string();
      else rds.skip(u & 7, u >>> 3);
    }
  }
  return route;
}

/** `protocol address:port` of Address.socket_address (SocketAddress: protocol 1, address 2, port_value 3, named_port 4). */
function bindAddress(address: Scan): string | undefined {
  let socket: Scan | undefined;
  while (address.pos < address.end) {
    const t = address.tag();
    if (t === ADDRESS_SOCKET) socket = address.nested();
    else address.skip(t & 7, t >>> 3);
  }
  if (!socket) return undefined;
  let protocol = 0;
  let host = '';
  let port: number | string = '';
  while (socket.pos < socket.end) {
    const t = socket.tag();
    if (t === SOCKET_PROTOCOL) protocol = socket.varint() | 0;
    else if (t === SOCKET_ADDRESS) host = socket.string();
    else if (t === SOCKET_PORT_VALUE) port = socket.varint() >>> 0;
    else if (t === SOCKET_NAMED_PORT) port = socket.string();
    else socket.skip(t & 7, t >>> 3);
  }
  return `${protocol === SocketAddress_Protocol.UDP ? 'udp' : 'tcp'} ${host}:${port}`;
}

function clusterReferences(any: Any): References {
  let type: number | undefined;
  let name = '';
  let serviceName = '';
  const cluster = Scan.of(any.value);
  while (cluster.pos < cluster.end) {
    const t = cluster.tag();
    if (t === CLUSTER_NAME) name = cluster.string();
    else if (t === CLUSTER_TYPE) type = cluster.varint() | 0;
    else if (t === CLUSTER_EDS_CONFIG) {
      // Cluster.eds_cluster_config → EdsClusterConfig.service_name
      const eds = cluster.nested();
      while (eds.pos < eds.end) {
        const u = eds.tag();
        if (u === EDS_SERVICE_NAME) serviceName = eds.string();
        else eds.skip(u & 7, u >>> 3);
      }
    } else cluster.skip(t & 7, t >>> 3);
  }
  return { routes: [], endpoints: type === EDS ? [serviceName || name] : [] };
}

/**
 * The ClusterLoadAssignment an EDS cluster uses (`eds_cluster_config.service_name`,
 * else the cluster's own name); undefined for clusters of other discovery types.
 */
export function endpointsNameOf(cluster: XdsResource): string | undefined {
  return references(cluster).endpoints[0];
}

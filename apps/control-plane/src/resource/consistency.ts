// The check a snapshot passes before it is published (cf. go-control-plane's
// Snapshot.Consistent): every route configuration a listener names over RDS and
// every endpoint set an EDS cluster names is in the same set, and no two
// listeners bind the same address. It reads the encoded bytes, not what the
// translation meant to emit, so it also catches a builder that names the wrong
// resource. A cluster's references are remembered per resource object: a callee's
// clusters are shared by its callers and read once, not once per identity. A
// listener's are read again at each check: a sidecar's listeners name its own
// service, so each is checked once per translation of its one identity, and
// remembering them kept an entry per listener alive as long as its snapshot
// (~10,000 at 5,000 sidecars, promoted in the first full push).
import { TypeUrl } from '@trellis/envoy-types';
import { SocketAddress_Protocol } from '@trellis/envoy-types/envoy/config/core/v3/address';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import type { ResourceSet, XdsResource } from './xds-resource';

export interface References {
  /** Route configuration names fetched over RDS. */
  routes: readonly string[];
  /** ClusterLoadAssignment names fetched over EDS. */
  endpoints: readonly string[];
  /** `protocol address:port` a listener binds (API listeners bind nothing). */
  bind?: string;
}

const clusterReferencesOf = new WeakMap<XdsResource, References>();

/** What is wrong with a set, one sentence per problem; empty when it is consistent. */
export function snapshotInconsistencies(set: ResourceSet): string[] {
  const problems: string[] = [];
  const routes = set.get(TypeUrl.RouteConfiguration) ?? NOTHING;
  const endpoints = set.get(TypeUrl.ClusterLoadAssignment) ?? NOTHING;
  // Addresses bound so far: a sidecar has two or three listeners, so the map is made for a second bind only.
  let firstBind: string | undefined;
  let firstBound = '';
  let bound: Map<string, string> | undefined;
  for (const listener of set.get(TypeUrl.Listener)?.values() ?? NOTHING.values()) {
    const refs = references(listener);
    for (const name of refs.routes) {
      if (!routes.has(name)) problems.push(`listener "${listener.name}" uses route configuration "${name}", which is not in the snapshot`);
    }
    if (refs.bind === undefined) continue;
    if (firstBind === undefined) {
      firstBind = refs.bind;
      firstBound = listener.name;
      continue;
    }
    bound ??= new Map([[firstBind, firstBound]]);
    const other = bound.get(refs.bind);
    if (other !== undefined) problems.push(`listeners "${other}" and "${listener.name}" both bind ${refs.bind}`);
    else bound.set(refs.bind, listener.name);
  }
  for (const cluster of set.get(TypeUrl.Cluster)?.values() ?? NOTHING.values()) {
    for (const name of references(cluster).endpoints) {
      if (!endpoints.has(name)) problems.push(`cluster "${cluster.name}" uses endpoints "${name}", which are not in the snapshot`);
    }
  }
  return problems;
}

const NOTHING: ReadonlyMap<string, XdsResource> = new Map();

/** What a listener or cluster refers to and binds, read from its bytes (a cluster's remembered per resource object). */
export function references(resource: XdsResource): References {
  if (resource.typeUrl === TypeUrl.Listener) return listenerReferences(resource.any);
  let refs = clusterReferencesOf.get(resource);
  if (!refs) clusterReferencesOf.set(resource, (refs = clusterReferences(resource.any)));
  return refs;
}

// The references are read from the wire format directly, field by field, skipping
// everything else: decoding a whole listener and its connection managers cost more
// than building it. The scan is one cursor over the one buffer, narrowed to a nested
// message while it is read (no reader, sub-array or cursor per nested message: a
// listener is checked once per identity in a connection storm). Field numbers are
// those of the v3 protos named beside them.
const HCM_TYPE_SUFFIX = Buffer.from('.HttpConnectionManager', 'latin1');
const EDS = 3; // Cluster.DiscoveryType.EDS

const enum Wire {
  Varint = 0,
  Bit64 = 1,
  LengthDelimited = 2,
  StartGroup = 3,
  EndGroup = 4,
  Bit32 = 5,
}

/** A position in an encoded message (`pos` moves as fields are read) and the end of the message being read. */
class Scan {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;

  /** Starts reading `bytes` as one message. */
  reset(bytes: Uint8Array): this {
    this.buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.end = this.buf.length;
    return this;
  }

  /** Drops the buffer (a scan kept between checks holds no resource's bytes). */
  release(): void {
    this.buf = EMPTY;
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

  /**
   * Narrows the scan to the nested message (or bytes) of a length-delimited field: reads it up to `end`, then
   * `leave(outer)` with what this returned moves past it.
   */
  enter(): number {
    const length = this.varint();
    if (length > this.end - this.pos) throw new Error('premature end of a length-delimited field');
    const outer = this.end;
    this.end = this.pos + length;
    return outer;
  }

  /** Past the nested message entered last (whatever of it was not read), back in the message around it. */
  leave(outer: number): void {
    this.pos = this.end;
    this.end = outer;
  }

  string(): string {
    const outer = this.enter();
    const text = this.buf.toString('utf8', this.pos, this.end);
    this.leave(outer);
    return text;
  }

  /** Whether a length-delimited field's bytes end with `suffix` (a text field compared without decoding it); moves past it. */
  endsWith(suffix: Uint8Array): boolean {
    const outer = this.enter();
    const from = this.end - suffix.length;
    const ends = from >= this.pos && this.buf.compare(suffix, 0, suffix.length, from, this.end) === 0;
    this.leave(outer);
    return ends;
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

const EMPTY = Buffer.alloc(0);
/** The one scan: the readers below never run inside one another's scan. */
const scan = new Scan();

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
// (the last value of a singular field wins, as in a decoder). A nested message is read between enter() and
// leave(); a reader of one is handed the scan narrowed to it.

/** Shared by every reference without endpoints (never added to). */
const NO_NAMES: readonly string[] = [];

function listenerReferences(any: Any): References {
  const routes: string[] = [];
  let bind: string | undefined;
  const s = scan.reset(any.value);
  try {
    while (s.pos < s.end) {
      const t = s.tag();
      if (t === LISTENER_ADDRESS) {
        const outer = s.enter();
        bind = bindAddress(s);
        s.leave(outer);
      } else if (t === LISTENER_FILTER_CHAINS) {
        const outer = s.enter();
        chainRoutes(s, routes);
        s.leave(outer);
      } else if (t === LISTENER_API_LISTENER) {
        // ApiListener.api_listener: an Any.
        const api = s.enter();
        while (s.pos < s.end) {
          const u = s.tag();
          if (u === API_LISTENER) {
            const outer = s.enter();
            pushRoute(rdsRoute(s), routes);
            s.leave(outer);
          } else s.skip(u & 7, u >>> 3);
        }
        s.leave(api);
      } else s.skip(t & 7, t >>> 3);
    }
  } finally {
    s.release();
  }
  return bind !== undefined ? { routes, endpoints: NO_NAMES, bind } : { routes, endpoints: NO_NAMES };
}

/** FilterChain.filters → Filter.typed_config: the route configurations its connection managers name. */
function chainRoutes(s: Scan, routes: string[]): void {
  while (s.pos < s.end) {
    const t = s.tag();
    if (t !== CHAIN_FILTERS) {
      s.skip(t & 7, t >>> 3);
      continue;
    }
    const filter = s.enter();
    while (s.pos < s.end) {
      const u = s.tag();
      if (u === FILTER_TYPED_CONFIG) {
        const outer = s.enter();
        pushRoute(rdsRoute(s), routes);
        s.leave(outer);
      } else s.skip(u & 7, u >>> 3);
    }
    s.leave(filter);
  }
}

function pushRoute(route: string | undefined, routes: string[]): void {
  if (route !== undefined) routes.push(route);
}

/** The route configuration an Any names over RDS when it holds an HttpConnectionManager (its `rds.route_config_name`). */
function rdsRoute(s: Scan): string | undefined {
  let manager = false;
  // The value's bytes, read once the type URL is known (it may come after them).
  let valueStart = -1;
  let valueEnd = -1;
  while (s.pos < s.end) {
    const t = s.tag();
    if (t === ANY_TYPE_URL) manager = s.endsWith(HCM_TYPE_SUFFIX);
    else if (t === ANY_VALUE) {
      const outer = s.enter();
      valueStart = s.pos;
      valueEnd = s.end;
      s.leave(outer);
    } else s.skip(t & 7, t >>> 3);
  }
  if (!manager || valueStart < 0) return undefined;
  const any = s.end;
  s.pos = valueStart;
  s.end = valueEnd;
  let route: string | undefined;
  while (s.pos < s.end) {
    const t = s.tag();
    if (t !== HCM_RDS) {
      s.skip(t & 7, t >>> 3);
      continue;
    }
    route = '';
    const rds = s.enter();
    while (s.pos < s.end) {
      const u = s.tag();
      if (u === RDS_ROUTE_CONFIG_NAME) route = s.string();
      else s.skip(u & 7, u >>> 3);
    }
    s.leave(rds);
  }
  s.end = any;
  return route;
}

/** `protocol address:port` of Address.socket_address (SocketAddress: protocol 1, address 2, port_value 3, named_port 4). */
function bindAddress(s: Scan): string | undefined {
  let socketStart = -1;
  let socketEnd = -1;
  while (s.pos < s.end) {
    const t = s.tag();
    if (t === ADDRESS_SOCKET) {
      const outer = s.enter();
      socketStart = s.pos;
      socketEnd = s.end;
      s.leave(outer);
    } else s.skip(t & 7, t >>> 3);
  }
  if (socketStart < 0) return undefined;
  const address = s.end;
  s.pos = socketStart;
  s.end = socketEnd;
  let protocol = 0;
  let host = '';
  let port: number | string = '';
  while (s.pos < s.end) {
    const t = s.tag();
    if (t === SOCKET_PROTOCOL) protocol = s.varint() | 0;
    else if (t === SOCKET_ADDRESS) host = s.string();
    else if (t === SOCKET_PORT_VALUE) port = s.varint() >>> 0;
    else if (t === SOCKET_NAMED_PORT) port = s.string();
    else s.skip(t & 7, t >>> 3);
  }
  s.end = address;
  return `${protocol === SocketAddress_Protocol.UDP ? 'udp' : 'tcp'} ${host}:${port}`;
}

function clusterReferences(any: Any): References {
  let type: number | undefined;
  let name = '';
  let serviceName = '';
  const s = scan.reset(any.value);
  try {
    while (s.pos < s.end) {
      const t = s.tag();
      if (t === CLUSTER_NAME) name = s.string();
      else if (t === CLUSTER_TYPE) type = s.varint() | 0;
      else if (t === CLUSTER_EDS_CONFIG) {
        // Cluster.eds_cluster_config → EdsClusterConfig.service_name
        const eds = s.enter();
        while (s.pos < s.end) {
          const u = s.tag();
          if (u === EDS_SERVICE_NAME) serviceName = s.string();
          else s.skip(u & 7, u >>> 3);
        }
        s.leave(eds);
      } else s.skip(t & 7, t >>> 3);
    }
  } finally {
    s.release();
  }
  return { routes: NO_NAMES, endpoints: type === EDS ? [serviceName || name] : NO_NAMES };
}

/**
 * The ClusterLoadAssignment an EDS cluster uses (`eds_cluster_config.service_name`,
 * else the cluster's own name); undefined for clusters of other discovery types.
 */
export function endpointsNameOf(cluster: XdsResource): string | undefined {
  return references(cluster).endpoints[0];
}

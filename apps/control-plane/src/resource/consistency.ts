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

/** Calls `visit` with each field's number and the scan at its value; `visit` consumes the value or returns false to skip it. */
function eachField(scan: Scan, visit: (field: number, wireType: number, scan: Scan) => boolean): void {
  while (scan.pos < scan.end) {
    const tag = scan.tag();
    if (!visit(tag >>> 3, tag & 7, scan)) scan.skip(tag & 7, tag >>> 3);
  }
}

function listenerReferences(any: Any): References {
  const routes: string[] = [];
  let bind: string | undefined;
  eachField(Scan.of(any.value), (field, wireType, listener) => {
    if (wireType !== Wire.LengthDelimited) return false;
    if (field === 2)
      bind = bindAddress(listener.nested()); // Listener.address
    else if (field === 3)
      // Listener.filter_chains → FilterChain.filters → Filter.typed_config
      eachField(listener.nested(), (f, w, chain) => {
        if (f !== 3 || w !== Wire.LengthDelimited) return false;
        eachField(chain.nested(), (g, x, filter) => {
          if (g !== 4 || x !== Wire.LengthDelimited) return false;
          const route = rdsRoute(filter.nested());
          if (route !== undefined) routes.push(route);
          return true;
        });
        return true;
      });
    else if (field === 19)
      // Listener.api_listener → ApiListener.api_listener
      eachField(listener.nested(), (f, w, api) => {
        if (f !== 1 || w !== Wire.LengthDelimited) return false;
        const route = rdsRoute(api.nested());
        if (route !== undefined) routes.push(route);
        return true;
      });
    else return false;
    return true;
  });
  return { routes, endpoints: [], ...(bind !== undefined ? { bind } : {}) };
}

/** The route configuration an Any names over RDS when it holds an HttpConnectionManager (its `rds.route_config_name`). */
function rdsRoute(any: Scan): string | undefined {
  let typeUrl = '';
  let value: Scan | undefined;
  eachField(any, (field, wireType, scan) => {
    if (wireType !== Wire.LengthDelimited) return false;
    if (field === 1) typeUrl = scan.string();
    else if (field === 2) value = scan.nested();
    else return false;
    return true;
  });
  if (!typeUrl.endsWith(HCM_TYPE_SUFFIX) || !value) return undefined;
  let route: string | undefined;
  eachField(value, (field, wireType, hcm) => {
    if (field !== 3 || wireType !== Wire.LengthDelimited) return false; // HttpConnectionManager.rds
    route = '';
    eachField(hcm.nested(), (f, w, rds) => {
      if (f !== 2 || w !== Wire.LengthDelimited) return false; // Rds.route_config_name
      route = rds.string();
      return true;
    });
    return true;
  });
  return route;
}

/** `protocol address:port` of Address.socket_address (SocketAddress: protocol 1, address 2, port_value 3, named_port 4). */
function bindAddress(address: Scan): string | undefined {
  let socket: Scan | undefined;
  eachField(address, (field, wireType, scan) => {
    if (field !== 1 || wireType !== Wire.LengthDelimited) return false;
    socket = scan.nested();
    return true;
  });
  if (!socket) return undefined;
  let protocol = 0;
  let host = '';
  let port: number | string = '';
  eachField(socket, (field, wireType, scan) => {
    if (field === 1 && wireType === Wire.Varint) protocol = scan.varint() | 0;
    else if (field === 2 && wireType === Wire.LengthDelimited) host = scan.string();
    else if (field === 3 && wireType === Wire.Varint) port = scan.varint() >>> 0;
    else if (field === 4 && wireType === Wire.LengthDelimited) port = scan.string();
    else return false;
    return true;
  });
  return `${protocol === SocketAddress_Protocol.UDP ? 'udp' : 'tcp'} ${host}:${port}`;
}

function clusterReferences(any: Any): References {
  let type: number | undefined;
  let name = '';
  let serviceName = '';
  eachField(Scan.of(any.value), (field, wireType, cluster) => {
    if (field === 1 && wireType === Wire.LengthDelimited)
      name = cluster.string(); // Cluster.name
    else if (field === 2 && wireType === Wire.Varint)
      type = cluster.varint() | 0; // Cluster.type
    else if (field === 3 && wireType === Wire.LengthDelimited)
      // Cluster.eds_cluster_config → EdsClusterConfig.service_name
      eachField(cluster.nested(), (f, w, eds) => {
        if (f !== 2 || w !== Wire.LengthDelimited) return false;
        serviceName = eds.string();
        return true;
      });
    else return false;
    return true;
  });
  return { routes: [], endpoints: type === EDS ? [serviceName || name] : [] };
}

/**
 * The ClusterLoadAssignment an EDS cluster uses (`eds_cluster_config.service_name`,
 * else the cluster's own name); undefined for clusters of other discovery types.
 */
export function endpointsNameOf(cluster: XdsResource): string | undefined {
  return references(cluster).endpoints[0];
}

// The check a snapshot passes before it is published (cf. go-control-plane's
// Snapshot.Consistent): every route configuration a listener names over RDS and
// every endpoint set an EDS cluster names is in the same set, and no two
// listeners bind the same address. It reads the encoded bytes, not what the
// translation meant to emit, so it also catches a builder that names the wrong
// resource. References are remembered per resource object: shared resources are
// decoded once, not once per identity.
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
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
// than building it. Field numbers are those of the v3 protos named beside them.
const HCM_TYPE_SUFFIX = '.HttpConnectionManager';
const EDS = 3; // Cluster.DiscoveryType.EDS

/** Calls `visit` with each field's number and a reader at its value; `visit` consumes the value or returns false to skip it. */
function eachField(bytes: Uint8Array, visit: (field: number, wireType: WireType, reader: BinaryReader) => boolean): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (!visit(field, wireType, reader)) reader.skip(wireType, field);
  }
}

function listenerReferences(any: Any): References {
  const routes: string[] = [];
  let bind: string | undefined;
  eachField(any.value, (field, wireType, reader) => {
    if (wireType !== WireType.LengthDelimited) return false;
    if (field === 2)
      bind = bindAddress(reader.bytes()); // Listener.address
    else if (field === 3)
      // Listener.filter_chains → FilterChain.filters → Filter.typed_config
      eachField(reader.bytes(), (f, w, chain) => {
        if (f !== 3 || w !== WireType.LengthDelimited) return false;
        eachField(chain.bytes(), (g, x, filter) => {
          if (g !== 4 || x !== WireType.LengthDelimited) return false;
          routes.push(...rdsRoutes(filter.bytes()));
          return true;
        });
        return true;
      });
    else if (field === 19)
      // Listener.api_listener → ApiListener.api_listener
      eachField(reader.bytes(), (f, w, api) => {
        if (f !== 1 || w !== WireType.LengthDelimited) return false;
        routes.push(...rdsRoutes(api.bytes()));
        return true;
      });
    else return false;
    return true;
  });
  return { routes, endpoints: [], ...(bind !== undefined ? { bind } : {}) };
}

/** The route configuration an Any names over RDS when it holds an HttpConnectionManager (its `rds.route_config_name`). */
function rdsRoutes(anyBytes: Uint8Array): string[] {
  let typeUrl = '';
  let value: Uint8Array | undefined;
  eachField(anyBytes, (field, wireType, reader) => {
    if (wireType !== WireType.LengthDelimited) return false;
    if (field === 1) typeUrl = reader.string();
    else if (field === 2) value = reader.bytes();
    else return false;
    return true;
  });
  if (!typeUrl.endsWith(HCM_TYPE_SUFFIX) || !value) return [];
  let route: string | undefined;
  eachField(value, (field, wireType, hcm) => {
    if (field !== 3 || wireType !== WireType.LengthDelimited) return false; // HttpConnectionManager.rds
    route = '';
    eachField(hcm.bytes(), (f, w, rds) => {
      if (f !== 2 || w !== WireType.LengthDelimited) return false; // Rds.route_config_name
      route = rds.string();
      return true;
    });
    return true;
  });
  return route === undefined ? [] : [route];
}

/** `protocol address:port` of Address.socket_address (SocketAddress: protocol 1, address 2, port_value 3, named_port 4). */
function bindAddress(addressBytes: Uint8Array): string | undefined {
  let socket: Uint8Array | undefined;
  eachField(addressBytes, (field, wireType, reader) => {
    if (field !== 1 || wireType !== WireType.LengthDelimited) return false;
    socket = reader.bytes();
    return true;
  });
  if (!socket) return undefined;
  let protocol = 0;
  let address = '';
  let port: number | string = '';
  eachField(socket, (field, wireType, reader) => {
    if (field === 1 && wireType === WireType.Varint) protocol = reader.int32();
    else if (field === 2 && wireType === WireType.LengthDelimited) address = reader.string();
    else if (field === 3 && wireType === WireType.Varint) port = reader.uint32();
    else if (field === 4 && wireType === WireType.LengthDelimited) port = reader.string();
    else return false;
    return true;
  });
  return `${protocol === SocketAddress_Protocol.UDP ? 'udp' : 'tcp'} ${address}:${port}`;
}

function clusterReferences(any: Any): References {
  let name = '';
  let type: number | undefined;
  let serviceName = '';
  eachField(any.value, (field, wireType, reader) => {
    if (field === 1 && wireType === WireType.LengthDelimited)
      name = reader.string(); // Cluster.name
    else if (field === 2 && wireType === WireType.Varint)
      type = reader.int32(); // Cluster.type
    else if (field === 3 && wireType === WireType.LengthDelimited)
      // Cluster.eds_cluster_config → EdsClusterConfig.service_name
      eachField(reader.bytes(), (f, w, eds) => {
        if (f !== 2 || w !== WireType.LengthDelimited) return false;
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

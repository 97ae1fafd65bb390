// The check a snapshot passes before it is published (cf. go-control-plane's
// Snapshot.Consistent): every route configuration a listener names over RDS and
// every endpoint set an EDS cluster names is in the same set, and no two
// listeners bind the same address. It reads the encoded bytes, not what the
// translation meant to emit, so it also catches a builder that names the wrong
// resource. References are remembered per resource object: shared resources are
// decoded once, not once per identity.
import { TypeUrl, unpackAnyAs } from '@trellis/envoy-types';
import { Cluster, Cluster_DiscoveryType } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { SocketAddress_Protocol, type Address } from '@trellis/envoy-types/envoy/config/core/v3/address';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { HttpConnectionManager } from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import type { ResourceSet, XdsResource } from './xds-resource';

interface References {
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

function references(resource: XdsResource): References {
  let refs = referencesOf.get(resource);
  if (!refs) {
    refs = resource.typeUrl === TypeUrl.Listener ? listenerReferences(resource.any) : clusterReferences(resource.any);
    referencesOf.set(resource, refs);
  }
  return refs;
}

function listenerReferences(any: Any): References {
  const listener = unpackAnyAs(Listener, any);
  const managers: Any[] = [];
  if (listener.apiListener?.apiListener) managers.push(listener.apiListener.apiListener);
  for (const chain of listener.filterChains) {
    for (const filter of chain.filters) {
      if (filter.configType?.$case === 'typedConfig' && filter.configType.value.typeUrl.endsWith('.HttpConnectionManager')) {
        managers.push(filter.configType.value);
      }
    }
  }
  const routes = managers.flatMap((m) => {
    const spec = unpackAnyAs(HttpConnectionManager, m).routeSpecifier;
    return spec?.$case === 'rds' ? [spec.value.routeConfigName] : [];
  });
  const bind = bindAddress(listener.address);
  return { routes, endpoints: [], ...(bind !== undefined ? { bind } : {}) };
}

function bindAddress(address: Address | undefined): string | undefined {
  const socket = address?.address?.$case === 'socketAddress' ? address.address.value : undefined;
  if (!socket) return undefined;
  return `${socket.protocol === SocketAddress_Protocol.UDP ? 'udp' : 'tcp'} ${socket.address}:${socket.portSpecifier?.value ?? ''}`;
}

function clusterReferences(any: Any): References {
  const cluster = unpackAnyAs(Cluster, any);
  const eds = cluster.clusterDiscoveryType?.$case === 'type' && cluster.clusterDiscoveryType.value === Cluster_DiscoveryType.EDS;
  return { routes: [], endpoints: eds ? [cluster.edsClusterConfig?.serviceName || cluster.name] : [] };
}

/**
 * The ClusterLoadAssignment an EDS cluster uses (`eds_cluster_config.service_name`,
 * else the cluster's own name); undefined for clusters of other discovery types.
 */
export function endpointsNameOf(cluster: XdsResource): string | undefined {
  return references(cluster).endpoints[0];
}

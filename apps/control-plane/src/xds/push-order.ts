// Make-before-break rules both ADS sessions share (Envoy's "eventual consistency
// considerations"): clusters before the endpoints they use, both before the
// listeners and routes that point at them, and removals last.
import { Cluster, Cluster_DiscoveryType } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import type { XdsResource } from '../envoy/resources';
import type { StreamInfo } from './callbacks';
import type { ProxySnapshot } from './snapshot-cache';

/** How long listeners and routes wait for a client to ask for a new cluster's endpoints. */
export const ENDPOINT_WAIT_MS = 2000;

/**
 * Whether some cluster the client holds has endpoints in the snapshot that the
 * client has not received yet (its EDS request follows the CDS ACK).
 */
export function endpointsPending(
  clusterNames: Iterable<string>,
  endpoints: ReadonlyMap<string, XdsResource>,
  clientHasEndpoints: (cluster: string) => boolean,
): boolean {
  for (const name of clusterNames) {
    if (endpoints.has(name) && !clientHasEndpoints(name)) return true;
  }
  return false;
}

const endpointsNames = new WeakMap<XdsResource, string | undefined>();

/**
 * The ClusterLoadAssignment an EDS cluster uses (`eds_cluster_config.service_name`,
 * else the cluster's own name); undefined for clusters of other discovery types.
 * Resources are shared and immutable, so each is decoded once.
 */
export function endpointsNameOf(cluster: XdsResource): string | undefined {
  if (endpointsNames.has(cluster)) return endpointsNames.get(cluster);
  const decoded = Cluster.decode(cluster.any.value);
  const discovery = decoded.clusterDiscoveryType;
  const name =
    discovery?.$case === 'type' && discovery.value === Cluster_DiscoveryType.EDS
      ? decoded.edsClusterConfig?.serviceName || decoded.name
      : undefined;
  endpointsNames.set(cluster, name);
  return name;
}

/**
 * Start of the convergence measurement for a response: when the change behind
 * the snapshot was first seen — but only for changes made while this stream was
 * connected (a fresh stream catching up is not convergence).
 */
export function convergenceStart(snapshot: ProxySnapshot, stream: StreamInfo): number {
  return snapshot.changedAt >= stream.connectedAt.getTime() ? snapshot.changedAt : 0;
}

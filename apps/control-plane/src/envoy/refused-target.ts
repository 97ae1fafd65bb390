// What a proxyless client gets when it dials `xds:///<target>` and may not call
// <target> that way — its service did not declare it, or declared a TCP service,
// which gRPC cannot call: instead of no listener (grpc-js-xds then waits 15 s for it
// and fails with an anonymous UNAVAILABLE), a listener, cluster and endpoints that
// fail every call at once with UNAVAILABLE "Call dropped by load balancing policy.
// Category: <reason>", the reason naming both services.
//
// Why a drop (gRFC A28 `drop_overloads`): the drop category is the one text
// grpc-js-xds 1.14 hands to the failed call unchanged. A direct response is NACKed,
// a fault abort says only "Fault injected", a route that matches nothing says "Failed
// to route call", and a route configuration without a matching virtual host crashes
// the client's resolver once it has had a working configuration.
//
// The drop is decided in the picker before any endpoint is chosen, but grpc-js builds
// the picker only over a locality with an endpoint, so there is one: 127.0.0.1 port 0,
// where no call goes and a connection attempt is refused without leaving the host.
//
// An undeclared target is answered for any well-formed service name, registered or
// not (xds/derived-resources.ts), so the answer tells a client nothing about which
// services exist; a declared TCP dependency is translated (proxy-resources.ts).
import { TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import { Cluster, Cluster_DiscoveryType, Cluster_LbPolicy } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { ClusterLoadAssignment } from '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { HttpConnectionManager } from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import { FractionalPercent_DenominatorType } from '@trellis/envoy-types/envoy/type/v3/percent';
import { packAny } from '@trellis/envoy-types';
import { ServiceName } from '@trellis/mesh-schema';
import { makeResource, type XdsResource } from '../resource';
import { adsConfigSource, socketAddress } from './common';
import { routerFilter } from './filters';
import {
  parseRefusedTargetClusterName,
  proxylessListenerName,
  refusedTargetClusterName,
  statPrefix,
  undeclaredDependencyReason,
} from './names';

export function refusedTargetListener(target: string): Listener {
  const cluster = refusedTargetClusterName(target);
  const hcm = HttpConnectionManager.fromPartial({
    statPrefix: statPrefix(cluster),
    routeSpecifier: {
      $case: 'routeConfig',
      value: {
        name: cluster,
        virtualHosts: [
          {
            name: target,
            domains: ['*'],
            routes: [
              {
                match: { pathSpecifier: { $case: 'prefix', value: '/' } },
                action: { $case: 'route', value: { clusterSpecifier: { $case: 'cluster', value: cluster } } },
              },
            ],
          },
        ],
      },
    },
    httpFilters: [routerFilter()],
  });
  return Listener.fromPartial({ name: proxylessListenerName(target), apiListener: { apiListener: packAny(HttpConnectionManager, hcm) } });
}

export function refusedTargetCluster(target: string): Cluster {
  const name = refusedTargetClusterName(target);
  return Cluster.fromPartial({
    name,
    clusterDiscoveryType: { $case: 'type', value: Cluster_DiscoveryType.EDS },
    edsClusterConfig: { edsConfig: adsConfigSource(), serviceName: name },
    lbPolicy: Cluster_LbPolicy.ROUND_ROBIN,
  });
}

/** The drop category is `reason`: what the client's call reports. */
export function refusedTargetEndpoints(target: string, reason: string): ClusterLoadAssignment {
  return ClusterLoadAssignment.fromPartial({
    clusterName: refusedTargetClusterName(target),
    endpoints: [
      {
        locality: {},
        loadBalancingWeight: 1,
        lbEndpoints: [{ hostIdentifier: { $case: 'endpoint', value: { address: socketAddress('127.0.0.1', 0) } } }],
      },
    ],
    policy: {
      dropOverloads: [{ category: reason, dropPercentage: { numerator: 100, denominator: FractionalPercent_DenominatorType.HUNDRED } }],
    },
  });
}

/**
 * The resource of `typeUrl` named `name` that a proxyless client of `caller` asks for
 * on its way to a target it did not declare, or undefined when the name is not one of
 * those. Asked only for names the caller's translated resources do not have.
 */
export function undeclaredTargetResource(typeUrl: XdsTypeUrl, caller: string, name: string): XdsResource | undefined {
  const target = typeUrl === TypeUrl.Listener ? name : parseRefusedTargetClusterName(name);
  if (target === undefined || !ServiceName.safeParse(target).success) return undefined;
  switch (typeUrl) {
    case TypeUrl.Listener:
      return makeResource(typeUrl, Listener, name, refusedTargetListener(target));
    case TypeUrl.Cluster:
      return makeResource(typeUrl, Cluster, name, refusedTargetCluster(target));
    case TypeUrl.ClusterLoadAssignment:
      return makeResource(typeUrl, ClusterLoadAssignment, name, refusedTargetEndpoints(target, undeclaredDependencyReason(caller, target)));
    default:
      return undefined;
  }
}

// Named factories for small hand-built resources (cf. go-control-plane's
// MakeCluster): protocol tests drive the xDS server with these instead of the
// full translation, so a failure points at the protocol.
import { TypeUrl } from '@trellis/envoy-types';
import { Cluster } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { ClusterLoadAssignment } from '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { RouteConfiguration } from '@trellis/envoy-types/envoy/config/route/v3/route';
import { makeResource, toResourceSet, type ResourceSet, type XdsResource } from '../../src/resource';

export function makeCluster(name: string, timeoutSeconds = 5): XdsResource {
  return makeResource(
    TypeUrl.Cluster,
    Cluster,
    name,
    Cluster.fromPartial({
      name,
      connectTimeout: { seconds: String(timeoutSeconds), nanos: 0 },
      clusterDiscoveryType: { $case: 'type', value: 3 /* EDS */ },
      edsClusterConfig: { edsConfig: { configSourceSpecifier: { $case: 'ads', value: {} } } },
    }),
  );
}

export function makeEndpoints(cluster: string, ...addresses: string[]): XdsResource {
  return makeResource(
    TypeUrl.ClusterLoadAssignment,
    ClusterLoadAssignment,
    cluster,
    ClusterLoadAssignment.fromPartial({
      clusterName: cluster,
      endpoints: [
        {
          loadBalancingWeight: 1,
          lbEndpoints: addresses.map((a) => {
            const [host, port] = a.split(':');
            return {
              hostIdentifier: {
                $case: 'endpoint' as const,
                value: {
                  address: {
                    address: {
                      $case: 'socketAddress' as const,
                      value: { address: host!, portSpecifier: { $case: 'portValue' as const, value: Number(port) } },
                    },
                  },
                },
              },
            };
          }),
        },
      ],
    }),
  );
}

export function makeListener(name: string, port = 10000): XdsResource {
  return makeResource(
    TypeUrl.Listener,
    Listener,
    name,
    Listener.fromPartial({
      name,
      address: { address: { $case: 'socketAddress', value: { address: '127.0.0.1', portSpecifier: { $case: 'portValue', value: port } } } },
    }),
  );
}

export function makeRoute(name: string, cluster: string): XdsResource {
  return makeResource(
    TypeUrl.RouteConfiguration,
    RouteConfiguration,
    name,
    RouteConfiguration.fromPartial({
      name,
      virtualHosts: [
        {
          name,
          domains: ['*'],
          routes: [
            {
              match: { pathSpecifier: { $case: 'prefix', value: '/' } },
              action: { $case: 'route', value: { clusterSpecifier: { $case: 'cluster', value: cluster } } },
            },
          ],
        },
      ],
    }),
  );
}

/** A fake "model": the resource set each service's proxies get. */
export type FakeModel = Map<string, ResourceSet>;

export function fakeModel(entries: Record<string, XdsResource[]>): FakeModel {
  return new Map(Object.entries(entries).map(([service, resources]) => [service, toResourceSet(resources)]));
}

/** The model's set for the service, as a new set per call as translation gives one (the cache keeps the maps it gets). */
export function translateFake(model: FakeModel, identity: { service: string }): ResourceSet {
  const set = model.get(identity.service);
  if (!set) return toResourceSet([]);
  const copy: ResourceSet = new Map();
  for (const [typeUrl, resources] of set) copy.set(typeUrl, new Map(resources));
  return copy;
}

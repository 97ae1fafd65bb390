// Mesh model + proxy identity → everything that proxy receives. Pure and
// deterministic: equal inputs give byte-identical resources, sorted by name.
import { TypeUrl } from '@trellis/envoy-types';
import { Cluster } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { ClusterLoadAssignment } from '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { RouteConfiguration } from '@trellis/envoy-types/envoy/config/route/v3/route';
import type { DependencyModel, MeshModel, ServiceModel } from '../model';
import { authzCluster, loadAssignment, proxylessCluster, sidecarCluster } from './clusters';
import { inboundListener, outboundHttpListener, outboundTcpListener, proxylessApiListener } from './listeners';
import { outboundClusterName } from './names';
import { emptyResourceSet, makeResource, toResourceSet, type ProxyIdentity, type ResourceSet, type XdsResource } from './resources';
import { inboundRouteConfig, outboundRouteConfig, proxylessRouteConfig } from './routes';

/**
 * A proxy of an unregistered service gets an empty set (every type present):
 * it serves nothing until its service is registered.
 */
export function buildProxyResources(model: MeshModel, proxy: ProxyIdentity): ResourceSet {
  const service = model.services.get(proxy.service);
  if (!service) return emptyResourceSet();
  const deps = service.dependencies.map((dep) => ({ dep, callee: model.services.get(dep.service)! }));
  return toResourceSet(proxy.kind === 'envoy' ? sidecarResources(model, service, deps) : proxylessResources(deps));
}

type Dep = { dep: DependencyModel; callee: ServiceModel };

/** Clusters and endpoints of one dependency: one per upstream (the whole service, or each weighted subset). */
function upstreamResources({ dep, callee }: Dep, proxyless: boolean, connectTimeoutMs: number): XdsResource[] {
  // A TCP listener cannot split by weight here: it always uses the whole service.
  const upstreams = callee.protocol === 'tcp' ? [{ subset: undefined, localities: callee.localities }] : callee.upstreams;
  return upstreams.flatMap((upstream) => {
    const name = outboundClusterName(callee.name, upstream.subset);
    const input = { name, protocol: callee.protocol, policy: dep.policy, connectTimeoutMs };
    const cluster = proxyless ? proxylessCluster(input) : sidecarCluster(input);
    return [
      makeResource(TypeUrl.Cluster, Cluster, name, cluster),
      makeResource(TypeUrl.ClusterLoadAssignment, ClusterLoadAssignment, name, loadAssignment(name, upstream.localities)),
    ];
  });
}

function sidecarResources(model: MeshModel, service: ServiceModel, deps: Dep[]): XdsResource[] {
  const { settings, tokens } = model;
  const resources: XdsResource[] = [];
  const inbound = inboundListener(service, tokens, settings);
  resources.push(makeResource(TypeUrl.Listener, Listener, inbound.name, inbound));
  if (service.protocol !== 'tcp') {
    const routes = inboundRouteConfig(service);
    resources.push(makeResource(TypeUrl.RouteConfiguration, RouteConfiguration, routes.name, routes));
  }

  const httpDeps = deps.filter((d) => d.callee.protocol !== 'tcp');
  if (httpDeps.length > 0) {
    const listener = outboundHttpListener(service, settings, httpDeps.some((d) => d.dep.override?.rateLimit !== undefined));
    const routes = outboundRouteConfig(service, httpDeps);
    resources.push(makeResource(TypeUrl.Listener, Listener, listener.name, listener));
    resources.push(makeResource(TypeUrl.RouteConfiguration, RouteConfiguration, routes.name, routes));
  }
  for (const d of deps) {
    if (d.callee.protocol === 'tcp') {
      const listener = outboundTcpListener(service, d.callee);
      resources.push(makeResource(TypeUrl.Listener, Listener, listener.name, listener));
    }
    resources.push(...upstreamResources(d, false, settings.connectTimeoutMs));
  }
  // ext_authz runs on the outbound listener and on a public service's inbound one.
  if (httpDeps.length > 0 || (service.ingress && service.protocol !== 'tcp')) {
    const cluster = authzCluster(settings.authzCluster.host, settings.authzCluster.port, settings.connectTimeoutMs);
    resources.push(makeResource(TypeUrl.Cluster, Cluster, cluster.name, cluster));
  }
  return resources;
}

/** A gRPC client without a sidecar: an API listener per gRPC-capable dependency, nothing secret. */
function proxylessResources(deps: Dep[]): XdsResource[] {
  return deps
    .filter((d) => d.callee.protocol !== 'tcp')
    .flatMap((d) => {
      const listener = proxylessApiListener(d.callee);
      const routes = proxylessRouteConfig(d.dep, d.callee);
      return [
        makeResource(TypeUrl.Listener, Listener, listener.name, listener),
        makeResource(TypeUrl.RouteConfiguration, RouteConfiguration, routes.name, routes),
        ...upstreamResources(d, true, 0),
      ];
    });
}

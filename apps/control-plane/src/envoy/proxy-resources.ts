// Mesh model + proxy identity → everything that proxy receives. Pure and
// deterministic: equal inputs give byte-identical resources, sorted by name.
import { createHash } from 'node:crypto';
import { TypeUrl } from '@trellis/envoy-types';
import { Cluster } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { ClusterLoadAssignment } from '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { RouteConfiguration } from '@trellis/envoy-types/envoy/config/route/v3/route';
import type { DependencyModel, MeshModel, ServiceModel } from '../model';
import { authzCluster, loadAssignment, proxylessCluster, sidecarCluster } from './clusters';
import { inboundListener, outboundHttpListener, outboundTcpListener, proxylessApiListener } from './listeners';
import { outboundClusterName, proxylessClusterName } from './names';
import { emptyResourceSet, makeResource, toResourceSet, type ProxyIdentity, type ResourceSet, type XdsResource } from './resources';
import { inboundRouteConfig, outboundRouteConfig, proxylessRouteConfig } from './routes';
import type { TranslationMemo } from './translation-memo';

/**
 * A proxy of an unregistered service gets an empty set (every type present):
 * it serves nothing until its service is registered. `memo` (optional) shares
 * encoded resources across identities; the result is the same without it.
 */
export function buildProxyResources(model: MeshModel, proxy: ProxyIdentity, memo?: TranslationMemo): ResourceSet {
  const service = model.services.get(proxy.service);
  if (!service) return emptyResourceSet();
  const shared: Shared = memo ? (key, build) => memo.use(model).get(key, build) : (_key, build) => build();
  const deps = service.dependencies.map((dep) => ({ dep, callee: model.services.get(dep.service)! }));
  return toResourceSet(proxy.kind === 'envoy' ? sidecarResources(model, service, deps, shared) : proxylessResources(model, deps, shared));
}

type Dep = { dep: DependencyModel; callee: ServiceModel };

function keyDigest(text: string): string {
  return createHash('sha1').update(text).digest('base64');
}
/** Builds a resource, or takes it from the memo under a key naming everything it is built from. */
type Shared = (key: string, build: () => XdsResource) => XdsResource;

/** Clusters and endpoints of one dependency: one per upstream (the whole service, or each weighted subset). */
function upstreamResources(model: MeshModel, { dep, callee }: Dep, proxyless: boolean, shared: Shared): XdsResource[] {
  const connectTimeoutMs = model.settings.connectTimeoutMs;
  // Endpoints change with the callee's instances; its memo digest covers them.
  const endpointsDigest = model.memo.get(callee.name)?.exposedDigest ?? JSON.stringify(callee.upstreams);
  const policyKey = JSON.stringify(dep.policy);
  // A TCP listener cannot split by weight here: it always uses the whole service.
  const upstreams = callee.protocol === 'tcp' ? [{ subset: undefined, localities: callee.localities }] : callee.upstreams;
  return upstreams.flatMap((upstream) => {
    const edsName = outboundClusterName(callee.name, upstream.subset);
    const name = proxyless ? proxylessClusterName(callee.name, upstream.subset, dep.since) : edsName;
    const input = { name, edsServiceName: edsName, protocol: callee.protocol, policy: dep.policy, connectTimeoutMs };
    return [
      shared(`cds|${proxyless ? 'proxyless' : 'envoy'}|${name}|${callee.protocol}|${connectTimeoutMs}|${policyKey}`, () =>
        makeResource(TypeUrl.Cluster, Cluster, name, proxyless ? proxylessCluster(input) : sidecarCluster(input)),
      ),
      shared(`eds|${edsName}|${callee.protocol}|${endpointsDigest}`, () =>
        makeResource(TypeUrl.ClusterLoadAssignment, ClusterLoadAssignment, edsName, loadAssignment(edsName, upstream.localities)),
      ),
    ];
  });
}

function sidecarResources(model: MeshModel, service: ServiceModel, deps: Dep[], shared: Shared): XdsResource[] {
  const { settings, tokens } = model;
  const resources: XdsResource[] = [];
  // What the service's own resources are built from: its spec and the settings; only the inbound listener adds the tokens.
  // Keys are digests so a service with many callers or dependencies does not make long keys.
  const own = keyDigest(`${model.memo.get(service.name)?.specDigest ?? JSON.stringify(service)}|${JSON.stringify(settings)}`);
  if (service.inbound) {
    resources.push(
      shared(`lds|inbound|${service.name}|${keyDigest(`${own}|${service.callers.join(',')}|${model.sharedDigest}`)}`, () => {
        const inbound = inboundListener(service, tokens, settings);
        return makeResource(TypeUrl.Listener, Listener, inbound.name, inbound);
      }),
    );
  }
  if (service.inbound && service.protocol !== 'tcp') {
    resources.push(
      shared(`rds|inbound|${service.name}|${own}`, () => {
        const routes = inboundRouteConfig(service);
        return makeResource(TypeUrl.RouteConfiguration, RouteConfiguration, routes.name, routes);
      }),
    );
  }

  const httpDeps = deps.filter((d) => d.callee.protocol !== 'tcp');
  if (httpDeps.length > 0) {
    const perRouteRateLimit = httpDeps.some((d) => d.dep.override?.rateLimit !== undefined);
    const calleesKey = httpDeps
      .map((d) => `${d.callee.name}=${model.memo.get(d.callee.name)?.exposedDigest ?? JSON.stringify(d.callee)}`)
      .join(',');
    resources.push(
      shared(`lds|outbound|${service.name}|${perRouteRateLimit}|${own}`, () => {
        const listener = outboundHttpListener(service, settings, perRouteRateLimit);
        return makeResource(TypeUrl.Listener, Listener, listener.name, listener);
      }),
      shared(`rds|outbound|${service.name}|${keyDigest(`${own}|${calleesKey}`)}`, () => {
        const routes = outboundRouteConfig(service, httpDeps);
        return makeResource(TypeUrl.RouteConfiguration, RouteConfiguration, routes.name, routes);
      }),
    );
  }
  for (const d of deps) {
    if (d.callee.protocol === 'tcp') {
      resources.push(
        shared(`lds|tcp|${service.name}|${d.callee.name}|${d.callee.port}`, () => {
          const listener = outboundTcpListener(service, d.callee);
          return makeResource(TypeUrl.Listener, Listener, listener.name, listener);
        }),
      );
    }
    resources.push(...upstreamResources(model, d, false, shared));
  }
  // ext_authz runs on the outbound listener and on a public service's inbound one.
  if (httpDeps.length > 0 || (service.inbound && service.ingress && service.protocol !== 'tcp')) {
    const { host, port } = settings.authzCluster;
    resources.push(
      shared(`cds|authz|${host}|${port}|${settings.connectTimeoutMs}`, () => {
        const cluster = authzCluster(host, port, settings.connectTimeoutMs);
        return makeResource(TypeUrl.Cluster, Cluster, cluster.name, cluster);
      }),
    );
  }
  return resources;
}

/** A gRPC client without a sidecar: an API listener per gRPC-capable dependency, nothing secret. */
function proxylessResources(model: MeshModel, deps: Dep[], shared: Shared): XdsResource[] {
  return deps
    .filter((d) => d.callee.protocol !== 'tcp')
    .flatMap((d) => {
      const splits = JSON.stringify(d.callee.upstreams.map((u) => [u.subset, u.weight]));
      return [
        shared(`lds|proxyless|${d.callee.name}|${d.dep.since}`, () => {
          const listener = proxylessApiListener(d.callee, d.dep.since);
          return makeResource(TypeUrl.Listener, Listener, listener.name, listener);
        }),
        shared(`rds|proxyless|${d.callee.name}|${d.dep.since}|${splits}|${JSON.stringify(d.dep.policy)}`, () => {
          const routes = proxylessRouteConfig(d.dep, d.callee);
          return makeResource(TypeUrl.RouteConfiguration, RouteConfiguration, routes.name, routes);
        }),
        ...upstreamResources(model, d, true, shared),
      ];
    });
}

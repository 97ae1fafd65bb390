// Mesh model → Listener.
import { packAny } from '@trellis/envoy-types';
import { TrafficDirection } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { Filter, ListenerFilter } from '@trellis/envoy-types/envoy/config/listener/v3/listener_components';
import { TlsInspector } from '@trellis/envoy-types/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector';
import {
  HttpConnectionManager,
  type HttpFilter,
} from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import { TcpProxy } from '@trellis/envoy-types/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy';
import { spiffeIdOf } from '@trellis/mesh-schema';
import type { MeshTokens, ServiceModel, TracingSettings, TranslatorSettings } from '../model';
import { adsConfigSource, socketAddress, stdoutJsonAccessLog } from './common';
import {
  extAuthzFilter,
  jwtAuthnFilter,
  localRateLimitFilter,
  networkPeerCertificateRbacFilter,
  peerCertificateRbacFilter,
  rbacFilter,
  routerFilter,
} from './filters';
import { healthProbeOf } from './health-probe';
import {
  encodeSidecarListener,
  sidecarListener,
  type SidecarFilterChainParts,
  type SidecarListenerParts,
  type SidecarNetworkFilter,
} from './sidecar-listener';
import {
  FILTER,
  inboundFilterChainName,
  inboundListenerName,
  inboundRouteName,
  LOCAL_APP_CLUSTER_NAME,
  OUTBOUND_HTTP_NAME,
  outboundClusterName,
  outboundTcpListenerName,
  proxylessListenerName,
  proxylessRouteName,
  proxylessServerListenerName,
  statPrefix,
} from './names';
import { proxylessDownstreamTls, sidecarDownstreamTls } from './workload-tls';

/**
 * A sidecar's HTTP connection manager for `service`'s traffic. `explicitProxy`: also accept absolute-form
 * requests, so an app can use the listener as its HTTP_PROXY.
 */
function httpConnectionManager(
  service: string,
  tracing: TracingSettings | undefined,
  name: string,
  routeName: string,
  httpFilters: HttpFilter[],
  logTags: Record<string, string>,
  explicitProxy = false,
): SidecarNetworkFilter {
  return {
    hcm: {
      statPrefix: statPrefix(name),
      routeName,
      httpFilters,
      logTags,
      service,
      tracing,
      explicitProxy,
    },
  };
}

function tcpProxyFilter(name: string, cluster: string, logTags: Record<string, string>): Filter {
  const proxy = TcpProxy.fromPartial({
    statPrefix: statPrefix(name),
    clusterSpecifier: { $case: 'cluster', value: cluster },
    accessLog: [stdoutJsonAccessLog(logTags)],
  });
  return Filter.fromPartial({ name: FILTER.tcpProxy, configType: { $case: 'typedConfig', value: packAny(TcpProxy, proxy) } });
}

/**
 * Calls into the service on its registered port: mesh tokens verified against
 * the inlined authz keys, RBAC admitting only declared callers, and for a
 * public service ext_authz's edge check on requests without a verified mesh
 * token. TCP services get a TCP proxy.
 *
 * By the service's mTLS mode: `off` one plaintext chain; `permissive` the
 * tls_inspector picks a TLS chain (the peer's certificate verified when presented)
 * or a plaintext one, so callers that already speak mTLS and callers that do not
 * both get in; `strict` only the TLS chain, a client certificate from the mesh CA
 * required, and RBAC admits a caller only as the authenticated peer its certificate
 * names (and, over HTTP, its token must name the same service). Permissive and
 * strict share the listener filters, so a switch between them changes only the
 * filter chains and Envoy drains just those.
 */
export function inboundListener(...args: Parameters<typeof inboundListenerParts>): Listener {
  return sidecarListener(inboundListenerParts(...args));
}

/** The same listener, encoded (what a sidecar is sent): byte for byte `packAny(Listener, inboundListener(…))`. */
export function encodeInboundListener(...args: Parameters<typeof inboundListenerParts>): Any {
  return encodeSidecarListener(inboundListenerParts(...args));
}

function inboundListenerParts(
  service: Pick<ServiceModel, 'name' | 'protocol' | 'port' | 'ingress' | 'callers' | 'policy' | 'mtls'>,
  tokens: MeshTokens,
  settings: Pick<TranslatorSettings, 'authzTimeoutMs' | 'tracing'>,
  trustDomain: string,
): SidecarListenerParts {
  const name = inboundListenerName(service.name);
  if (service.mtls === 'off')
    return inboundParts(name, service.port, NO_LISTENER_FILTERS, [{ name, filters: inboundFilters(service, tokens, settings) }]);

  const strict = service.mtls === 'strict';
  const peer = strict ? (caller: string) => spiffeIdOf(trustDomain, caller) : undefined;
  const mtlsFilters = inboundFilters(service, tokens, settings, peer);
  const mtlsChain: SidecarFilterChainParts = {
    name: inboundFilterChainName(service.name, 'mtls'),
    transportProtocol: 'tls',
    transportSocket: sidecarDownstreamTls(service.protocol, strict),
    filters: mtlsFilters,
  };
  if (strict) return inboundParts(name, service.port, [tlsInspectorFilter()], [mtlsChain]);
  // Permissive: without a peer the TLS chain's filters are the plaintext chain's.
  const plaintextChain: SidecarFilterChainParts = {
    name: inboundFilterChainName(service.name, 'plaintext'),
    transportProtocol: 'raw_buffer',
    filters: mtlsFilters,
  };
  return inboundParts(name, service.port, [tlsInspectorFilter()], [mtlsChain, plaintextChain]);
}

/** An inbound listener's parts, as one object literal (no copy of shared fields spread into each variant). */
function inboundParts(
  name: string,
  port: number,
  listenerFilters: readonly ListenerFilter[],
  filterChains: readonly SidecarFilterChainParts[],
): SidecarListenerParts {
  return { name, host: '0.0.0.0', port, trafficDirection: TrafficDirection.INBOUND, listenerFilters, filterChains };
}

/** Shared by every listener without listener filters (parts are never mutated). */
const NO_LISTENER_FILTERS: readonly ListenerFilter[] = [];

/** Made once: it has no settings. */
let tlsInspector: ListenerFilter | undefined;
function tlsInspectorFilter(): ListenerFilter {
  return (tlsInspector ??= ListenerFilter.fromPartial({
    name: FILTER.tlsInspector,
    configType: { $case: 'typedConfig', value: packAny(TlsInspector, TlsInspector.fromPartial({})) },
  }));
}

/** The network filters of one inbound chain; `peer` (strict mTLS) turns a caller into the SPIFFE ID its certificate must carry. */
function inboundFilters(
  service: Pick<ServiceModel, 'name' | 'protocol' | 'ingress' | 'callers' | 'policy'>,
  tokens: MeshTokens,
  settings: Pick<TranslatorSettings, 'authzTimeoutMs' | 'tracing'>,
  peer?: (caller: string) => string,
): SidecarNetworkFilter[] {
  const name = inboundListenerName(service.name);
  const logTags = { trellis_direction: 'inbound', trellis_service: service.name };
  if (service.protocol === 'tcp') {
    const proxy = { filter: tcpProxyFilter(name, LOCAL_APP_CLUSTER_NAME, logTags) };
    // No token travels over raw TCP: in strict mode the certificate is the caller's only proof.
    return peer ? [{ filter: networkPeerCertificateRbacFilter(statPrefix(`${name}_rbac`), service.callers.map(peer)) }, proxy] : [proxy];
  }
  const isPublic = service.ingress !== undefined;
  const httpFilters: HttpFilter[] = [];
  const probe = healthProbeOf(service);
  // Without any published key no token can verify: RBAC alone then refuses mesh callers.
  if (tokens.keyIds.length > 0) httpFilters.push(jwtAuthnFilter(tokens, service.name, isPublic, probe));
  // The health-check route disables it per route (routes.ts).
  if (isPublic) httpFilters.push(extAuthzFilter(settings.authzTimeoutMs, true));
  httpFilters.push(rbacFilter(tokens.keyIds.length > 0 ? service.callers : [], isPublic, probe, peer));
  if (service.policy.rateLimit) httpFilters.push(localRateLimitFilter(statPrefix(`${name}_ratelimit`), service.policy.rateLimit));
  httpFilters.push(routerFilter());
  return [httpConnectionManager(service.name, settings.tracing, name, inboundRouteName(service.name), httpFilters, logTags)];
}

/** The app's single HTTP egress point, 127.0.0.1:<outboundPort>; routes pick the dependency by Host. */
export function outboundHttpListener(...args: Parameters<typeof outboundHttpListenerParts>): Listener {
  return sidecarListener(outboundHttpListenerParts(...args));
}

/** The same listener, encoded: byte for byte `packAny(Listener, outboundHttpListener(…))`. */
export function encodeOutboundHttpListener(...args: Parameters<typeof outboundHttpListenerParts>): Any {
  return encodeSidecarListener(outboundHttpListenerParts(...args));
}

function outboundHttpListenerParts(
  source: Pick<ServiceModel, 'name'>,
  settings: Pick<TranslatorSettings, 'authzTimeoutMs' | 'outboundPort' | 'tracing'>,
  perRouteRateLimit: boolean,
): SidecarListenerParts {
  const httpFilters = [extAuthzFilter(settings.authzTimeoutMs)];
  if (perRouteRateLimit) httpFilters.push(localRateLimitFilter(statPrefix(`${OUTBOUND_HTTP_NAME}_ratelimit`)));
  httpFilters.push(routerFilter());
  const logTags = { trellis_direction: 'outbound', trellis_service: source.name };
  const hcm = httpConnectionManager(source.name, settings.tracing, OUTBOUND_HTTP_NAME, OUTBOUND_HTTP_NAME, httpFilters, logTags, true);
  return {
    name: OUTBOUND_HTTP_NAME,
    host: '127.0.0.1',
    port: settings.outboundPort,
    trafficDirection: TrafficDirection.OUTBOUND,
    listenerFilters: NO_LISTENER_FILTERS,
    filterChains: [{ name: OUTBOUND_HTTP_NAME, filters: [hcm] }],
  };
}

/** A TCP dependency on 127.0.0.1:<its port>. No token travels over raw TCP. */
export function outboundTcpListener(...args: Parameters<typeof outboundTcpListenerParts>): Listener {
  return sidecarListener(outboundTcpListenerParts(...args));
}

/** The same listener, encoded: byte for byte `packAny(Listener, outboundTcpListener(…))`. */
export function encodeOutboundTcpListener(...args: Parameters<typeof outboundTcpListenerParts>): Any {
  return encodeSidecarListener(outboundTcpListenerParts(...args));
}

function outboundTcpListenerParts(source: Pick<ServiceModel, 'name'>, callee: Pick<ServiceModel, 'name' | 'port'>): SidecarListenerParts {
  const name = outboundTcpListenerName(callee.name);
  const logTags = { trellis_direction: 'outbound', trellis_service: source.name, trellis_destination: callee.name };
  return {
    name,
    host: '127.0.0.1',
    port: callee.port,
    trafficDirection: TrafficDirection.OUTBOUND,
    listenerFilters: NO_LISTENER_FILTERS,
    filterChains: [{ name, filters: [{ filter: tcpProxyFilter(name, outboundClusterName(callee.name), logTags) }] }],
  };
}

/** What `xds:///<callee>` resolves to in a proxyless gRPC client: an API listener with only the router. */
export function proxylessApiListener(callee: Pick<ServiceModel, 'name'>, since: number): Listener {
  const hcm = HttpConnectionManager.fromPartial({
    // Carries the declaration epoch: grpc-js-xds 1.14 ignores a listener that comes back
    // unchanged after a removal (see proxylessClusterName).
    statPrefix: statPrefix(`${callee.name}_${since}`),
    routeSpecifier: { $case: 'rds', value: { configSource: adsConfigSource(), routeConfigName: proxylessRouteName(callee.name) } },
    httpFilters: [routerFilter()],
  });
  return Listener.fromPartial({
    name: proxylessListenerName(callee.name),
    apiListener: { apiListener: packAny(HttpConnectionManager, hcm) },
  });
}

/**
 * What a proxyless server (grpc-js-xds XdsServer) bound to host:port serves with:
 * every call goes to the application (non-forwarding route); TLS with its workload
 * certificate unless the service's mTLS mode is off; in strict mode a client
 * certificate is required and RBAC admits only the SPIFFE IDs of declared callers.
 */
export function proxylessServerListener(
  service: Pick<ServiceModel, 'name' | 'mtls' | 'callers'>,
  trustDomain: string,
  host: string,
  port: number,
): Listener {
  const httpFilters = [
    ...(service.mtls === 'strict' ? [peerCertificateRbacFilter(service.callers.map((caller) => spiffeIdOf(trustDomain, caller)))] : []),
    routerFilter(),
  ];
  const hcm = HttpConnectionManager.fromPartial({
    statPrefix: statPrefix(inboundListenerName(service.name)),
    routeSpecifier: {
      $case: 'routeConfig',
      value: {
        name: inboundListenerName(service.name),
        virtualHosts: [
          {
            name: service.name,
            domains: ['*'],
            routes: [{ match: { pathSpecifier: { $case: 'prefix', value: '/' } }, action: { $case: 'nonForwardingAction', value: {} } }],
          },
        ],
      },
    },
    httpFilters,
  });
  return Listener.fromPartial({
    name: proxylessServerListenerName(host, port),
    address: socketAddress(host, port),
    trafficDirection: TrafficDirection.INBOUND,
    filterChains: [
      {
        name: inboundListenerName(service.name),
        filters: [{ name: FILTER.httpConnectionManager, configType: { $case: 'typedConfig', value: packAny(HttpConnectionManager, hcm) } }],
        ...(service.mtls === 'off' ? {} : { transportSocket: proxylessDownstreamTls(service.mtls) }),
      },
    ],
  });
}

/** The same server listener for another bound address (an XdsServer asks by the address it binds). */
export function rebindProxylessServerListener(template: Listener, host: string, port: number): Listener {
  return { ...template, name: proxylessServerListenerName(host, port), address: socketAddress(host, port) };
}

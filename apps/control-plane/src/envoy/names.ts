// Every resource name and fixed port the translation emits, in one place.
// apps/control-plane/README.md documents them for operators.
import { isIP } from 'node:net';

/** EDS cluster for a whole service, or for one traffic-split subset of it. */
export function outboundClusterName(service: string, subset?: string): string {
  return subset === undefined ? `outbound|${service}` : `outbound|${service}|${subset}`;
}

/**
 * A proxyless client's cluster for a dependency carries the caller's declaration epoch
 * (DependencyModel.since). grpc-js-xds 1.14 keeps a removed cluster cached and ignores it
 * when it comes back unchanged (fixed upstream in grpc/grpc-node#3074, not yet released),
 * so a dependency declared again must arrive under a new cluster name. Its endpoints
 * (EDS) keep the shared outbound name.
 */
export function proxylessClusterName(service: string, subset: string | undefined, since: number): string {
  return `${outboundClusterName(service, subset)}~${since}`;
}

/** The sidecar's listener for calls into its own service. */
export function inboundListenerName(service: string): string {
  return `inbound|${service}`;
}

/**
 * Filter chains of an inbound listener whose service takes mTLS: `mtls` (TLS,
 * matched by the tls_inspector's transport protocol) and, in permissive mode only,
 * `plaintext`. A service with mTLS off keeps one chain named like the listener.
 */
export function inboundFilterChainName(service: string, transport: 'mtls' | 'plaintext'): string {
  return `${inboundListenerName(service)}|${transport}`;
}

/**
 * The SNI a sidecar sends to a callee over mTLS. Nothing routes on it (the callee's
 * certificate is checked against its SPIFFE ID); it names the callee in the callee's
 * TLS logs and stats, in the trust domain's namespace like the SPIFFE ID.
 */
export function meshSni(service: string, trustDomain: string): string {
  const sni = `${service}.svc.${trustDomain}`;
  // A DNS name has at most 253 characters (Envoy's limit is 255 bytes); a trust domain that long leaves the service alone.
  return sni.length <= 253 ? sni : service;
}

/** The inbound listener's route configuration: the same name, so a config dump pairs them at a glance. */
export function inboundRouteName(service: string): string {
  return inboundListenerName(service);
}

/** One outbound HTTP listener per sidecar, routing by Host/:authority to a virtual host per dependency. */
export const OUTBOUND_HTTP_NAME = 'outbound|http';

/** TCP dependencies cannot be routed by Host: each gets a listener on 127.0.0.1:<its port>. */
export function outboundTcpListenerName(service: string): string {
  return `outbound|tcp|${service}`;
}

/** Proxyless clients dial `xds:///<service>`: the API listener's name must be exactly the target. */
export function proxylessListenerName(service: string): string {
  return service;
}

/**
 * A proxyless server (grpc-js-xds XdsServer) asks for the listener of the address it binds,
 * by the bootstrap's `server_listener_resource_name_template` (gRPC's standard form).
 */
export const PROXYLESS_SERVER_LISTENER_PREFIX = 'grpc/server?xds.resource.listening_address=';

export function proxylessServerListenerName(host: string, port: number): string {
  return `${PROXYLESS_SERVER_LISTENER_PREFIX}${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The IP literal and port a server listener name asks for; undefined for anything else. */
export function parseProxylessServerListenerName(name: string): { host: string; port: number } | undefined {
  if (!name.startsWith(PROXYLESS_SERVER_LISTENER_PREFIX)) return undefined;
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(name.slice(PROXYLESS_SERVER_LISTENER_PREFIX.length));
  if (!match) return undefined;
  const host = match[1] ?? match[2]!;
  const port = Number(match[3]);
  if (port < 1 || port > 65535 || isIP(host) === 0) return undefined;
  return { host, port };
}

/** The certificate provider instance a proxyless bootstrap defines (file_watcher over the agent's files). */
export const WORKLOAD_CERT_PROVIDER = 'trellis-workload';

export function proxylessRouteName(service: string): string {
  return `proxyless|${service}`;
}

/** Cluster and endpoints of a target a proxyless client may not call through xDS (refused-target.ts). */
export function refusedTargetClusterName(target: string): string {
  return `refused|${target}`;
}

/** The target a refused-target cluster name names; undefined for any other name (the target is checked by the caller). */
export function parseRefusedTargetClusterName(name: string): string | undefined {
  return name.startsWith('refused|') ? name.slice('refused|'.length) : undefined;
}

/** Why a proxyless client's call to a declared TCP dependency fails: gRPC cannot carry raw TCP. */
export function tcpDependencyReason(caller: string, target: string): string {
  return `trellis: ${target}, a dependency of ${caller}, is a tcp service: gRPC calls cannot reach it through xds:///${target}`;
}

/**
 * Why a call to a service the caller did not declare fails: the body of a sidecar's 404 and the
 * reason a proxyless client's channel reports (`target` absent: the sidecar does not know the host).
 */
export function undeclaredDependencyReason(caller: string, target?: string): string {
  return target === undefined
    ? `trellis: ${caller} has not declared a dependency on this host`
    : `trellis: ${caller} has not declared a dependency on ${target}; declare it in the registry to call xds:///${target}`;
}

/** The ext_authz gRPC cluster every sidecar carries. */
export const AUTHZ_CLUSTER_NAME = 'trellis-authz';
/** The OTLP collector sidecars send spans to, when one is configured. */
export const TRACING_COLLECTOR_CLUSTER_NAME = 'trellis-otel-collector';

/** The local application, defined statically by the bootstrap (its port is per node, not per service). */
export const LOCAL_APP_CLUSTER_NAME = 'local-app';
/** Node metadata key of a sidecar's own outbound listener port (set by /bootstrap/{service}?outbound_port=). */
export const OUTBOUND_PORT_METADATA = 'trellis.outbound_port';

/** jwt_authn provider name and the dynamic-metadata key the verified payload lands under. */
export const MESH_TOKEN_PROVIDER = 'trellis-mesh';
export const MESH_TOKEN_METADATA_KEY = 'mesh_token';

// Shared with authz and the SDK (see @trellis/mesh-schema conventions): the verified
// caller header the inbound route sets for the app, and the ext_authz context keys.
export { CALLER_HEADER, CONTEXT_DESTINATION, CONTEXT_DIRECTION, CONTEXT_SOURCE } from '@trellis/mesh-schema';

export const FILTER = {
  httpConnectionManager: 'envoy.filters.network.http_connection_manager',
  tcpProxy: 'envoy.filters.network.tcp_proxy',
  networkRbac: 'envoy.filters.network.rbac',
  tlsInspector: 'envoy.filters.listener.tls_inspector',
  extAuthz: 'envoy.filters.http.ext_authz',
  jwtAuthn: 'envoy.filters.http.jwt_authn',
  rbac: 'envoy.filters.http.rbac',
  localRateLimit: 'envoy.filters.http.local_ratelimit',
  router: 'envoy.filters.http.router',
} as const;

/** Envoy stat prefixes: no '|' so they stay one stats segment each; every UTF-16 unit but [a-zA-Z0-9_-] becomes '_'. */
export function statPrefix(name: string): string {
  // A loop, not `replace` with a global regex: each of those went through V8's runtime, ~3–6 µs a call in a
  // connection storm's translation (two a sidecar) against well under one for this.
  let prefix = '';
  let from = 0;
  for (let i = 0; i < name.length; i++) {
    if (isStatPrefixUnit(name.charCodeAt(i))) continue;
    prefix += name.slice(from, i) + '_';
    from = i + 1;
  }
  return from === 0 ? name : prefix + name.slice(from);
}

function isStatPrefixUnit(code: number): boolean {
  return (
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x5f || // _
    code === 0x2d // -
  );
}

// Mesh model → RouteConfiguration.
import { HeaderValueOption_HeaderAppendAction } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { RouteConfiguration, type DeepPartial } from '@trellis/envoy-types/envoy/config/route/v3/route';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { packAny, typeUrlOf } from '@trellis/envoy-types';
import {
  RetryPolicy,
  Route,
  RouteAction,
  RouteMatch,
  VirtualHost,
  WeightedCluster,
} from '@trellis/envoy-types/envoy/config/route/v3/route_components';
import { ExtAuthzPerRoute } from '@trellis/envoy-types/envoy/extensions/filters/http/ext_authz/v3/ext_authz';
import { PreviousHostsPredicate } from '@trellis/envoy-types/envoy/extensions/retry/host/previous_hosts/v3/previous_hosts';
import { Any as AnyMessage, type Any } from '@trellis/envoy-types/google/protobuf/any';
import type { TrafficPolicy } from '@trellis/mesh-schema';
import type { ServiceModel, UpstreamModel } from '../model';
import { canonicalDigest } from '../resource';
import { duration, utf8 } from './common';
import { extAuthzContext, extAuthzDisabled, localRateLimitConfig } from './filters';
import { healthProbeOf, probeRouteMatch, type HealthProbe } from './health-probe';
import {
  CALLER_HEADER,
  CONTEXT_DESTINATION,
  CONTEXT_DIRECTION,
  CONTEXT_SOURCE,
  FILTER,
  inboundRouteName,
  LOCAL_APP_CLUSTER_NAME,
  MESH_TOKEN_METADATA_KEY,
  OUTBOUND_HTTP_NAME,
  outboundClusterName,
  proxylessClusterName,
  proxylessRouteName,
  statPrefix,
  undeclaredDependencyReason,
} from './names';

/** gRPC status names grpc-js-xds retries on; the HTTP-level conditions do not apply to it. */
const GRPC_RETRY_ON = new Set(['cancelled', 'deadline-exceeded', 'resource-exhausted', 'unavailable', 'internal']);

/** What a route needs of the callee: its name, port and how it splits traffic — not its endpoints. */
export interface RouteTarget {
  name: string;
  port: number;
  upstreams: ReadonlyArray<Pick<UpstreamModel, 'subset' | 'weight'>>;
}

/**
 * What a route reads of a dependency's effective policy. Cluster settings (circuit
 * breakers, outlier detection, health checks) are not in it, so changing them
 * leaves every caller's routes as they were, unencoded again (the translation memo
 * keys a route on exactly this).
 */
export type RoutePolicy = Pick<TrafficPolicy, 'loadBalancing' | 'hashOn' | 'retries' | 'timeoutMs'>;
export const ROUTE_POLICY_FIELDS = ['loadBalancing', 'hashOn', 'retries', 'timeoutMs'] as const satisfies ReadonlyArray<keyof RoutePolicy>;

/** What an outbound route reads of a dependency: its route policy and the caller's own rate limit. */
export interface RouteDependency {
  policy: RoutePolicy;
  override?: Pick<TrafficPolicy, 'rateLimit'>;
}

/** Names the cluster of one upstream (the whole service when `subset` is undefined). */
type ClusterNamer = (service: string, subset?: string) => string;

/** Where a route sends traffic: the service's cluster, or its weighted subsets. */
function clusterSpecifier(callee: RouteTarget, clusterName: ClusterNamer): RouteAction['clusterSpecifier'] {
  if (callee.upstreams.length === 1 && callee.upstreams[0]!.subset === undefined) {
    return { $case: 'cluster', value: clusterName(callee.name) };
  }
  return {
    $case: 'weightedClusters',
    value: WeightedCluster.fromPartial({
      clusters: callee.upstreams.map((u) => ({ name: clusterName(callee.name, u.subset), weight: u.weight })),
    }),
  };
}

/** A declared retry policy, or one of the defaults below. */
type Retries = Readonly<NonNullable<TrafficPolicy['retries']>>;

/**
 * A sidecar's retry goes to a host not tried yet for the request: without it the
 * load balancer may pick the instance that just refused or reset the connection
 * again. Envoy re-picks up to 5 times (Istio's default) before settling for a tried
 * host, e.g. when every instance has been tried. Proxyless clients do not get it:
 * grpc-js-xds reads only retry_on, num_retries and retry_back_off (gRFC A44), and
 * its retries pick again through the load balancer anyway.
 */
const RETRY_PREVIOUS_HOSTS = {
  retryHostPredicate: [
    {
      name: 'envoy.retry_host_predicates.previous_hosts',
      configType: { $case: 'typedConfig' as const, value: packAny(PreviousHostsPredicate, PreviousHostsPredicate.fromPartial({})) },
    },
  ],
  hostSelectionRetryMaxAttempts: '5',
};

/**
 * `hashed`: the route picks hosts by ring_hash. Its retries stay on the hashed host,
 * as Istio's do: the affinity is what the service asked for, and outlier detection
 * ejects a host that keeps failing, after which the ring picks the next one.
 */
function retryPolicy(retries: Retries, proxyless: boolean, hashed: boolean): RetryPolicy | undefined {
  const retryOn = proxyless ? retries.retryOn.filter((r) => GRPC_RETRY_ON.has(r)) : retries.retryOn;
  if (retries.attempts === 0 || retryOn.length === 0) return undefined;
  return RetryPolicy.fromPartial({
    retryOn: retryOn.join(','),
    numRetries: retries.attempts,
    ...(retries.perTryTimeoutMs !== undefined && !proxyless ? { perTryTimeout: duration(retries.perTryTimeoutMs) } : {}),
    ...(!proxyless && !hashed ? RETRY_PREVIOUS_HOSTS : {}),
  });
}

/**
 * ring_hash needs a hash on the route, or every request hashes to a random host.
 * From the policy's `hashOn`; the source IP when it names none. Proxyless
 * clients (grpc-js-xds, gRFC A42) hash on headers only.
 */
type RouteActionInput = Parameters<typeof RouteAction.fromPartial>[0];

function hashPolicy(policy: RoutePolicy, proxyless: boolean): RouteActionInput['hashPolicy'] {
  if (policy.loadBalancing !== 'ring_hash') return [];
  const on = policy.hashOn ?? { sourceIp: true as const };
  if ('header' in on) return [{ policySpecifier: { $case: 'header', value: { headerName: on.header } }, terminal: false }];
  if (proxyless) return [];
  if ('cookie' in on)
    return [{ policySpecifier: { $case: 'cookie', value: { name: on.cookie, path: '', attributes: [] } }, terminal: false }];
  return [{ policySpecifier: { $case: 'connectionProperties', value: { sourceIp: true } }, terminal: false }];
}

/**
 * What a proxyless route retries when the policy names no retries: UNAVAILABLE,
 * which gRPC guarantees is safe to retry — a refused or dropped connection, or a
 * transport the client's keepalive found hung (a frozen instance). grpc-js retries
 * within the call's deadline and only before the response has started, so a
 * deadline-bound call moves to another instance instead of failing.
 */
const PROXYLESS_DEFAULT_RETRIES: Retries = { attempts: 2, retryOn: ['unavailable'] };

/**
 * What a sidecar route retries when the policy names no retries: only failures
 * where the request never reached the callee's app, so a replay is safe even for
 * a non-idempotent POST. Envoy's default backoff (25 ms base, jittered) applies.
 * - `connect-failure`: no connection was made (refused or timed out: an instance
 *   restarting, drained or frozen).
 * - `refused-stream`: the upstream answered HTTP/2 REFUSED_STREAM, which promises
 *   it did not process the stream.
 * - `reset-before-request`: the connection was reset before the request headers
 *   were sent (a pooled connection the instance closed; Envoy 1.31 or later).
 * Not `unavailable` (Istio's default has it): that status comes from the app or a
 * proxy in front of it, after the request may have had effects.
 */
const SIDECAR_DEFAULT_RETRIES: Retries = { attempts: 2, retryOn: ['connect-failure', 'refused-stream', 'reset-before-request'] };

function routeAction(
  callee: RouteTarget,
  policy: RoutePolicy,
  proxyless: boolean,
  clusterName: ClusterNamer = outboundClusterName,
): RouteAction {
  // A declared policy wins, including `attempts: 0` (no retries).
  const retry = retryPolicy(
    policy.retries ?? (proxyless ? PROXYLESS_DEFAULT_RETRIES : SIDECAR_DEFAULT_RETRIES),
    proxyless,
    policy.loadBalancing === 'ring_hash',
  );
  return RouteAction.fromPartial({
    clusterSpecifier: clusterSpecifier(callee, clusterName),
    hashPolicy: hashPolicy(policy, proxyless) ?? [],
    // grpc-js-xds reads deadlines from max_stream_duration, Envoy from timeout.
    ...(policy.timeoutMs !== undefined
      ? proxyless
        ? { maxStreamDuration: { maxStreamDuration: duration(policy.timeoutMs) } }
        : { timeout: duration(policy.timeoutMs) }
      : {}),
    ...(retry ? { retryPolicy: retry } : {}),
  });
}

/** Host names a caller may use for a dependency: `b` and `b:<port>`. */
function domainsOf(callee: RouteTarget): string[] {
  return [callee.name, `${callee.name}:${callee.port}`];
}

/**
 * The sidecar's outbound HTTP routes: one virtual host per declared HTTP-like
 * dependency, each route telling authz who calls whom; anything else gets a 404
 * naming the cause, without a call to authz.
 */
export function outboundRouteConfig(
  source: Pick<ServiceModel, 'name'>,
  deps: ReadonlyArray<{ dep: RouteDependency; callee: RouteTarget }>,
): RouteConfiguration {
  const virtualHosts = deps.map(({ dep, callee }): DeepPartial<VirtualHost> => {
    const typedPerFilterConfig: Record<string, Any> = {
      [FILTER.extAuthz]: extAuthzContext('outbound', { source: source.name, destination: callee.name }),
    };
    if (dep.override?.rateLimit) {
      typedPerFilterConfig[FILTER.localRateLimit] = localRateLimitConfig(
        statPrefix(`outbound_${callee.name}_ratelimit`),
        dep.override.rateLimit,
      );
    }
    return {
      name: callee.name,
      domains: domainsOf(callee),
      routes: [
        {
          name: callee.name,
          match: { pathSpecifier: { $case: 'prefix', value: '/' } },
          action: { $case: 'route', value: routeAction(callee, dep.policy, false) },
          typedPerFilterConfig,
        },
      ],
    };
  });
  virtualHosts.push({
    name: 'undeclared',
    domains: ['*'],
    routes: [
      {
        name: 'undeclared',
        match: { pathSpecifier: { $case: 'prefix', value: '/' } },
        action: {
          $case: 'directResponse',
          value: {
            status: 404,
            body: { specifier: { $case: 'inlineString', value: `${undeclaredDependencyReason(source.name)}\n` } },
          },
        },
        typedPerFilterConfig: { [FILTER.extAuthz]: extAuthzDisabled() },
      },
    ],
  });
  // Plain partials, copied once here (a VirtualHost.fromPartial of each would copy them twice).
  return RouteConfiguration.fromPartial({ name: OUTBOUND_HTTP_NAME, virtualHosts, validateClusters: false });
}

// The outbound routes, encoded. Every sidecar has its own (the ext_authz context of each
// route names the caller, the 404 names it too), so a connection storm encodes one per
// identity: they are written straight into a writer around bytes encoded once (a route's
// match, the undeclared host's fixed parts) and a route action encoded once per
// dependency projection and callee (shared by every caller of the callee), instead of
// building the RouteConfiguration object graph to encode it. Byte for byte
// `packAny(RouteConfiguration, outboundRouteConfig(…))` (routes.test.ts holds the two to it
// on generated input).

// Field tags (field number << 3 | wire type) of the fields written below.
const CONFIG_NAME = (1 << 3) | 2;
const CONFIG_VIRTUAL_HOSTS = (2 << 3) | 2;
const HOST_NAME = (1 << 3) | 2;
const HOST_DOMAINS = (2 << 3) | 2;
const HOST_ROUTES = (3 << 3) | 2;
const ROUTE_NAME = (14 << 3) | 2;
const ROUTE_MATCH = (1 << 3) | 2;
const ROUTE_ROUTE = (2 << 3) | 2;
const ACTION_CLUSTER = (1 << 3) | 2;
const ROUTE_DIRECT_RESPONSE = (7 << 3) | 2;
const ROUTE_TYPED_PER_FILTER_CONFIG = (13 << 3) | 2;
const MAP_KEY = (1 << 3) | 2;
const MAP_VALUE = (2 << 3) | 2;
const ANY_TYPE_URL = (1 << 3) | 2;
const ANY_VALUE = (2 << 3) | 2;
const PER_ROUTE_CHECK_SETTINGS = (2 << 3) | 2;
const CHECK_CONTEXT_EXTENSIONS = (1 << 3) | 2;
const DIRECT_STATUS = (1 << 3) | 0;
const DIRECT_BODY = (2 << 3) | 2;
const DATA_INLINE_STRING = (3 << 3) | 2;

let constants:
  | {
      typeUrl: string;
      perRouteTypeUrl: Uint8Array;
      prefixMatch: Uint8Array;
      undeclared: Uint8Array;
      undeclaredRoute: Uint8Array;
      authzOff: Uint8Array;
      tail: Uint8Array;
    }
  | undefined;
function encodedConstants(): NonNullable<typeof constants> {
  const prefix = { pathSpecifier: { $case: 'prefix' as const, value: '/' } };
  return (constants ??= {
    typeUrl: typeUrlOf(RouteConfiguration),
    perRouteTypeUrl: utf8(typeUrlOf(ExtAuthzPerRoute)),
    prefixMatch: RouteMatch.encode(RouteMatch.fromPartial(prefix)).finish(),
    // The undeclared host's name and domains, its route's name and match, and that route's ext_authz entry:
    // each message's fields before, and after, the one that varies (the generated encoders' order).
    undeclared: VirtualHost.encode(VirtualHost.fromPartial({ name: 'undeclared', domains: ['*'] })).finish(),
    undeclaredRoute: Route.encode(Route.fromPartial({ name: 'undeclared', match: prefix })).finish(),
    authzOff: Route.encode(Route.fromPartial({ typedPerFilterConfig: { [FILTER.extAuthz]: extAuthzDisabled() } })).finish(),
    tail: RouteConfiguration.encode(RouteConfiguration.fromPartial({ validateClusters: false })).finish(),
  });
}

/** A dependency's route action, encoded once per route projection and callee (both made once per model object and shared). */
const routeActions = new WeakMap<RoutePolicy, WeakMap<RouteTarget, Uint8Array>>();
function encodedRouteAction(callee: RouteTarget, policy: RoutePolicy): Uint8Array {
  let byCallee = routeActions.get(policy);
  if (!byCallee) routeActions.set(policy, (byCallee = new WeakMap()));
  let bytes = byCallee.get(callee);
  if (!bytes) byCallee.set(callee, (bytes = RouteAction.encode(routeAction(callee, policy, false)).finish()));
  return bytes;
}

/**
 * A route action to the callee's one cluster (no weighted subsets) is its cluster's name followed by what the policy
 * adds (timeout, retries, hash policy): the generated encoder writes `cluster` (field 1) first, so the rest is encoded
 * once per distinct route policy, and every callee (thousands in a connection storm, most with the default policy)
 * gets only its name written, instead of a RouteAction built and encoded per callee. Kept by the policy's canonical
 * digest, not by object: every callee's policy is an object of its own, but few contents are distinct. Bounded:
 * started afresh when it holds POLICY_ACTIONS_MAX of them (records are untrusted input).
 */
const policyActions = new Map<string, Uint8Array>();
const POLICY_ACTIONS_MAX = 1024;
function writeRouteAction(w: BinaryWriter, callee: RouteTarget, policy: RoutePolicy): void {
  const upstreams = callee.upstreams;
  if (upstreams.length !== 1 || upstreams[0]!.subset !== undefined) {
    w.uint32(ROUTE_ROUTE).bytes(encodedRouteAction(callee, policy));
    return;
  }
  const key = canonicalDigest(policy);
  let rest = policyActions.get(key);
  if (!rest) {
    if (policyActions.size >= POLICY_ACTIONS_MAX) policyActions.clear();
    rest = RouteAction.encode({ ...routeAction(callee, policy, false), clusterSpecifier: undefined }).finish();
    policyActions.set(key, rest);
  }
  w.uint32(ROUTE_ROUTE).fork().uint32(ACTION_CLUSTER).string(outboundClusterName(callee.name)).raw(rest).join();
}

/** One writer for every encoding (they never overlap); `finish()` copies the bytes out. */
const writer = new BinaryWriter();

/**
 * `packAny(RouteConfiguration, outboundRouteConfig(source, deps))`, byte for byte. The projections in `deps`
 * are never mutated (each route action is remembered per projection object).
 */
export function encodeOutboundRouteConfig(
  source: Pick<ServiceModel, 'name'>,
  deps: ReadonlyArray<{ dep: RouteDependency; callee: RouteTarget }>,
): Any {
  const c = encodedConstants();
  let bytes: Uint8Array;
  try {
    bytes = writeOutboundRoutes(source.name, deps, c, writer).finish();
  } catch (err) {
    writer.finish(); // drop what a failed encoding left in the shared writer
    throw err;
  }
  return { $type: 'google.protobuf.Any', typeUrl: c.typeUrl, value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

// The generated encoders' field order; proto3 leaves empty strings out.
function writeOutboundRoutes(
  source: string,
  deps: ReadonlyArray<{ dep: RouteDependency; callee: RouteTarget }>,
  c: NonNullable<typeof constants>,
  w: BinaryWriter,
): BinaryWriter {
  w.uint32(CONFIG_NAME).string(OUTBOUND_HTTP_NAME);
  for (const { dep, callee } of deps) {
    w.uint32(CONFIG_VIRTUAL_HOSTS).fork();
    if (callee.name !== '') w.uint32(HOST_NAME).string(callee.name);
    for (const domain of domainsOf(callee)) w.uint32(HOST_DOMAINS).string(domain);
    w.uint32(HOST_ROUTES).fork();
    if (callee.name !== '') w.uint32(ROUTE_NAME).string(callee.name);
    w.uint32(ROUTE_MATCH).bytes(c.prefixMatch);
    writeRouteAction(w, callee, dep.policy);
    // typed_per_filter_config, in the reference's key order: ext_authz's context, then the caller's own rate limit.
    w.uint32(ROUTE_TYPED_PER_FILTER_CONFIG).fork().uint32(MAP_KEY).string(FILTER.extAuthz).uint32(MAP_VALUE).fork();
    w.uint32(ANY_TYPE_URL).bytes(c.perRouteTypeUrl).uint32(ANY_VALUE).fork().uint32(PER_ROUTE_CHECK_SETTINGS).fork();
    contextExtension(w, CONTEXT_DIRECTION, 'outbound');
    contextExtension(w, CONTEXT_DESTINATION, callee.name);
    contextExtension(w, CONTEXT_SOURCE, source);
    w.join().join().join().join();
    if (dep.override?.rateLimit) {
      const limit = localRateLimitConfig(statPrefix(`outbound_${callee.name}_ratelimit`), dep.override.rateLimit);
      w.uint32(ROUTE_TYPED_PER_FILTER_CONFIG).fork().uint32(MAP_KEY).string(FILTER.localRateLimit);
      AnyMessage.encode(limit, w.uint32(MAP_VALUE).fork()).join().join();
    }
    w.join().join();
  }
  // Anything else: a 404 naming the cause, without a call to authz.
  w.uint32(CONFIG_VIRTUAL_HOSTS).fork().raw(c.undeclared).uint32(HOST_ROUTES).fork().raw(c.undeclaredRoute);
  w.uint32(ROUTE_DIRECT_RESPONSE).fork().uint32(DIRECT_STATUS).uint32(404);
  w.uint32(DIRECT_BODY)
    .fork()
    .uint32(DATA_INLINE_STRING)
    .string(`${undeclaredDependencyReason(source)}\n`)
    .join()
    .join();
  w.raw(c.authzOff).join().join();
  return w.raw(c.tail);
}

function contextExtension(w: BinaryWriter, key: string, value: string): void {
  w.uint32(CHECK_CONTEXT_EXTENSIONS).fork();
  if (key !== '') w.uint32(MAP_KEY).string(key);
  if (value !== '') w.uint32(MAP_VALUE).string(value);
  w.join();
}

/**
 * Calls into the service, handed to the local app with the verified caller in
 * `x-trellis-caller`; a public service's edge requests get the edge context for authz.
 * The service's own health-check request comes first: to the app, with no caller
 * header and no edge check (jwt_authn and RBAC let exactly that request through).
 */
export function inboundRouteConfig(service: Pick<ServiceModel, 'name' | 'policy' | 'ingress' | 'protocol'>): RouteConfiguration {
  const name = inboundRouteName(service.name);
  const probe = healthProbeOf(service);
  return RouteConfiguration.fromPartial({
    name,
    virtualHosts: [
      {
        name: service.name,
        domains: ['*'],
        routes: [
          ...(probe ? [probeRoute(service, probe)] : []),
          {
            name: service.name,
            match: { pathSpecifier: { $case: 'prefix', value: '/' } },
            action: { $case: 'route', value: localAppAction(service.policy.timeoutMs) },
            typedPerFilterConfig: service.ingress ? { [FILTER.extAuthz]: extAuthzContext('edge', { destination: service.name }) } : {},
            ...ROUTE_REQUEST_HEADER_RULES,
          },
        ],
      },
    ],
    // local-app comes from the bootstrap, not CDS.
    validateClusters: false,
  });
}

/** The service's own health-check request: to the app, with no caller header and no edge check. */
function probeRoute(service: Pick<ServiceModel, 'name' | 'ingress'>, probe: HealthProbe): DeepPartial<Route> {
  return {
    name: `${service.name}-health`,
    match: probeRouteMatch(probe),
    action: { $case: 'route', value: { clusterSpecifier: { $case: 'cluster', value: LOCAL_APP_CLUSTER_NAME } } },
    typedPerFilterConfig: service.ingress ? { [FILTER.extAuthz]: extAuthzDisabled() } : {},
    requestHeadersToRemove: [CALLER_HEADER],
  };
}

function localAppAction(timeoutMs: number | undefined): DeepPartial<RouteAction> {
  return {
    clusterSpecifier: { $case: 'cluster', value: LOCAL_APP_CLUSTER_NAME },
    ...(timeoutMs !== undefined ? { timeout: duration(timeoutMs) } : {}),
  };
}

/** The app is told the verified caller, never a value the client sent. */
function inboundHeaderRules(): Pick<DeepPartial<Route>, 'requestHeadersToRemove' | 'requestHeadersToAdd'> {
  return {
    // Removal runs before addition, so a client cannot pass its own value through; without a verified token the header is absent.
    requestHeadersToRemove: [CALLER_HEADER],
    requestHeadersToAdd: [
      {
        header: { key: CALLER_HEADER, value: `%DYNAMIC_METADATA(${FILTER.jwtAuthn}:${MESH_TOKEN_METADATA_KEY}:sub)%` },
        appendAction: HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
        keepEmptyValue: false,
      },
    ],
  };
}

// The inbound routes, encoded: the same writer around bytes encoded once (the main route's
// match, header rules and the local-app action per timeout). Byte for byte
// `packAny(RouteConfiguration, inboundRouteConfig(service))` (routes.test.ts).
const ROUTE_REQUEST_HEADER_RULES = inboundHeaderRules();
const localAppActions = new Map<number | undefined, Uint8Array>();
let inboundConstants: { tail: Uint8Array; wildcard: Uint8Array } | undefined;

/** `packAny(RouteConfiguration, inboundRouteConfig(service))`, byte for byte. */
export function encodeInboundRouteConfig(service: Pick<ServiceModel, 'name' | 'policy' | 'ingress' | 'protocol'>): Any {
  const c = encodedConstants();
  let bytes: Uint8Array;
  try {
    bytes = writeInboundRoutes(service, c, writer).finish();
  } catch (err) {
    writer.finish(); // drop what a failed encoding left in the shared writer
    throw err;
  }
  return { $type: 'google.protobuf.Any', typeUrl: c.typeUrl, value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

function writeInboundRoutes(
  service: Pick<ServiceModel, 'name' | 'policy' | 'ingress' | 'protocol'>,
  c: NonNullable<typeof constants>,
  w: BinaryWriter,
): BinaryWriter {
  inboundConstants ??= {
    tail: Route.encode(Route.fromPartial(ROUTE_REQUEST_HEADER_RULES)).finish(),
    wildcard: VirtualHost.encode(VirtualHost.fromPartial({ domains: ['*'] })).finish(),
  };
  const name = service.name;
  const probe = healthProbeOf(service);
  const configName = inboundRouteName(name);
  if (configName !== '') w.uint32(CONFIG_NAME).string(configName);
  w.uint32(CONFIG_VIRTUAL_HOSTS).fork();
  if (name !== '') w.uint32(HOST_NAME).string(name);
  w.raw(inboundConstants.wildcard);
  // The service's own health check: rare, and built by the reference's own function.
  if (probe) w.uint32(HOST_ROUTES).bytes(Route.encode(Route.fromPartial(probeRoute(service, probe))).finish());
  w.uint32(HOST_ROUTES).fork();
  if (name !== '') w.uint32(ROUTE_NAME).string(name);
  w.uint32(ROUTE_MATCH).bytes(c.prefixMatch);
  const timeoutMs = service.policy.timeoutMs;
  let action = localAppActions.get(timeoutMs);
  if (!action) localAppActions.set(timeoutMs, (action = RouteAction.encode(RouteAction.fromPartial(localAppAction(timeoutMs))).finish()));
  w.uint32(ROUTE_ROUTE).bytes(action);
  if (service.ingress) {
    w.uint32(ROUTE_TYPED_PER_FILTER_CONFIG).fork().uint32(MAP_KEY).string(FILTER.extAuthz).uint32(MAP_VALUE).fork();
    w.uint32(ANY_TYPE_URL).bytes(c.perRouteTypeUrl).uint32(ANY_VALUE).fork().uint32(PER_ROUTE_CHECK_SETTINGS).fork();
    contextExtension(w, CONTEXT_DIRECTION, 'edge');
    contextExtension(w, CONTEXT_DESTINATION, name);
    w.join().join().join().join();
  }
  w.raw(inboundConstants.tail).join().join();
  return w.raw(c.tail);
}

/** A proxyless client's route to one dependency: the virtual host's domain is the xds:/// target. */
export function proxylessRouteConfig(dep: { policy: RoutePolicy; since: number }, callee: RouteTarget): RouteConfiguration {
  return RouteConfiguration.fromPartial({
    name: proxylessRouteName(callee.name),
    virtualHosts: [
      {
        name: callee.name,
        domains: [callee.name],
        routes: [
          {
            name: callee.name,
            match: { pathSpecifier: { $case: 'prefix', value: '' } },
            action: {
              $case: 'route',
              value: routeAction(callee, dep.policy, true, (service, subset) => proxylessClusterName(service, subset, dep.since)),
            },
          },
        ],
      },
    ],
  });
}

// Mesh model + proxy identity → everything that proxy receives. Pure and
// deterministic: equal inputs give byte-identical resources, sorted by name.
import { isIP } from 'node:net';
import { TypeUrl } from '@trellis/envoy-types';
import { Cluster } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { ClusterLoadAssignment } from '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { RouteConfiguration } from '@trellis/envoy-types/envoy/config/route/v3/route';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import {
  dependencyPolicy,
  type DependencyModel,
  type LocalityEndpoints,
  type MeshModel,
  type MeshTokens,
  type ServiceModel,
  type TracingSettings,
  type TranslatorSettings,
} from '../model';
import {
  canonicalDigest,
  emptyResourceSet,
  encodedResource,
  makeResource,
  toResourceSet,
  type ProxyIdentity,
  type ResourceBuilder,
  type ResourceSet,
  type TranslationMemo,
  type XdsResource,
} from '../resource';
import { componentSpiffeIdOf, spiffeIdOf, type TrafficPolicy } from '@trellis/mesh-schema';
import { authzCluster, encodeLoadAssignment, encodeSidecarCluster, proxylessCluster, type ClusterInput } from './clusters';
import {
  encodeInboundListener,
  encodeOutboundHttpListener,
  encodeOutboundTcpListener,
  proxylessApiListener,
  proxylessServerListener,
} from './listeners';
import {
  inboundListenerName,
  inboundRouteName,
  meshSni,
  OUTBOUND_HTTP_NAME,
  outboundClusterName,
  outboundTcpListenerName,
  proxylessClusterName,
  tcpDependencyReason,
} from './names';
import { refusedTargetCluster, refusedTargetEndpoints, refusedTargetListener } from './refused-target';
import { tracingCollectorCluster } from './tracing';
import {
  encodeInboundRouteConfig,
  encodeOutboundRouteConfig,
  proxylessRouteConfig,
  ROUTE_POLICY_FIELDS,
  type RouteDependency,
  type RoutePolicy,
  type RouteTarget,
} from './routes';

const listener = (l: Listener) => makeResource(TypeUrl.Listener, Listener, l.name, l);
/** A sidecar listener written by its encoder (sidecar-listener.ts), without the message object. */
const encodedListener = (name: string, any: Any) => encodedResource(TypeUrl.Listener, name, any);
const routes = (r: RouteConfiguration) => makeResource(TypeUrl.RouteConfiguration, RouteConfiguration, r.name, r);
const cluster = (c: Cluster) => makeResource(TypeUrl.Cluster, Cluster, c.name, c);

type InboundService = Parameters<typeof encodeInboundListener>[0] & Parameters<typeof encodeInboundRouteConfig>[0];

// Every resource a proxy gets comes from one of these, each a function of one
// plain-data input and nothing else. The memo keys a resource by its builder and
// a digest of that input, so a key cannot leave out something the resource is
// built from. Inputs hold what the resource needs (a route needs a callee's
// subsets and weights, not its endpoints), so unrelated changes still hit.
const build = {
  inboundListener: (i: { service: InboundService; tokens: MeshTokens; settings: TranslatorSettings; trustDomain: string }) =>
    encodedListener(inboundListenerName(i.service.name), encodeInboundListener(i.service, i.tokens, i.settings, i.trustDomain)),
  inboundRoutes: (i: { service: InboundService }) =>
    encodedResource(TypeUrl.RouteConfiguration, inboundRouteName(i.service.name), encodeInboundRouteConfig(i.service)),
  outboundListener: (i: { source: string; settings: TranslatorSettings; perRouteRateLimit: boolean }) =>
    encodedListener(OUTBOUND_HTTP_NAME, encodeOutboundHttpListener({ name: i.source }, i.settings, i.perRouteRateLimit)),
  outboundRoutes: (i: { source: string; deps: Array<{ dep: RouteDependency; callee: RouteTarget }> }) =>
    encodedResource(TypeUrl.RouteConfiguration, OUTBOUND_HTTP_NAME, encodeOutboundRouteConfig({ name: i.source }, i.deps)),
  tcpListener: (i: { source: string; callee: { name: string; port: number } }) =>
    encodedListener(outboundTcpListenerName(i.callee.name), encodeOutboundTcpListener({ name: i.source }, i.callee)),
  sidecarCluster: (i: ClusterInput) => encodedResource(TypeUrl.Cluster, i.name, encodeSidecarCluster(i)),
  proxylessCluster: (i: ClusterInput) => cluster(proxylessCluster(i)),
  endpoints: (i: { clusterName: string; localities: readonly LocalityEndpoints[] }) =>
    encodedResource(TypeUrl.ClusterLoadAssignment, i.clusterName, encodeLoadAssignment(i.clusterName, i.localities)),
  authzCluster: (i: { host: string; port: number; connectTimeoutMs: number; peer?: { spiffeId: string; sni: string } }) =>
    cluster(authzCluster(i.host, i.port, i.connectTimeoutMs, i.peer)),
  tracingCollectorCluster: (i: { tracing: TracingSettings; connectTimeoutMs: number }) =>
    cluster(tracingCollectorCluster(i.tracing, i.connectTimeoutMs)),
  proxylessListener: (i: { callee: string; since: number }) => listener(proxylessApiListener({ name: i.callee }, i.since)),
  proxylessRoutes: (i: { dep: RouteDependency; since: number; callee: RouteTarget }) =>
    routes(proxylessRouteConfig({ policy: i.dep.policy, since: i.since }, i.callee)),
  proxylessServerListener: (i: { service: Pick<ServiceModel, 'name' | 'mtls' | 'callers'>; trustDomain: string; port: number }) =>
    listener(proxylessServerListener(i.service, i.trustDomain, '0.0.0.0', i.port)),
  refusedListener: (i: { target: string }) => listener(refusedTargetListener(i.target)),
  refusedCluster: (i: { target: string }) => cluster(refusedTargetCluster(i.target)),
  refusedEndpoints: (i: { target: string; reason: string }) => {
    const assignment = refusedTargetEndpoints(i.target, i.reason);
    return makeResource(TypeUrl.ClusterLoadAssignment, ClusterLoadAssignment, assignment.clusterName, assignment);
  },
} satisfies Record<string, ResourceBuilder<never>>;

// Resources that name the identity's own service (its listeners, its routes, a TCP dependency's
// listener) can be equal only to its own earlier ones, which `reused` keeps per model object:
// they are built directly, without the memo's digest of their input (most of their cost in a
// connection storm, where every one of them is new). The memo is for what callers share.

/** Builds a resource, or takes it from the memo when the same builder had an equal input. */
type Make = <I>(builder: ResourceBuilder<I>, input: I) => XdsResource;

/**
 * A proxy of an unregistered service gets an empty set (every type present):
 * it serves nothing until its service is registered. `memo` (optional) shares
 * encoded resources across identities; the result is the same without it.
 */
export function buildProxyResources(model: MeshModel, proxy: ProxyIdentity, memo?: TranslationMemo): ResourceSet {
  const service = model.services.get(proxy.service);
  if (!service) return emptyResourceSet();
  const generation = memo?.use(model);
  const make: Make = generation ? (builder, input) => generation.get(builder, input) : (builder, input) => builder(input);
  // Plain loops, here and in sidecarResources and outboundRoutes: an array from `map` or `filter` has another
  // elements kind when TurboFan inlines the call than when the builtin runs it, and the functions it is handed
  // to were deoptimized ("wrong map") in every connection storm once the caller was optimized.
  const deps: Dep[] = [];
  for (const dep of service.dependencies) {
    const callee = model.services.get(dep.service)!;
    deps.push({ dep, callee, policy: dependencyPolicy(callee, dep) });
  }
  return toResourceSet(
    proxy.kind === 'envoy'
      ? sidecarResources(model, service, deps, make, proxy.outboundPort)
      : proxylessResources(model, service, deps, make),
  );
}

/** A dependency as translation reads it: what the caller declared, the callee, and the effective policy of the two. */
type Dep = { dep: DependencyModel; callee: ServiceModel; policy: TrafficPolicy };

// Model objects are never mutated, so a projection made once per object serves
// every caller, and its digest is computed once (canonicalDigest remembers it).
const routeTargets = new WeakMap<ServiceModel, RouteTarget>();
function routeTarget(callee: ServiceModel): RouteTarget {
  let target = routeTargets.get(callee);
  if (!target) {
    // map: a list of exactly its length (kept per callee), not one push grew to 17 slots.
    const upstreams = callee.upstreams.map(({ subset, weight }) => ({ subset, weight }));
    target = { name: callee.name, port: callee.port, upstreams };
    routeTargets.set(callee, target);
  }
  return target;
}

// A builder input made of the very same parts as last time is the same object as
// last time, so its memo key (canonicalDigest remembers digests by object) is not
// computed again for every identity on every rebuild; the same holds for resources
// (and lists of them) kept per model object. `make` must build its result from
// `parts` alone (or from what has the same digest); it is reused only when every
// part is identical (===).
//
// An anchor has one to three slots, so its entries are a short chain held in the WeakMap itself
// rather than a Map per anchor: a connection storm meets every anchor for the first time, and a
// Map per anchor (with its hash table) was most of `reused`'s cost and a good part of the garbage.
interface ReusedInput {
  readonly slot: string;
  parts: readonly unknown[];
  input: unknown;
  readonly next: ReusedInput | undefined;
}
const inputs = new WeakMap<object, ReusedInput>();
/** The parts of a slot whose anchor and slot name already say everything its input is made of (parts are kept per entry). */
const NO_PARTS: readonly unknown[] = [];
function reused<I>(anchor: object, slot: string, parts: readonly unknown[], make: () => I): I {
  let known = inputs.get(anchor);
  while (known !== undefined && known.slot !== slot) known = known.next;
  if (known !== undefined && sameParts(known.parts, parts)) return known.input as I;
  const input = make();
  // The chain is read again: `make` may have reused other slots of the same anchor.
  if (known === undefined) inputs.set(anchor, { slot, parts, input, next: inputs.get(anchor) });
  else {
    known.parts = parts;
    known.input = input;
  }
  return input;
}

function sameParts(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// What a route reads of a dependency (routes.ts RouteDependency): it depends only on
// the dependency's effective policy object and the caller's rate-limit override, so it
// is projected once per policy object — every caller without an override shares the
// callee's — and a change a route does not read (a callee's circuit breaker) gives an
// equal input, so every caller's routes stay encoded as they were.
// `limited` is made for the first override only: most policies have none, and one is kept per policy object.
const routeDependencies = new WeakMap<TrafficPolicy, { plain?: RouteDependency; limited?: WeakMap<object, RouteDependency> }>();
function routeDependency({ dep, policy }: Dep): RouteDependency {
  const rateLimit = dep.override?.rateLimit;
  if (rateLimit === undefined) return plainRouteDependency(policy);
  const limited = (routeDependenciesOf(policy).limited ??= new WeakMap());
  let projected = limited.get(rateLimit);
  if (!projected) limited.set(rateLimit, (projected = { policy: routePolicy(policy), override: { rateLimit } }));
  return projected;
}

/** A dependency's route projection without a rate-limit override: its policy's alone. */
function plainRouteDependency(policy: TrafficPolicy): RouteDependency {
  const byPolicy = routeDependenciesOf(policy);
  return (byPolicy.plain ??= { policy: routePolicy(policy) });
}

function routeDependenciesOf(policy: TrafficPolicy): { plain?: RouteDependency; limited?: WeakMap<object, RouteDependency> } {
  let byPolicy = routeDependencies.get(policy);
  // Both fields from the start: one object shape for every policy.
  if (!byPolicy) routeDependencies.set(policy, (byPolicy = { plain: undefined, limited: undefined }));
  return byPolicy;
}

function routePolicy(policy: TrafficPolicy): RoutePolicy {
  const projected: RoutePolicy = {};
  for (const field of ROUTE_POLICY_FIELDS) if (policy[field] !== undefined) Object.assign(projected, { [field]: policy[field] });
  return projected;
}

// A callee's clusters and endpoints as every caller without a policy override of its
// own gets them (its dependency's policy is then the callee's very policy object), so a
// change to a service that thousands call translates its clusters once, not once per caller.
// A sidecar's are a function of the callee's model object (never mutated, and carried over
// from one model to the next while the callee is unchanged), the settings and the trust domain:
// they are kept on that object and built directly, without the memo's digest of each input (a
// connection storm meets every callee for the first time, and the digests were a tenth of its
// translation garbage); a changed callee is a new object and is built again. Proxyless cluster
// names carry the caller's declaration epoch, so those are kept per model and epoch.
const sharedProxylessUpstreams = new WeakMap<MeshModel, WeakMap<ServiceModel, Map<number, XdsResource[]>>>();

/** Builds a resource from its input, without the memo. */
const direct: Make = (builder, input) => builder(input);

/** Clusters and endpoints of one dependency: one per upstream (the whole service, or each weighted subset). */
function upstreamResources(model: MeshModel, d: Dep, proxyless: boolean, make: Make): XdsResource[] {
  if (d.policy !== d.callee.policy) return translateUpstreams(model, d, proxyless, make);
  if (!proxyless)
    return reused(d.callee, 'sidecarUpstreams', [model.settings, model.trustDomain], () => translateUpstreams(model, d, false, direct));
  let byCallee = sharedProxylessUpstreams.get(model);
  if (!byCallee) sharedProxylessUpstreams.set(model, (byCallee = new WeakMap()));
  let byEpoch = byCallee.get(d.callee);
  if (!byEpoch) byCallee.set(d.callee, (byEpoch = new Map()));
  let resources = byEpoch.get(d.dep.since);
  if (!resources) byEpoch.set(d.dep.since, (resources = translateUpstreams(model, d, true, make)));
  return resources;
}

function translateUpstreams(model: MeshModel, { dep, callee, policy }: Dep, proxyless: boolean, make: Make): XdsResource[] {
  const connectTimeoutMs = model.settings.connectTimeoutMs;
  // A TCP listener cannot split by weight here: it always uses the whole service.
  const upstreams = callee.protocol === 'tcp' ? [{ subset: undefined, localities: callee.localities }] : callee.upstreams;
  const resources = upstreams.flatMap((upstream) => {
    const edsName = outboundClusterName(callee.name, upstream.subset);
    const name = proxyless ? proxylessClusterName(callee.name, upstream.subset, dep.since) : edsName;
    const input: ClusterInput = { name, edsServiceName: edsName, protocol: callee.protocol, policy, connectTimeoutMs };
    // Callers speak mTLS to a callee that accepts it; its certificate must name the callee.
    if (callee.mtls !== 'off') {
      input.peerSpiffeId = spiffeIdOf(model.trustDomain, callee.name);
      if (!proxyless) input.peerSni = meshSni(callee.name, model.trustDomain);
    }
    return [
      make(proxyless ? build.proxylessCluster : build.sidecarCluster, input),
      make(
        build.endpoints,
        // Through the memo the same input object keeps its digest (canonicalDigest remembers it by object).
        make === direct
          ? { clusterName: edsName, localities: upstream.localities }
          : reused(upstream.localities, edsName, NO_PARTS, () => ({
              clusterName: edsName,
              localities: upstream.localities,
            })),
      ),
    ];
  });
  // Kept per callee (reused, and per model for proxyless clients): a copy of exactly its length, not the list flatMap
  // grew to 17 slots.
  return resources.slice();
}

// A caller's outbound routes are kept while the digests of what they read are the
// same: a callee change routes do not read (a circuit breaker) projects a new
// RouteDependency and RouteTarget of equal content, digested once per callee, and
// every caller keeps its resource without a digest of its own.
function outboundRoutes(service: ServiceModel, httpDeps: readonly Dep[]): XdsResource {
  // Both kept with the routes (reused): arrays of exactly their length, not ones push grew to 17 slots, filled by a
  // plain loop: `map` made `deps` another elements kind when TurboFan inlined it, and writeOutboundRoutes, optimised
  // on one kind, was deoptimized ("wrong map") in every connection storm.
  const deps = new Array<{ dep: RouteDependency; callee: RouteTarget }>(httpDeps.length);
  const parts = new Array<unknown>(1 + 2 * httpDeps.length);
  parts[0] = service.name;
  for (let i = 0; i < httpDeps.length; i++) {
    const d = httpDeps[i]!;
    const projected = { dep: routeDependency(d), callee: routeTarget(d.callee) };
    deps[i] = projected;
    parts[1 + 2 * i] = projectionDigest(projected.dep);
    parts[2 + 2 * i] = projectionDigest(projected.callee);
  }
  return reused(service, 'outboundRoutes', parts, () => build.outboundRoutes({ source: service.name, deps }));
}

// A route projection is made once per policy or callee object and shared by its callers: so is its digest.
const projectionDigests = new WeakMap<object, string>();
function projectionDigest(projection: object): string {
  let digest = projectionDigests.get(projection);
  if (digest === undefined) projectionDigests.set(projection, (digest = canonicalDigest(projection)));
  return digest;
}

function sidecarResources(model: MeshModel, service: ServiceModel, deps: Dep[], make: Make, outboundPort?: number): XdsResource[] {
  const httpDeps: Dep[] = [];
  let perRouteRateLimit = false;
  for (const d of deps) {
    if (d.callee.protocol === 'tcp') continue;
    httpDeps.push(d);
    if (d.dep.override?.rateLimit !== undefined) perRouteRateLimit = true;
  }
  // A sidecar that shares its host with another binds its own outbound port (node metadata).
  const port = outboundPort ?? model.settings.outboundPort;
  // Its own resources read only its service model, what every proxy shares and two facts about its
  // dependencies: kept per service model object, so a change to a callee assembles only the dependency part.
  // Slots name the variants one anchor holds at once; the common one is a constant (no string built per identity).
  const own = reused(
    service,
    port === model.settings.outboundPort ? 'own' : `own|${port}`,
    [model.tokens, model.settings, model.trustDomain, httpDeps.length > 0, perRouteRateLimit],
    () => ownSidecarResources(model, service, httpDeps.length > 0, perRouteRateLimit, port, make),
  );
  const resources: XdsResource[] = [];
  for (const resource of own) resources.push(resource);
  if (httpDeps.length > 0) resources.push(outboundRoutes(service, httpDeps));
  for (const d of deps) {
    if (d.callee.protocol === 'tcp') {
      resources.push(build.tcpListener({ source: service.name, callee: { name: d.callee.name, port: d.callee.port } }));
    }
    for (const resource of upstreamResources(model, d, false, make)) resources.push(resource);
  }
  return resources;
}

/** Inbound listener and routes, the outbound listener, the authz and tracing clusters: what no dependency changes. */
function ownSidecarResources(
  model: MeshModel,
  service: ServiceModel,
  httpDeps: boolean,
  perRouteRateLimit: boolean,
  outboundPort: number,
  make: Make,
): XdsResource[] {
  const { settings, tokens } = model;
  const outboundSettings = outboundPort !== settings.outboundPort ? { ...settings, outboundPort } : settings;
  const resources: XdsResource[] = [];
  const own = reused(
    service.callers,
    'inbound',
    [service.name, service.protocol, service.port, service.ingress, service.callers, service.policy, service.mtls],
    (): InboundService => ({
      name: service.name,
      protocol: service.protocol,
      port: service.port,
      ingress: service.ingress,
      callers: service.callers,
      policy: service.policy,
      mtls: service.mtls,
    }),
  );
  const trustDomain = model.trustDomain;
  if (service.inbound)
    resources.push(
      build.inboundListener(
        reused(own, 'listener', [own, tokens, settings, trustDomain], () => ({ service: own, tokens, settings, trustDomain })),
      ),
    );
  if (service.inbound && service.protocol !== 'tcp')
    resources.push(build.inboundRoutes(reused(own, 'routes', NO_PARTS, () => ({ service: own }))));
  if (httpDeps) {
    resources.push(
      build.outboundListener(
        reused(
          own,
          outboundSlot(perRouteRateLimit, outboundPort, settings),
          [service.name, settings, outboundPort, perRouteRateLimit],
          () => ({
            source: service.name,
            settings: outboundSettings,
            perRouteRateLimit,
          }),
        ),
      ),
    );
  }
  // ext_authz runs on the outbound listener and on a public service's inbound one. This cluster and the tracing
  // collector's read only the settings (and the trust domain): each is kept per settings object, so a connection
  // storm does not digest their inputs again for every identity to find them in the memo.
  if (httpDeps || (service.inbound && service.ingress && service.protocol !== 'tcp')) {
    // One slot: a new trust domain (a mesh settings change) replaces the cluster kept for the old one.
    const authz = reused(settings, 'authz', [settings, trustDomain], () => {
      const { host, port } = settings.authzCluster;
      // SNI only when authz is reached by name (an IP literal is no server name).
      const peer = settings.authzTls
        ? { spiffeId: componentSpiffeIdOf(trustDomain, 'authz'), sni: isIP(host) === 0 && host.length <= 253 ? host : '' }
        : undefined;
      return make(build.authzCluster, { host, port, connectTimeoutMs: settings.connectTimeoutMs, ...(peer ? { peer } : {}) });
    });
    resources.push(authz);
  }
  // Where the tracer of every HTTP connection manager sends its spans, when a collector is configured.
  if (settings.tracing) {
    const tracing = settings.tracing;
    resources.push(
      reused(settings, 'tracing', [settings], () =>
        make(build.tracingCollectorCluster, { tracing, connectTimeoutMs: settings.connectTimeoutMs }),
      ),
    );
  }
  // Kept per service model object (reused): a copy of exactly its length, not the list push grew to 17 slots.
  return resources.slice();
}

function outboundSlot(perRouteRateLimit: boolean, outboundPort: number, settings: TranslatorSettings): string {
  if (outboundPort === settings.outboundPort) return perRouteRateLimit ? 'outbound|limited' : 'outbound';
  return `outbound|${perRouteRateLimit}|${outboundPort}`;
}

/**
 * A gRPC service without a sidecar: an API listener per gRPC-capable dependency (one that
 * refuses calls, with the reason, per TCP dependency), and
 * the server listener its XdsServer asks for — built for 0.0.0.0:<service port> and
 * answered for whatever address it binds (xds/derived-resources.ts). Nothing secret.
 */
function proxylessResources(model: MeshModel, service: ServiceModel, deps: Dep[], make: Make): XdsResource[] {
  const { name, mtls, callers } = service;
  const server =
    service.inbound && service.protocol !== 'tcp'
      ? [build.proxylessServerListener({ service: { name, mtls, callers }, trustDomain: model.trustDomain, port: service.port })]
      : [];
  // A declared TCP dependency dialed as xds:///<name> fails at once, saying gRPC cannot reach it (refused-target.ts).
  const tcp = deps
    .filter((d) => d.callee.protocol === 'tcp')
    .flatMap(({ callee: { name: target } }) => [
      make(build.refusedListener, { target }),
      make(build.refusedCluster, { target }),
      make(build.refusedEndpoints, { target, reason: tcpDependencyReason(name, target) }),
    ]);
  return server.concat(
    tcp,
    deps
      .filter((d) => d.callee.protocol !== 'tcp')
      .flatMap((d) => [
        make(build.proxylessListener, { callee: d.callee.name, since: d.dep.since }),
        make(build.proxylessRoutes, { dep: routeDependency(d), since: d.dep.since, callee: routeTarget(d.callee) }),
        ...upstreamResources(model, d, true, make),
      ]),
  );
}

/**
 * When a sidecar's translation under `next` can differ from its translation under `prev` only in its clusters and
 * endpoints, and there only by the shared upstreams (upstreamResources) of callees that changed: those callees'
 * names, sorted and joined (a sidecar with the same clusters and endpoints under `prev` and the same answer gets
 * the same ones under `next`); otherwise undefined (translate it). What each sidecar resource reads, above:
 * - its own listeners and routes, the authz and tracing clusters: its service model, the model's tokens, settings
 *   and trust domain, its outbound port, and of its dependencies only whether one is HTTP and whether one overrides
 *   a rate limit (sidecarResources' `own`);
 * - its outbound routes: its name and, per HTTP dependency, the route projection of the dependency's policy and
 *   the callee's name, port and upstream subsets and weights (outboundRoutes);
 * - a TCP dependency's listener: the callee's name and port;
 * - a dependency's clusters and endpoints: the callee (protocol, upstreams, localities, mTLS), its policy merged
 *   with the caller's override, the settings and trust domain; without an override, the shared upstreams.
 * So the shortcut holds when the settings, tokens, trust domain and the sidecar's own service model are the very
 * objects they were, and every callee that is not the very object it was keeps its protocol, port and route
 * projections, and is declared without an override. Property test: shared-upstreams-change.test.ts.
 */
export function sharedUpstreamsChange(prev: MeshModel, next: MeshModel, proxy: ProxyIdentity): string | undefined {
  if (proxy.kind !== 'envoy') return undefined;
  if (prev.settings !== next.settings || prev.tokens !== next.tokens || prev.trustDomain !== next.trustDomain) return undefined;
  const service = next.services.get(proxy.service);
  if (!service || prev.services.get(proxy.service) !== service) return undefined;
  // The key names the changed callees in order; mostly one (a single callee's change reaches its hundreds of callers).
  let key: string | undefined;
  let changed: string[] | undefined;
  for (const dep of service.dependencies) {
    const verdict = calleeVerdict(prev, next, dep.service);
    if (verdict === 'same') continue;
    if (verdict === 'other' || dep.override !== undefined) return undefined;
    if (key === undefined) key = dep.service;
    else (changed ??= [key]).push(dep.service);
  }
  return changed ? changed.sort().join('\n') : key;
}

/**
 * What a callee's change from `prev` to `next` is to a caller that declares it without an override: the very same
 * model, a change its callers see only in its shared upstreams, or anything else (gone, new, or a protocol, port or
 * route projection changed). It reads nothing of the caller, so it is judged once per model pair and callee, not once
 * for each of the callee's hundreds of callers (keyed by `prev`: a pair is forgotten with its earlier model).
 */
type CalleeVerdict = 'same' | 'shared' | 'other';
const calleeVerdicts = new WeakMap<MeshModel, { next: MeshModel; verdicts: Map<string, CalleeVerdict> }>();

function calleeVerdict(prev: MeshModel, next: MeshModel, callee: string): CalleeVerdict {
  let pair = calleeVerdicts.get(prev);
  if (pair?.next !== next) calleeVerdicts.set(prev, (pair = { next, verdicts: new Map() }));
  let verdict = pair.verdicts.get(callee);
  if (verdict === undefined) pair.verdicts.set(callee, (verdict = judgeCallee(prev.services.get(callee), next.services.get(callee))));
  return verdict;
}

function judgeCallee(before: ServiceModel | undefined, after: ServiceModel | undefined): CalleeVerdict {
  if (!before || !after) return 'other';
  if (before === after) return 'same';
  if (before.protocol !== after.protocol || before.port !== after.port) return 'other';
  // Without an override a dependency's route projection is its callee's policy's (routeDependency).
  if (
    before.policy !== after.policy &&
    projectionDigest(plainRouteDependency(before.policy)) !== projectionDigest(plainRouteDependency(after.policy))
  )
    return 'other';
  if (routeTarget(before) !== routeTarget(after) && projectionDigest(routeTarget(before)) !== projectionDigest(routeTarget(after)))
    return 'other';
  return 'shared';
}

import { TypeUrl, unpackAnyAs, type XdsTypeUrl } from '@trellis/envoy-types';
import { Cluster, Cluster_LbPolicy } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { ClusterLoadAssignment } from '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { RouteConfiguration } from '@trellis/envoy-types/envoy/config/route/v3/route';
import { ExtAuthz, ExtAuthzPerRoute } from '@trellis/envoy-types/envoy/extensions/filters/http/ext_authz/v3/ext_authz';
import { RBAC } from '@trellis/envoy-types/envoy/extensions/filters/http/rbac/v3/rbac';
import { JwtAuthentication } from '@trellis/envoy-types/envoy/extensions/filters/http/jwt_authn/v3/config';
import { HttpConnectionManager } from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import { OpenTelemetryConfig } from '@trellis/envoy-types/envoy/config/trace/v3/opentelemetry';
import { DEFAULT_TRANSLATOR_SETTINGS } from '../model';
import { MeshFixture } from '../model/mesh-fixture';
import { buildProxyResources } from './proxy-resources';
import type { ProxyIdentity, ResourceSet } from '../resource';

const proxyless = (service: string): ProxyIdentity => ({ service, kind: 'proxyless' });
const envoy = (service: string): ProxyIdentity => ({ service, kind: 'envoy' });

function names(set: ResourceSet, type: XdsTypeUrl): string[] {
  return [...set.get(type)!.keys()];
}
function get<T>(set: ResourceSet, type: XdsTypeUrl, name: string, decoder: { decode(b: Uint8Array): T; $type?: string }): T {
  const resource = set.get(type)!.get(name);
  if (!resource) throw new Error(`no ${type} named ${name}; have ${names(set, type).join(', ')}`);
  return unpackAnyAs(decoder as never, resource.any) as T;
}
function hcmOf(listener: Listener): HttpConnectionManager {
  if (listener.apiListener) return unpackAnyAs(HttpConnectionManager, listener.apiListener.apiListener!);
  const filter = listener.filterChains[0]!.filters[0]!;
  if (filter.configType?.$case !== 'typedConfig') throw new Error('no typed config');
  return unpackAnyAs(HttpConnectionManager, filter.configType.value);
}

function filterConfig(hcm: HttpConnectionManager, index: number): Any {
  const config = hcm.httpFilters[index]!.configType;
  if (config?.$case !== 'typedConfig') throw new Error(`filter ${index} has no typed config`);
  return config.value;
}

const twoInstances = () =>
  new MeshFixture()
    .service('b', { port: 9000 })
    .service('a', { dependencies: [{ service: 'b' }] })
    .service('c')
    .instance('b', 'b-1', '10.0.0.1', 9000, { locality: { region: 'eu', zone: 'eu-1' } })
    .instance('b', 'b-2', '10.0.0.2', 9000, { locality: { region: 'eu', zone: 'eu-2' }, weight: 2 })
    .key('k1');

describe('buildProxyResources for proxyless servers (mTLS modes)', () => {
  const server = (mtls: 'off' | 'permissive' | 'strict') => {
    const model = new MeshFixture()
      .service('b', { port: 9000, mtls })
      .service('a', { dependencies: [{ service: 'b' }] })
      .model();
    const listener = get(
      buildProxyResources(model, proxyless('b')),
      TypeUrl.Listener,
      'grpc/server?xds.resource.listening_address=0.0.0.0:9000',
      Listener,
    );
    const client = get(buildProxyResources(model, proxyless('a')), TypeUrl.Cluster, 'outbound|b~1', Cluster);
    return { listener, hcm: hcmOf(listener), client };
  };

  it('off: plaintext both ways, no RBAC', () => {
    const { listener, hcm, client } = server('off');
    expect(listener.filterChains[0]!.transportSocket).toBeUndefined();
    expect(hcm.httpFilters.map((f) => f.name)).toEqual(['envoy.filters.http.router']);
    expect(client.transportSocket).toBeUndefined();
  });

  it('permissive: TLS with an optional client certificate, callers use mTLS naming b', () => {
    const { listener, hcm, client } = server('permissive');
    const tls = JSON.stringify(listener.filterChains[0]!.transportSocket);
    expect(tls).toContain('DownstreamTlsContext');
    expect(hcm.httpFilters.map((f) => f.name)).toEqual(['envoy.filters.http.router']);
    expect(JSON.stringify(client.transportSocket)).toContain('UpstreamTlsContext');
  });

  it('strict: a client certificate is required and RBAC admits the declared callers by SPIFFE ID', () => {
    const { hcm } = server('strict');
    expect(hcm.httpFilters.map((f) => f.name)).toEqual(['envoy.filters.http.rbac', 'envoy.filters.http.router']);
    const rbac = unpackAnyAs(RBAC, filterConfig(hcm, 0));
    const principals = rbac.rules!.policies['mesh-callers']!.principals;
    expect(
      principals.map((p) => (p.identifier?.$case === 'authenticated' ? p.identifier.value.principalName?.matchPattern : undefined)),
    ).toEqual([{ $case: 'exact', value: 'spiffe://trellis.local/svc/a' }]);
  });
});

describe('buildProxyResources for proxyless gRPC clients', () => {
  it('gives an API listener named after the target, its route, an EDS cluster and weighted localities', () => {
    const set = buildProxyResources(twoInstances().model(), proxyless('a'));
    expect(names(set, TypeUrl.Listener)).toEqual(['b', 'grpc/server?xds.resource.listening_address=0.0.0.0:8080']);
    expect(names(set, TypeUrl.RouteConfiguration)).toEqual(['proxyless|b']);
    // The cluster carries a's declaration epoch for b (generation 1); the endpoints keep the shared name.
    expect(names(set, TypeUrl.Cluster)).toEqual(['outbound|b~1']);
    expect(names(set, TypeUrl.ClusterLoadAssignment)).toEqual(['outbound|b']);
    expect(names(set, TypeUrl.Secret)).toEqual([]);

    const hcm = hcmOf(get(set, TypeUrl.Listener, 'b', Listener));
    expect(hcm.routeSpecifier).toMatchObject({
      $case: 'rds',
      value: { routeConfigName: 'proxyless|b', configSource: { configSourceSpecifier: { $case: 'ads' } } },
    });
    expect(hcm.httpFilters.map((f) => f.name)).toEqual(['envoy.filters.http.router']);

    const routes = get(set, TypeUrl.RouteConfiguration, 'proxyless|b', RouteConfiguration);
    expect(routes.virtualHosts[0]!.domains).toEqual(['b']);
    expect(routes.virtualHosts[0]!.routes[0]!.action).toMatchObject({
      $case: 'route',
      value: { clusterSpecifier: { $case: 'cluster', value: 'outbound|b~1' } },
    });

    const cluster = get(set, TypeUrl.Cluster, 'outbound|b~1', Cluster);
    expect(cluster.lbPolicy).toBe(Cluster_LbPolicy.ROUND_ROBIN);
    expect(cluster.edsClusterConfig).toMatchObject({ serviceName: 'outbound|b', edsConfig: { configSourceSpecifier: { $case: 'ads' } } });

    const cla = get(set, TypeUrl.ClusterLoadAssignment, 'outbound|b', ClusterLoadAssignment);
    expect(
      cla.endpoints.map((l) => [
        l.locality!.zone,
        l.loadBalancingWeight,
        l.lbEndpoints.map((e) => (e.hostIdentifier?.$case === 'endpoint' ? e.hostIdentifier.value.address!.address : undefined)),
      ]),
    ).toEqual([
      [
        'eu-1',
        1,
        [
          {
            $case: 'socketAddress',
            value: expect.objectContaining({ address: '10.0.0.1', portSpecifier: { $case: 'portValue', value: 9000 } }),
          },
        ],
      ],
      ['eu-2', 2, [{ $case: 'socketAddress', value: expect.objectContaining({ address: '10.0.0.2' }) }]],
    ]);
  });

  it('splits by weight across subset clusters when the callee declares a traffic split', () => {
    const mesh = twoInstances().service('b', {
      port: 9000,
      trafficSplit: [
        { name: 'stable', labels: {}, weight: 80 },
        { name: 'canary', labels: { track: 'canary' }, weight: 20 },
      ],
    });
    const set = buildProxyResources(mesh.model(), proxyless('a'));
    expect(names(set, TypeUrl.Cluster)).toEqual(['outbound|b|canary~1', 'outbound|b|stable~1']);
    const action = get(set, TypeUrl.RouteConfiguration, 'proxyless|b', RouteConfiguration).virtualHosts[0]!.routes[0]!.action;
    if (action?.$case !== 'route' || action.value.clusterSpecifier?.$case !== 'weightedClusters')
      throw new Error('expected weighted clusters');
    expect(action.value.clusterSpecifier.value.clusters.map((c) => [c.name, c.weight])).toEqual([
      ['outbound|b|canary~1', 20],
      ['outbound|b|stable~1', 80],
    ]);
  });

  it('gives a dependency declared again a new listener and cluster, so grpc-js-xds notices it came back', () => {
    const before = buildProxyResources(twoInstances().model(), proxyless('a'));
    const redeclared = twoInstances().service('a', { dependencies: [{ service: 'b' }] }, { dependencySince: { b: 3 } });
    const after = buildProxyResources(redeclared.model(), proxyless('a'));
    expect(names(after, TypeUrl.Cluster)).toEqual(['outbound|b~3']);
    expect(get(after, TypeUrl.Cluster, 'outbound|b~3', Cluster).edsClusterConfig?.serviceName).toBe('outbound|b');
    expect(after.get(TypeUrl.Listener)!.get('b')!.hash).not.toBe(before.get(TypeUrl.Listener)!.get('b')!.hash);
    // Endpoints are shared by content and do not depend on the caller's epoch.
    expect(after.get(TypeUrl.ClusterLoadAssignment)!.get('outbound|b')!.hash).toBe(
      before.get(TypeUrl.ClusterLoadAssignment)!.get('outbound|b')!.hash,
    );
  });

  it('gives nothing for services the client did not declare, and nothing at all to an unknown service', () => {
    const model = twoInstances().model();
    const set = buildProxyResources(model, proxyless('c'));
    // c gets only its own server listener: nothing about any other service.
    for (const type of Object.values(TypeUrl))
      expect(names(set, type)).toEqual(type === TypeUrl.Listener ? ['grpc/server?xds.resource.listening_address=0.0.0.0:8080'] : []);
    expect([...buildProxyResources(model, proxyless('nobody')).values()].every((m) => m.size === 0)).toBe(true);
  });

  it('is deterministic: the same model gives byte-identical resources', () => {
    const first = buildProxyResources(twoInstances().model(), proxyless('a'));
    const second = buildProxyResources(twoInstances().model(), proxyless('a'));
    const hashes = (set: ResourceSet) => [...set.values()].flatMap((m) => [...m.values()].map((r) => `${r.name}:${r.hash}`));
    expect(hashes(second)).toEqual(hashes(first));
  });
});

describe('buildProxyResources for Envoy sidecars', () => {
  it('gives an inbound listener verifying mesh tokens, with RBAC admitting exactly the declared callers', () => {
    const set = buildProxyResources(twoInstances().model(), envoy('b'));
    expect(names(set, TypeUrl.Listener)).toEqual(['inbound|b']);
    const listener = get(set, TypeUrl.Listener, 'inbound|b', Listener);
    expect(listener.address?.address).toMatchObject({
      $case: 'socketAddress',
      value: { address: '0.0.0.0', portSpecifier: { value: 9000 } },
    });
    const hcm = hcmOf(listener);
    expect(hcm.httpFilters.map((f) => f.name)).toEqual([
      'envoy.filters.http.jwt_authn',
      'envoy.filters.http.rbac',
      'envoy.filters.http.router',
    ]);
    expect(hcm.accessLog.map((l) => l.name)).toEqual(['envoy.access_loggers.stdout']);

    const jwt = unpackAnyAs(JwtAuthentication, filterConfig(hcm, 0));
    expect(jwt.providers['trellis-mesh']).toMatchObject({ issuer: 'trellis', audiences: ['b'], payloadInMetadata: 'mesh_token' });
    const rbac = unpackAnyAs(RBAC, filterConfig(hcm, 1));
    expect(Object.keys(rbac.rules!.policies)).toEqual(['mesh-callers']);
    expect(JSON.stringify(rbac.rules!.policies['mesh-callers']!.principals)).toContain('"value":"a"');
    expect(rbac.rules!.policies['mesh-callers']!.principals).toHaveLength(1);
  });

  it('refuses every mesh caller when no authz key is published (fail closed)', () => {
    const mesh = twoInstances();
    mesh.authzKeys.clear();
    const hcm = hcmOf(get(buildProxyResources(mesh.model(), envoy('b')), TypeUrl.Listener, 'inbound|b', Listener));
    expect(hcm.httpFilters.map((f) => f.name)).toEqual(['envoy.filters.http.rbac', 'envoy.filters.http.router']);
    const rbac = unpackAnyAs(RBAC, filterConfig(hcm, 0));
    expect(rbac.rules!.policies).toEqual({});
  });

  it('routes outbound calls by Host to each declared dependency, telling authz who calls whom', () => {
    const set = buildProxyResources(twoInstances().model(), envoy('a'));
    expect(names(set, TypeUrl.Listener)).toEqual(['inbound|a', 'outbound|http']);
    expect(names(set, TypeUrl.Cluster)).toEqual(['outbound|b', 'trellis-authz']);
    const outbound = hcmOf(get(set, TypeUrl.Listener, 'outbound|http', Listener));
    expect(outbound.httpFilters.map((f) => f.name)).toEqual(['envoy.filters.http.ext_authz', 'envoy.filters.http.router']);
    expect(outbound.httpProtocolOptions?.allowAbsoluteUrl).toBe(true);
    const routes = get(set, TypeUrl.RouteConfiguration, 'outbound|http', RouteConfiguration);
    expect(routes.virtualHosts.map((v) => [v.name, v.domains])).toEqual([
      ['b', ['b', 'b:9000']],
      ['undeclared', ['*']],
    ]);
    const perRoute = unpackAnyAs(
      ExtAuthzPerRoute,
      routes.virtualHosts[0]!.routes[0]!.typedPerFilterConfig['envoy.filters.http.ext_authz']!,
    );
    expect(perRoute.override).toEqual({
      $case: 'checkSettings',
      value: expect.objectContaining({
        contextExtensions: { 'trellis.source': 'a', 'trellis.destination': 'b', 'trellis.direction': 'outbound' },
      }),
    });
  });

  it('sends only edge requests of a public service to authz, and RBAC admits them only as edge traffic', () => {
    const mesh = twoInstances().service('b', {
      port: 9000,
      ingress: { host: 'b.example.com' },
      policy: { rateLimit: { maxTokens: 10, tokensPerFill: 10, fillIntervalMs: 1000 } },
    });
    const set = buildProxyResources(mesh.model(), envoy('b'));
    const hcm = hcmOf(get(set, TypeUrl.Listener, 'inbound|b', Listener));
    expect(hcm.httpFilters.map((f) => f.name)).toEqual([
      'envoy.filters.http.jwt_authn',
      'envoy.filters.http.ext_authz',
      'envoy.filters.http.rbac',
      'envoy.filters.http.local_ratelimit',
      'envoy.filters.http.router',
    ]);
    const jwt = unpackAnyAs(JwtAuthentication, filterConfig(hcm, 0));
    expect(JSON.stringify(jwt.rules[0]!.requirementType)).toContain('allowMissingOrFailed');
    const extAuthz = unpackAnyAs(ExtAuthz, filterConfig(hcm, 1));
    expect(extAuthz.failureModeAllow).toBe(false);
    expect(extAuthz.filterEnabledMetadata).toMatchObject({ filter: 'envoy.filters.http.jwt_authn', invert: true });
    const rbac = unpackAnyAs(RBAC, filterConfig(hcm, 2));
    expect(Object.keys(rbac.rules!.policies).sort()).toEqual(['edge', 'mesh-callers']);
    expect(rbac.rules!.policies['edge']!.principals[0]!.identifier?.$case).toBe('notId');
    // ext_authz's edge check and RBAC see the path the app will route: normalised, slashes merged, %2F refused.
    expect(hcm).toMatchObject({ normalizePath: true, mergeSlashes: true, pathWithEscapedSlashesAction: 2 });

    const route = get(set, TypeUrl.RouteConfiguration, 'inbound|b', RouteConfiguration).virtualHosts[0]!.routes[0]!;
    const perRoute = unpackAnyAs(ExtAuthzPerRoute, route.typedPerFilterConfig['envoy.filters.http.ext_authz']!);
    expect(perRoute.override).toMatchObject({
      $case: 'checkSettings',
      value: { contextExtensions: { 'trellis.direction': 'edge', 'trellis.destination': 'b' } },
    });
    expect(names(set, TypeUrl.Cluster)).toEqual(['trellis-authz']);
  });

  it('gives a TCP dependency its own listener on its port, and TCP services a plain inbound proxy', () => {
    const mesh = twoInstances()
      .service('db', { protocol: 'tcp', port: 5432 })
      .service('a', { dependencies: [{ service: 'db' }] });
    const set = buildProxyResources(mesh.model(), envoy('a'));
    expect(names(set, TypeUrl.Listener)).toEqual(['inbound|a', 'outbound|tcp|db']);
    expect(names(set, TypeUrl.Cluster)).toEqual(['outbound|db']);
    const listener = get(set, TypeUrl.Listener, 'outbound|tcp|db', Listener);
    expect(listener.address?.address).toMatchObject({ value: { address: '127.0.0.1', portSpecifier: { value: 5432 } } });
    const db = buildProxyResources(mesh.model(), envoy('db'));
    expect(get(db, TypeUrl.Listener, 'inbound|db', Listener).filterChains[0]!.filters.map((f) => f.name)).toEqual([
      'envoy.filters.network.tcp_proxy',
    ]);
    expect(names(db, TypeUrl.RouteConfiguration)).toEqual([]);
  });

  it('leaves out the inbound listener of a service registered on a reserved sidecar port', () => {
    const set = buildProxyResources(
      twoInstances()
        .service('a', { port: 15000, dependencies: [{ service: 'b' }] })
        .model(),
      envoy('a'),
    );
    expect(names(set, TypeUrl.Listener)).toEqual(['outbound|http']);
    expect(names(set, TypeUrl.RouteConfiguration)).toEqual(['outbound|http']);
  });

  it('gives every sidecar HTTP connection manager a tracer, so a W3C traceparent is injected (nothing sampled, nothing exported), and echoes x-request-id', () => {
    const model = twoInstances().service('b', { port: 9000, mtls: 'permissive' }).model();
    const hcms = (['a', 'b'] as const).flatMap((service) =>
      [...buildProxyResources(model, envoy(service)).get(TypeUrl.Listener)!.values()].flatMap((resource) =>
        unpackAnyAs(Listener, resource.any).filterChains.map((chain) => {
          const config = chain.filters[0]!.configType;
          if (config?.$case !== 'typedConfig') throw new Error('no typed config');
          return { service, listener: resource.name, hcm: unpackAnyAs(HttpConnectionManager, config.value) };
        }),
      ),
    );
    // a's inbound and outbound listeners, b's mTLS and plaintext chains.
    expect(hcms.map(({ listener }) => listener)).toEqual(['inbound|a', 'outbound|http', 'inbound|b', 'inbound|b']);
    for (const { service, hcm } of hcms) {
      const provider = hcm.tracing?.provider;
      expect(provider?.name).toBe('envoy.tracers.opentelemetry');
      if (provider?.configType?.$case !== 'typedConfig') throw new Error('tracer without a typed config');
      const otel = unpackAnyAs(OpenTelemetryConfig, provider.configType.value);
      expect({ serviceName: otel.serviceName, grpcService: otel.grpcService, httpService: otel.httpService }).toEqual({
        serviceName: service,
        grpcService: undefined,
        httpService: undefined,
      });
      expect(hcm.tracing?.randomSampling?.value).toBe(0);
      // The request id goes back to the client too, on denials (ext_authz, RBAC) as on upstream answers.
      expect(hcm.alwaysSetRequestIdInResponse).toBe(true);
    }
  });

  it('sends spans to the OTLP collector when one is configured: a cluster for it and the sampling asked for', () => {
    const settings = {
      ...DEFAULT_TRANSLATOR_SETTINGS,
      tracing: { collector: { host: 'otel-collector.observability', port: 4317 }, samplingPercent: 5 },
    };
    const model = twoInstances().model(settings);
    const set = buildProxyResources(model, envoy('a'));
    const collector = get(set, TypeUrl.Cluster, 'trellis-otel-collector', Cluster);
    expect(JSON.stringify(collector.loadAssignment)).toContain('"address":"otel-collector.observability"');
    expect(JSON.stringify(collector.loadAssignment)).toContain('"portSpecifier":{"$case":"portValue","value":4317}');
    expect(JSON.stringify(collector.typedExtensionProtocolOptions)).toContain('HttpProtocolOptions');
    for (const name of ['inbound|a', 'outbound|http']) {
      const tracing = hcmOf(get(set, TypeUrl.Listener, name, Listener)).tracing!;
      expect(tracing.randomSampling?.value).toBe(5);
      if (tracing.provider?.configType?.$case !== 'typedConfig') throw new Error('tracer without a typed config');
      const otel = unpackAnyAs(OpenTelemetryConfig, tracing.provider.configType.value);
      expect(otel.grpcService?.targetSpecifier).toEqual({
        $case: 'envoyGrpc',
        value: expect.objectContaining({ clusterName: 'trellis-otel-collector' }),
      });
    }
    // Off by default: no collector cluster.
    expect(buildProxyResources(twoInstances().model(), envoy('a')).get(TypeUrl.Cluster)!.has('trellis-otel-collector')).toBe(false);
    // Proxyless clients get none either way.
    expect(buildProxyResources(model, proxyless('a')).get(TypeUrl.Cluster)!.has('trellis-otel-collector')).toBe(false);
  });

  it('gives proxyless clients and servers no tracer (grpc-js-xds has none; the SDK propagates traceparent)', () => {
    const model = twoInstances().model();
    const listeners = [
      ...buildProxyResources(model, proxyless('a')).get(TypeUrl.Listener)!.values(),
      ...buildProxyResources(model, proxyless('b')).get(TypeUrl.Listener)!.values(),
    ].map((resource) => unpackAnyAs(Listener, resource.any));
    expect(listeners.length).toBeGreaterThan(1);
    for (const listener of listeners) expect(hcmOf(listener).tracing).toBeUndefined();
  });
});

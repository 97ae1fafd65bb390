import { unpackAnyAs } from '@trellis/envoy-types';
import type { RouteAction } from '@trellis/envoy-types/envoy/config/route/v3/route_components';
import type { RouteConfiguration } from '@trellis/envoy-types/envoy/config/route/v3/route';
import { LocalRateLimit } from '@trellis/envoy-types/envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit';
import { ExtAuthzPerRoute } from '@trellis/envoy-types/envoy/extensions/filters/http/ext_authz/v3/ext_authz';
import type { TrafficPolicy } from '@trellis/mesh-schema';
import { dependencyPolicy, type DependencyModel, type MeshModel } from '../model';
import { MeshFixture } from '../model/mesh-fixture';
import { inboundRouteConfig, outboundRouteConfig, proxylessRouteConfig } from './routes';

function actionOf(routes: RouteConfiguration, vhost = 0): RouteAction {
  const action = routes.virtualHosts[vhost]!.routes[0]!.action;
  if (action?.$case !== 'route') throw new Error(`expected a route action, got ${action?.$case}`);
  return action.value;
}

const model = new MeshFixture()
  .service('b', {
    port: 9000,
    policy: { timeoutMs: 2500, retries: { attempts: 3, perTryTimeoutMs: 800, retryOn: ['5xx', 'unavailable', 'reset'] } },
  })
  .service('c', {
    protocol: 'http',
    port: 7000,
    trafficSplit: [
      { name: 'blue', labels: {}, weight: 75 },
      { name: 'green', labels: {}, weight: 25 },
    ],
  })
  .service('a', {
    dependencies: [
      { service: 'b' },
      { service: 'c', policy: { retries: { attempts: 0 }, rateLimit: { maxTokens: 3, tokensPerFill: 1, fillIntervalMs: 500 } } },
    ],
  })
  .model();
/** A dependency with its effective policy, as translation gives it to the route builders. */
function resolved(model: MeshModel, dep: DependencyModel): DependencyModel & { policy: TrafficPolicy } {
  return { ...dep, policy: dependencyPolicy(model.services.get(dep.service)!, dep) };
}

const a = model.services.get('a')!;
const deps = a.dependencies.map((dep) => ({ dep: resolved(model, dep), callee: model.services.get(dep.service)! }));

describe('outboundRouteConfig', () => {
  const routes = outboundRouteConfig(a, deps);

  it('carries timeout and retries of the effective policy', () => {
    const action = actionOf(routes, 0);
    expect(action.clusterSpecifier).toEqual({ $case: 'cluster', value: 'outbound|b' });
    expect(action.timeout).toMatchObject({ seconds: '2', nanos: 500_000_000 });
    expect(action.retryPolicy).toMatchObject({
      retryOn: '5xx,unavailable,reset',
      numRetries: 3,
      perTryTimeout: { seconds: '0', nanos: 800_000_000 },
    });
  });

  it('splits by weight, drops retries set to zero attempts, and rate-limits where the caller asked', () => {
    const action = actionOf(routes, 1);
    if (action.clusterSpecifier?.$case !== 'weightedClusters') throw new Error('expected weighted clusters');
    expect(action.clusterSpecifier.value.clusters.map((c) => [c.name, c.weight])).toEqual([
      ['outbound|c|blue', 75],
      ['outbound|c|green', 25],
    ]);
    expect(action.retryPolicy).toBeUndefined();
    const limit = unpackAnyAs(
      LocalRateLimit,
      routes.virtualHosts[1]!.routes[0]!.typedPerFilterConfig['envoy.filters.http.local_ratelimit']!,
    );
    expect(limit.tokenBucket).toMatchObject({ maxTokens: 3, tokensPerFill: 1, fillInterval: { seconds: '0', nanos: 500_000_000 } });
    expect(limit.filterEnforced?.defaultValue?.numerator).toBe(100);
  });

  it('answers undeclared hosts with 404 and without asking authz', () => {
    const last = routes.virtualHosts.at(-1)!;
    expect(last.domains).toEqual(['*']);
    expect(last.routes[0]!.action).toMatchObject({ $case: 'directResponse', value: { status: 404 } });
    expect(unpackAnyAs(ExtAuthzPerRoute, last.routes[0]!.typedPerFilterConfig['envoy.filters.http.ext_authz']!).override).toEqual({
      $case: 'disabled',
      value: true,
    });
  });
});

describe('proxylessRouteConfig', () => {
  it('uses max_stream_duration for the deadline and keeps only gRPC retry conditions', () => {
    const routes = proxylessRouteConfig(deps[0]!.dep, deps[0]!.callee);
    expect(routes.virtualHosts[0]!.domains).toEqual(['b']);
    const action = actionOf(routes);
    expect(action.timeout).toBeUndefined();
    expect(action.maxStreamDuration?.maxStreamDuration).toMatchObject({ seconds: '2', nanos: 500_000_000 });
    expect(action.retryPolicy).toMatchObject({ retryOn: 'unavailable', numRetries: 3 });
    expect(action.retryPolicy!.perTryTimeout).toBeUndefined();
  });

  it('retries UNAVAILABLE twice when the policy names no retries, and not at all when it sets zero attempts', () => {
    const plain = new MeshFixture()
      .service('b', { port: 9000 })
      .service('a', { dependencies: [{ service: 'b' }] })
      .model();
    const dep = resolved(plain, plain.services.get('a')!.dependencies[0]!);
    expect(actionOf(proxylessRouteConfig(dep, plain.services.get('b')!)).retryPolicy).toMatchObject({
      retryOn: 'unavailable',
      numRetries: 2,
    });
    expect(actionOf(proxylessRouteConfig(deps[1]!.dep, deps[1]!.callee)).retryPolicy).toBeUndefined();
    // Sidecars keep Envoy's own default (no retry policy unless one is declared).
    expect(
      actionOf(outboundRouteConfig(plain.services.get('a')!, [{ dep, callee: plain.services.get('b')! }])).retryPolicy,
    ).toBeUndefined();
  });
});

describe('inboundRouteConfig', () => {
  it('hands calls to the local app with the service timeout, with no authz context unless public', () => {
    const routes = inboundRouteConfig(model.services.get('b')!);
    expect(actionOf(routes)).toMatchObject({ clusterSpecifier: { $case: 'cluster', value: 'local-app' }, timeout: { seconds: '2' } });
    expect(routes.virtualHosts[0]!.routes[0]!.typedPerFilterConfig).toEqual({});
  });

  it('tells the app the verified caller, never a value the client sent', () => {
    const route = inboundRouteConfig(model.services.get('b')!).virtualHosts[0]!.routes[0]!;
    expect(route.requestHeadersToRemove).toEqual(['x-trellis-caller']);
    expect(route.requestHeadersToAdd).toEqual([
      expect.objectContaining({
        header: expect.objectContaining({
          key: 'x-trellis-caller',
          value: '%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:mesh_token:sub)%',
        }),
      }),
    ]);
  });
});

describe('ring_hash routes carry a hash policy', () => {
  const routeOf = (policy: TrafficPolicy, kind: 'envoy' | 'proxyless' = 'envoy') => {
    const model = new MeshFixture()
      .service('b', { protocol: 'grpc', policy })
      .service('a', { dependencies: [{ service: 'b' }] })
      .model();
    const dep = resolved(model, model.services.get('a')!.dependencies[0]!);
    const callee = model.services.get('b')!;
    const config = kind === 'envoy' ? outboundRouteConfig({ name: 'a' }, [{ dep, callee }]) : proxylessRouteConfig(dep, callee);
    const action = config.virtualHosts[0]!.routes[0]!.action;
    if (action?.$case !== 'route') throw new Error('not a route');
    return action.value.hashPolicy;
  };

  it('hashes on the header, cookie or source IP the policy names; the source IP when it names none', () => {
    expect(routeOf({ loadBalancing: 'ring_hash', hashOn: { header: 'x-user' } })).toMatchObject([
      { policySpecifier: { $case: 'header', value: { headerName: 'x-user' } } },
    ]);
    expect(routeOf({ loadBalancing: 'ring_hash', hashOn: { cookie: 'session' } })).toMatchObject([
      { policySpecifier: { $case: 'cookie', value: { name: 'session' } } },
    ]);
    expect(routeOf({ loadBalancing: 'ring_hash' })).toMatchObject([
      { policySpecifier: { $case: 'connectionProperties', value: { sourceIp: true } } },
    ]);
    expect(routeOf({ loadBalancing: 'round_robin', hashOn: { header: 'x-user' } })).toEqual([]);
  });

  it('gives proxyless clients only header hashing (what grpc-js-xds implements)', () => {
    expect(routeOf({ loadBalancing: 'ring_hash', hashOn: { header: 'x-user' } }, 'proxyless')).toMatchObject([
      { policySpecifier: { $case: 'header' } },
    ]);
    expect(routeOf({ loadBalancing: 'ring_hash' }, 'proxyless')).toEqual([]);
  });
});

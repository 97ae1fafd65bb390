import { packAny, TypeUrl, unpackAnyAs } from '@trellis/envoy-types';
import type { RetryPolicy, RouteAction } from '@trellis/envoy-types/envoy/config/route/v3/route_components';
import { RouteConfiguration } from '@trellis/envoy-types/envoy/config/route/v3/route';
import { LocalRateLimit } from '@trellis/envoy-types/envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit';
import { ExtAuthzPerRoute } from '@trellis/envoy-types/envoy/extensions/filters/http/ext_authz/v3/ext_authz';
import { PreviousHostsPredicate } from '@trellis/envoy-types/envoy/extensions/retry/host/previous_hosts/v3/previous_hosts';
import type { TrafficPolicy } from '@trellis/mesh-schema';
import { meshArbitrary, meshStateOf, propertyRuns } from '@trellis/mesh-schema/testing';
import fc from 'fast-check';
import { buildMeshModel, DEFAULT_TRANSLATOR_SETTINGS, dependencyPolicy, type DependencyModel, type MeshModel } from '../model';
import { MeshFixture } from '../model/mesh-fixture';
import { OUTBOUND_HTTP_NAME } from './names';
import { buildProxyResources } from './proxy-resources';
import {
  encodeInboundRouteConfig,
  encodeOutboundRouteConfig,
  inboundRouteConfig,
  outboundRouteConfig,
  proxylessRouteConfig,
  ROUTE_POLICY_FIELDS,
  type RouteDependency,
  type RoutePolicy,
  type RouteTarget,
} from './routes';

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
  });
});

describe('sidecar default retries', () => {
  const plain = new MeshFixture()
    .service('b', { port: 9000 })
    .service('g', { protocol: 'grpc', port: 9001 })
    .service('a', { dependencies: [{ service: 'b' }, { service: 'g' }] })
    .model();
  const plainA = plain.services.get('a')!;

  it("retry twice, with Envoy's default backoff, only where the request never reached the app, when the policy names no retries", () => {
    for (const dependency of plainA.dependencies) {
      const action = actionOf(
        outboundRouteConfig(plainA, [{ dep: resolved(plain, dependency), callee: plain.services.get(dependency.service)! }]),
      );
      expect(action.retryPolicy).toMatchObject({ retryOn: 'connect-failure,refused-stream,reset-before-request', numRetries: 2 });
      expect(action.retryPolicy!.retryBackOff).toBeUndefined();
      expect(action.retryPolicy!.perTryTimeout).toBeUndefined();
    }
  });

  it('emit a declared reset-before-request as is to sidecars, and leave it out for proxyless clients', () => {
    const model = new MeshFixture()
      .service('b', {
        protocol: 'grpc',
        port: 9000,
        policy: { retries: { attempts: 3, retryOn: ['reset-before-request', 'unavailable'] } },
      })
      .service('a', { dependencies: [{ service: 'b' }] })
      .model();
    const dep = resolved(model, model.services.get('a')!.dependencies[0]!);
    const callee = model.services.get('b')!;
    expect(actionOf(outboundRouteConfig({ name: 'a' }, [{ dep, callee }])).retryPolicy).toMatchObject({
      retryOn: 'reset-before-request,unavailable',
      numRetries: 3,
    });
    expect(actionOf(proxylessRouteConfig(dep, callee)).retryPolicy).toMatchObject({ retryOn: 'unavailable', numRetries: 3 });
  });

  it('give way to a declared policy, and to zero attempts (no retries at all)', () => {
    expect(actionOf(outboundRouteConfig(a, deps)).retryPolicy).toMatchObject({ retryOn: '5xx,unavailable,reset', numRetries: 3 });
    expect(actionOf(outboundRouteConfig(a, deps), 1).retryPolicy).toBeUndefined();
  });
});

describe('sidecar retries move to another host', () => {
  /** The retry policy of a's route to b, for b's policy, as a sidecar or a proxyless client gets it. */
  const retryOf = (policy: TrafficPolicy, kind: 'envoy' | 'proxyless' = 'envoy') => {
    const model = new MeshFixture()
      .service('b', { protocol: 'grpc', policy })
      .service('a', { dependencies: [{ service: 'b' }] })
      .model();
    const dep = resolved(model, model.services.get('a')!.dependencies[0]!);
    const callee = model.services.get('b')!;
    return actionOf(kind === 'envoy' ? outboundRouteConfig({ name: 'a' }, [{ dep, callee }]) : proxylessRouteConfig(dep, callee))
      .retryPolicy;
  };
  const previousHosts = (retry: RetryPolicy | undefined) =>
    retry?.retryHostPredicate.map((p) => ({
      name: p.name,
      typeUrl: p.configType?.value.typeUrl,
      config: p.configType && unpackAnyAs(PreviousHostsPredicate, p.configType.value),
      maxAttempts: retry.hostSelectionRetryMaxAttempts,
    }));
  const PREVIOUS_HOSTS = [
    {
      name: 'envoy.retry_host_predicates.previous_hosts',
      typeUrl: 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
      config: PreviousHostsPredicate.fromPartial({}),
      maxAttempts: '5',
    },
  ];

  it('skipping hosts already tried (re-picking up to 5 times), by default and with a declared policy', () => {
    expect(previousHosts(retryOf({}))).toEqual(PREVIOUS_HOSTS);
    expect(previousHosts(retryOf({ retries: { attempts: 3, retryOn: ['5xx'] } }))).toEqual(PREVIOUS_HOSTS);
    expect(retryOf({ retries: { attempts: 0, retryOn: ['5xx'] } })).toBeUndefined();
  });

  it('except under ring_hash, whose retries keep to the hashed host', () => {
    const retry = retryOf({ loadBalancing: 'ring_hash', hashOn: { header: 'x-user' } });
    expect(retry).toMatchObject({ retryOn: 'connect-failure,refused-stream,reset-before-request', numRetries: 2 });
    expect(retry!.retryHostPredicate).toEqual([]);
    expect(retry!.hostSelectionRetryMaxAttempts).toBe('0');
  });

  it('and proxyless clients, which ignore host predicates (gRFC A44), get none', () => {
    for (const policy of [{}, { retries: { attempts: 3, retryOn: ['unavailable' as const] } }]) {
      const retry = retryOf(policy, 'proxyless');
      expect(retry).toMatchObject({ retryOn: 'unavailable' });
      expect(retry!.retryHostPredicate).toEqual([]);
      expect(retry!.hostSelectionRetryMaxAttempts).toBe('0');
    }
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

// The fast path (written into a writer around constant bytes) against the reference (the whole
// RouteConfiguration built and encoded by the generated code).
describe('encodeOutboundRouteConfig', () => {
  const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

  /** A caller's HTTP dependencies as translation projects them for its routes (proxy-resources.ts). */
  function routeDeps(model: MeshModel, service: string): Array<{ dep: RouteDependency; callee: RouteTarget }> {
    return model.services
      .get(service)!
      .dependencies.map((dep) => ({ dep, callee: model.services.get(dep.service)! }))
      .filter(({ callee }) => callee.protocol !== 'tcp')
      .map(({ dep, callee }) => {
        const policy = dependencyPolicy(callee, dep);
        const projected: RoutePolicy = {};
        for (const field of ROUTE_POLICY_FIELDS) if (policy[field] !== undefined) Object.assign(projected, { [field]: policy[field] });
        const rateLimit = dep.override?.rateLimit;
        return {
          dep: { policy: projected, ...(rateLimit !== undefined ? { override: { rateLimit } } : {}) },
          callee: { name: callee.name, port: callee.port, upstreams: callee.upstreams.map(({ subset, weight }) => ({ subset, weight })) },
        };
      });
  }

  it('encodes byte for byte what the generated encoder gives for the routes of generated meshes, from any caller name', () => {
    let compared = 0;
    fc.assert(
      fc.property(meshArbitrary, fc.string({ maxLength: 30 }), (mesh, otherName) => {
        const generated = buildMeshModel(meshStateOf(mesh), DEFAULT_TRANSLATOR_SETTINGS);
        for (const service of generated.services.keys()) {
          const deps = routeDeps(generated, service);
          for (const source of [{ name: service }, { name: otherName }]) {
            const reference = packAny(RouteConfiguration, outboundRouteConfig(source, deps));
            // Twice: the second time every route action comes from what the first remembered.
            for (let i = 0; i < 2; i++) {
              const fast = encodeOutboundRouteConfig(source, deps);
              expect(fast.typeUrl).toBe(reference.typeUrl);
              expect(hex(fast.value)).toBe(hex(reference.value));
            }
          }
          // What a sidecar is sent.
          const sent = buildProxyResources(generated, { service, kind: 'envoy' }).get(TypeUrl.RouteConfiguration)!.get(OUTBOUND_HTTP_NAME);
          if (deps.length > 0) {
            expect(hex(sent!.any.value)).toBe(hex(packAny(RouteConfiguration, outboundRouteConfig({ name: service }, deps)).value));
            compared++;
          } else expect(sent).toBeUndefined();
        }
      }),
      { numRuns: propertyRuns(100) },
    );
    expect(compared).toBeGreaterThan(50);
  });

  it("writes a one-cluster route's callee name before the action its policy encoded once, for any callees sharing a policy", () => {
    const policyArbitrary: fc.Arbitrary<RoutePolicy> = fc.record(
      {
        timeoutMs: fc.integer({ min: 0, max: 120_000 }),
        retries: fc.record(
          {
            attempts: fc.integer({ min: 0, max: 5 }),
            perTryTimeoutMs: fc.integer({ min: 1, max: 10_000 }),
            retryOn: fc.subarray(['5xx', 'reset', 'connect-failure', 'unavailable', 'cancelled'], { minLength: 1 }),
          },
          { requiredKeys: ['attempts', 'retryOn'] },
        ),
        loadBalancing: fc.constantFrom('round_robin' as const, 'ring_hash' as const),
        hashOn: fc.oneof(
          fc.record({ header: fc.string({ minLength: 1 }) }),
          fc.record({ cookie: fc.string({ minLength: 1 }) }),
          fc.constant({ sourceIp: true as const }),
        ),
      },
      { requiredKeys: [] },
    );
    const calleeArbitrary: fc.Arbitrary<RouteTarget> = fc.record({
      name: fc.string({ unit: 'grapheme', maxLength: 80 }),
      port: fc.integer({ min: 1, max: 65535 }),
      upstreams: fc.oneof(
        fc.constant([{ subset: undefined, weight: 100 }]),
        fc.constant([
          { subset: 'blue', weight: 60 },
          { subset: 'green', weight: 40 },
        ]),
      ),
    });
    fc.assert(
      fc.property(
        fc.array(policyArbitrary, { minLength: 1, maxLength: 3 }),
        fc.array(fc.tuple(calleeArbitrary, fc.nat()), { minLength: 1, maxLength: 6 }),
        fc.string({ maxLength: 30 }),
        (policies, callees, source) => {
          // Callees share the policy objects (as every caller of a callee without an override shares its projection).
          const deps = callees.map(([callee, i]) => ({ dep: { policy: policies[i % policies.length]! }, callee }));
          const reference = packAny(RouteConfiguration, outboundRouteConfig({ name: source }, deps));
          expect(hex(encodeOutboundRouteConfig({ name: source }, deps).value)).toBe(hex(reference.value));
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });

  it('the model fixture: a rate limit override and weighted subsets', () => {
    const deps = routeDeps(model, 'a');
    expect(hex(encodeOutboundRouteConfig({ name: 'a' }, deps).value)).toBe(
      hex(packAny(RouteConfiguration, outboundRouteConfig({ name: 'a' }, deps)).value),
    );
    expect(deps[1]!.dep.override?.rateLimit).toBeDefined();
    expect(deps[1]!.callee.upstreams).toHaveLength(2);
  });
});

describe('encodeInboundRouteConfig', () => {
  const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

  it('encodes byte for byte what the generated encoder gives for every service of generated meshes, under any name', () => {
    let compared = 0;
    fc.assert(
      fc.property(meshArbitrary, fc.string({ maxLength: 30 }), (mesh, otherName) => {
        const generated = buildMeshModel(meshStateOf(mesh), DEFAULT_TRANSLATOR_SETTINGS);
        for (const service of generated.services.values()) {
          for (const s of [service, { ...service, name: otherName }]) {
            const reference = packAny(RouteConfiguration, inboundRouteConfig(s));
            const fast = encodeInboundRouteConfig(s);
            expect(fast.typeUrl).toBe(reference.typeUrl);
            expect(hex(fast.value)).toBe(hex(reference.value));
          }
          // What a sidecar is sent.
          const sent = buildProxyResources(generated, { service: service.name, kind: 'envoy' }).get(TypeUrl.RouteConfiguration)!;
          const own = sent.get(`inbound|${service.name}`);
          if (own) {
            expect(hex(own.any.value)).toBe(hex(packAny(RouteConfiguration, inboundRouteConfig(service)).value));
            compared++;
          }
        }
      }),
      { numRuns: propertyRuns(100) },
    );
    expect(compared).toBeGreaterThan(50);
  });
});

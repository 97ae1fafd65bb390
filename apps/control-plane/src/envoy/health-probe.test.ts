// Replays what Envoy's active health checker sends to a callee's sidecar port
// through the inbound listener and routes the translator emits, following
// Envoy's order: route selection, jwt_authn (first matching rule), ext_authz
// (unless disabled on the route or the token verified), RBAC (ALLOW: any policy
// matches), router. No Envoy binary here (envoy-docker.test.ts runs the real one
// where Docker is); the evaluator reads the decoded protos and throws on any
// matcher it does not implement, so it can only fail closed, never pass by omission.
import { TypeUrl, unpackAnyAs } from '@trellis/envoy-types';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import type { Permission, Principal } from '@trellis/envoy-types/envoy/config/rbac/v3/rbac';
import { RouteConfiguration } from '@trellis/envoy-types/envoy/config/route/v3/route';
import type { HeaderMatcher, Route, RouteMatch } from '@trellis/envoy-types/envoy/config/route/v3/route_components';
import { ExtAuthzPerRoute } from '@trellis/envoy-types/envoy/extensions/filters/http/ext_authz/v3/ext_authz';
import { JwtAuthentication } from '@trellis/envoy-types/envoy/extensions/filters/http/jwt_authn/v3/config';
import { RBAC } from '@trellis/envoy-types/envoy/extensions/filters/http/rbac/v3/rbac';
import {
  HttpConnectionManager,
  type HttpFilter,
} from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import type { ServiceSpecInput } from '@trellis/mesh-schema';
import { MeshFixture } from '../model/mesh-fixture';
import { GRPC_HEALTH_CHECK_PATH } from './health-probe';
import { FILTER } from './names';
import { buildProxyResources } from './proxy-resources';

interface Request {
  method: string;
  path: string;
  headers: Record<string, string>;
}
type Outcome = { status: number; by: string; route?: string };

/** An HTTP health check as Envoy's HttpHealthCheckerImpl sends it (host: the cluster name). */
const envoyHttpProbe = (path: string): Request => ({
  method: 'GET',
  path,
  headers: { ':authority': 'outbound|b', 'user-agent': 'Envoy/HC', ':scheme': 'http' },
});
/** A gRPC health check as GrpcHealthCheckerImpl sends it. */
const envoyGrpcProbe = (): Request => ({
  method: 'POST',
  path: GRPC_HEALTH_CHECK_PATH,
  headers: { ':authority': 'outbound|b', 'content-type': 'application/grpc', te: 'trailers' },
});

function inboundOf(spec: Partial<ServiceSpecInput>) {
  const model = new MeshFixture()
    .service('b', spec)
    .service('a', { dependencies: [{ service: 'b' }] })
    .key('k1')
    .model();
  const set = buildProxyResources(model, { service: 'b', kind: 'envoy' });
  const listener = unpackAnyAs(Listener, set.get(TypeUrl.Listener)!.get('inbound|b')!.any);
  const filter = listener.filterChains[0]!.filters[0]!;
  if (filter.configType?.$case !== 'typedConfig') throw new Error('no HCM');
  const hcm = unpackAnyAs(HttpConnectionManager, filter.configType.value);
  const routes = unpackAnyAs(RouteConfiguration, set.get(TypeUrl.RouteConfiguration)!.get('inbound|b')!.any);
  return { hcm, routes };
}

/** Envoy's inbound decision for a request that carries no mesh token. */
function replay({ hcm, routes }: ReturnType<typeof inboundOf>, req: Request): Outcome {
  const vhost = routes.virtualHosts[0]!;
  const route = vhost.routes.find((r) => routeMatches(r.match!, req));
  if (!route) return { status: 404, by: 'no route' };
  for (const filter of hcm.httpFilters) {
    const config = typedConfig(filter);
    switch (filter.name) {
      case FILTER.jwtAuthn: {
        const jwt = unpackAnyAs(JwtAuthentication, config);
        const rule = jwt.rules.find((r) => routeMatches(r.match!, req));
        if (!rule || !rule.requirementType) break; // no requirement: nothing verified, nothing demanded
        if (rule.requirementType.$case !== 'requires') throw new Error('unimplemented jwt requirement');
        const requirement = rule.requirementType.value.requiresType;
        if (requirement?.$case === 'providerName') return { status: 401, by: 'jwt_authn', route: route.name };
        if (requirement?.$case !== 'requiresAny') throw new Error(`unimplemented requirement ${requirement?.$case}`);
        // requires_any with allow_missing_or_failed: a missing token passes unverified.
        break;
      }
      case FILTER.extAuthz: {
        const perRoute = route.typedPerFilterConfig[FILTER.extAuthz];
        const disabled = perRoute && unpackAnyAs(ExtAuthzPerRoute, perRoute).override?.$case === 'disabled';
        // No verified mesh token, so filter_enabled_metadata (inverted) enables it; a probe has no Access JWT.
        if (!disabled) return { status: 403, by: 'ext_authz (edge check without an Access token)', route: route.name };
        break;
      }
      case FILTER.rbac: {
        const policies = Object.values(unpackAnyAs(RBAC, config).rules!.policies);
        const allowed = policies.some((p) => p.permissions.some((x) => permits(x, req)) && p.principals.some((x) => principalIs(x, req)));
        if (!allowed) return { status: 403, by: 'rbac', route: route.name };
        break;
      }
      case FILTER.localRateLimit:
        break;
      case FILTER.router: {
        if (route.action?.$case !== 'route' || route.action.value.clusterSpecifier?.$case !== 'cluster') throw new Error('no cluster');
        return { status: 200, by: `router → ${route.action.value.clusterSpecifier.value}`, route: route.name };
      }
      default:
        throw new Error(`unimplemented filter ${filter.name}`);
    }
  }
  throw new Error('no router filter');
}

function typedConfig(filter: HttpFilter) {
  if (filter.configType?.$case !== 'typedConfig') throw new Error(`${filter.name} has no typed config`);
  return filter.configType.value;
}

function routeMatches(match: RouteMatch, req: Request): boolean {
  const path = req.path.split('?', 1)[0]!;
  const spec = match.pathSpecifier;
  const pathOk =
    spec?.$case === 'prefix' ? path.startsWith(spec.value) : spec?.$case === 'path' ? path === spec.value : unimplemented(spec);
  return pathOk && match.headers.every((h) => headerMatches(h, req));
}

function headerMatches(h: HeaderMatcher, req: Request): boolean {
  const value = h.name === ':method' ? req.method : h.name === ':path' ? req.path : req.headers[h.name];
  const spec = h.headerMatchSpecifier;
  if (spec?.$case !== 'stringMatch' || spec.value.matchPattern?.$case !== 'exact') return unimplemented(spec);
  return value === spec.value.matchPattern.value;
}

function permits(p: Permission, req: Request): boolean {
  const rule = p.rule;
  switch (rule?.$case) {
    case 'any':
      return rule.value;
    case 'andRules':
      return rule.value.rules.every((r) => permits(r, req));
    case 'header':
      return headerMatches(rule.value, req);
    case 'urlPath': {
      const m = rule.value.rule;
      if (m?.$case !== 'path' || m.value.matchPattern?.$case !== 'exact') return unimplemented(m);
      return req.path.split('?', 1)[0] === m.value.matchPattern.value;
    }
    default:
      return unimplemented(rule);
  }
}

function principalIs(p: Principal, req: Request): boolean {
  const id = p.identifier;
  switch (id?.$case) {
    case 'any':
      return id.value;
    case 'metadata':
      return false; // mesh-token metadata: a probe carries no token, so nothing was verified
    case 'notId':
      return !principalIs(id.value, req);
    default:
      return unimplemented(id);
  }
}

function unimplemented(what: unknown): never {
  throw new Error(`the replay does not implement ${JSON.stringify(what)}`);
}

const check = { path: '/healthz', intervalMs: 1000 };

describe("Envoy's active health checks through the callee's sidecar", () => {
  it('an HTTP probe gets the app (200); every other request without a token still gets 401', () => {
    const inbound = inboundOf({ protocol: 'http', policy: { healthCheck: check } });
    expect(replay(inbound, envoyHttpProbe('/healthz'))).toEqual({ status: 200, by: 'router → local-app', route: 'b-health' });
    expect(replay(inbound, envoyHttpProbe('/healthz?verbose=1'))).toMatchObject({ status: 200 });
    expect(replay(inbound, envoyHttpProbe('/'))).toMatchObject({ status: 401, by: 'jwt_authn' });
    expect(replay(inbound, envoyHttpProbe('/healthz/extra'))).toMatchObject({ status: 401 });
    expect(replay(inbound, envoyHttpProbe('/healthzz'))).toMatchObject({ status: 401 });
    expect(replay(inbound, { ...envoyHttpProbe('/healthz'), method: 'POST' })).toMatchObject({ status: 401 });
    expect(replay(inbound, { ...envoyHttpProbe('/healthz'), method: 'DELETE' })).toMatchObject({ status: 401 });
  });

  it('the probe route hands the app no caller identity a client could forge', () => {
    const { routes } = inboundOf({ protocol: 'http', policy: { healthCheck: check } });
    const probeRoute: Route = routes.virtualHosts[0]!.routes[0]!;
    expect(probeRoute.requestHeadersToRemove).toEqual(['x-trellis-caller']);
    expect(probeRoute.requestHeadersToAdd).toEqual([]);
  });

  it('a gRPC probe (grpc.health.v1 Check) passes on a grpc service, and only that method', () => {
    const inbound = inboundOf({ protocol: 'grpc', policy: { healthCheck: { intervalMs: 1000 } } });
    expect(replay(inbound, envoyGrpcProbe())).toMatchObject({ status: 200 });
    expect(replay(inbound, { ...envoyGrpcProbe(), path: '/grpc.health.v1.Health/Watch' })).toMatchObject({ status: 401 });
    expect(replay(inbound, { ...envoyGrpcProbe(), path: '/shop.Orders/Get' })).toMatchObject({ status: 401 });
  });

  it('on a public service the probe skips the edge check, other token-less requests still get it', () => {
    const inbound = inboundOf({ protocol: 'http', policy: { healthCheck: check }, ingress: { host: 'b.example.com' } });
    expect(replay(inbound, envoyHttpProbe('/healthz'))).toMatchObject({ status: 200 });
    expect(replay(inbound, envoyHttpProbe('/admin'))).toMatchObject({ status: 403, by: expect.stringMatching(/^ext_authz/) });
  });

  it('opens nothing when the service has no HTTP or gRPC health check of its own', () => {
    for (const spec of [{ protocol: 'http' as const }, { protocol: 'http' as const, policy: { healthCheck: { intervalMs: 1000 } } }]) {
      const inbound = inboundOf(spec);
      expect(inbound.routes.virtualHosts[0]!.routes).toHaveLength(1);
      expect(replay(inbound, envoyHttpProbe('/healthz'))).toMatchObject({ status: 401 });
    }
  });

  it("a caller's override of the health-check path opens nothing at the callee", () => {
    const model = new MeshFixture()
      .service('b', { protocol: 'http' })
      .service('a', { dependencies: [{ service: 'b', policy: { healthCheck: { path: '/admin', intervalMs: 1000 } } }] })
      .key('k1')
      .model();
    const set = buildProxyResources(model, { service: 'b', kind: 'envoy' });
    const routes = unpackAnyAs(RouteConfiguration, set.get(TypeUrl.RouteConfiguration)!.get('inbound|b')!.any);
    expect(routes.virtualHosts[0]!.routes.map((r) => r.name)).toEqual(['b']);
  });
});

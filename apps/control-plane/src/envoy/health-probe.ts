// Active health checks reach the callee's sidecar port like any caller, but
// carry no mesh token. The callee's inbound side lets exactly the request its
// own policy's health check sends through without one — that path, that
// method, nothing else — so hosts do not go unhealthy on a 401 and callers'
// Envoys never balance in panic mode.
import type { Protocol, TrafficPolicy } from '@trellis/mesh-schema';

/** The request Envoy's health checker sends, as the inbound filters must recognise it. */
export interface HealthProbe {
  /** Exact path, compared after the query string is removed (as RouteMatch `path` and RBAC `url_path` do). */
  path: string;
  method: 'GET' | 'POST';
}

/** grpc.health.v1's Check, the path Envoy's gRPC health checker calls (always POST, as every gRPC call). */
export const GRPC_HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';

/**
 * What the service's OWN policy health-checks with (never a caller's override:
 * only the callee's team decides what its sidecar opens). HTTP checks send GET
 * to the path; gRPC checks without a path call grpc.health.v1; TCP checks and
 * TCP services need nothing (a connect is answered by the listener itself).
 */
export function healthProbeOf(service: { protocol: Protocol; policy: TrafficPolicy }): HealthProbe | undefined {
  const check = service.policy.healthCheck;
  if (!check || service.protocol === 'tcp') return undefined;
  if (check.path !== undefined) return { path: check.path, method: 'GET' };
  return service.protocol === 'grpc' ? { path: GRPC_HEALTH_CHECK_PATH, method: 'POST' } : undefined;
}

/** RouteMatch (routes, jwt_authn rules) for exactly the probe. */
export function probeRouteMatch(probe: HealthProbe) {
  return {
    pathSpecifier: { $case: 'path' as const, value: probe.path },
    headers: [
      {
        name: ':method',
        headerMatchSpecifier: {
          $case: 'stringMatch' as const,
          value: { matchPattern: { $case: 'exact' as const, value: probe.method }, ignoreCase: false },
        },
      },
    ],
  };
}

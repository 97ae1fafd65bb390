// The gRPC side: envoy.service.auth.v3.Authorization and the standard gRPC
// health service (for Kubernetes gRPC probes and Envoy health checks).
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { AuthorizationService, type AuthorizationServer } from '@trellis/envoy-types/envoy/service/auth/v3/external_auth';
import { HealthImplementation } from 'grpc-health-check';
import type { CheckService } from '../check/check-service';

export const AUTHORIZATION_SERVICE_NAME = 'envoy.service.auth.v3.Authorization';

export interface AuthzGrpcServer {
  server: Server;
  health: HealthImplementation;
  port: number;
}

export async function startGrpcServer(checks: CheckService, host: string, port: number): Promise<AuthzGrpcServer> {
  const server = new Server({
    // Envoy holds long-lived connections; keep them alive through idle NATs and notice dead peers.
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.max_receive_message_length': 1024 * 1024,
  });
  const implementation: AuthorizationServer = {
    check: (call, callback) => {
      // check() never rejects: every failure is already a denial.
      void checks.check(call.request).then((response) => callback(null, response));
    },
  };
  server.addService(AuthorizationService, implementation);
  const health = new HealthImplementation({ '': 'NOT_SERVING', [AUTHORIZATION_SERVICE_NAME]: 'NOT_SERVING' });
  health.addToServer(server);
  const boundPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  return { server, health, port: boundPort };
}

/** Stops accepting calls, lets in-flight ones finish for up to `graceMs`, then cuts the rest. */
export function stopGrpcServer(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

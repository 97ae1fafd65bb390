// The gRPC side of every app that has one: bind, a health service that follows
// readiness, graceful stop.
import { ServerCredentials, type Server } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Health } from '../health';

/** Binds `server` to `host:port` (IPv6 literals allowed); resolves with the bound port. */
export function bindGrpcServer(
  server: Server,
  host: string,
  port: number,
  credentials: ServerCredentials = ServerCredentials.createInsecure(),
): Promise<number> {
  const address = `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
  return new Promise((resolve, reject) => server.bindAsync(address, credentials, (err, bound) => (err ? reject(err) : resolve(bound))));
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

/**
 * The standard grpc.health.v1 service on `server`, answering for the whole server
 * ('') and each of `services`: SERVING exactly while `health` is ready, so probes
 * and Envoy health checks see what /readyz says, and NOT_SERVING from the moment
 * shutdown begins. Driven by readiness transitions, not polled.
 */
export function serveGrpcHealth(server: Server, health: Health, services: readonly string[]): HealthImplementation {
  const names = ['', ...services];
  const grpcHealth = new HealthImplementation(Object.fromEntries(names.map((name) => [name, 'NOT_SERVING' as const])));
  grpcHealth.addToServer(server);
  const apply = (ready: boolean) => {
    for (const name of names) grpcHealth.setStatus(name, ready ? 'SERVING' : 'NOT_SERVING');
  };
  health.onChange(apply);
  apply(health.isReady);
  return grpcHealth;
}

// The app's local health check, as the agent runs it before and while the instance
// is registered: an HTTP GET (2xx/3xx passes), the standard gRPC health protocol
// (grpc.health.v1.Health/Check answering SERVING), or a TCP connect.
import { connect } from 'node:net';
import { credentials, makeGenericClientConstructor, type Client } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

export type HealthCheckSpec =
  | { kind: 'http'; url: string }
  | { kind: 'grpc'; address: string; service: string }
  | { kind: 'tcp'; host: string; port: number }
  /** No check: the instance counts as healthy while the agent runs. */
  | { kind: 'none' };

export type ProbeResult = { healthy: true } | { healthy: false; reason: string };

export interface HealthProbe {
  check(timeoutMs: number): Promise<ProbeResult>;
  close(): void;
}

/**
 * `http://host:port/path` · `grpc://host:port[/service]` · `tcp://host:port` · `none`.
 * Throws naming what is wrong, for a flag or variable error message.
 */
export function parseHealthCheck(value: string): HealthCheckSpec {
  if (value === 'none') return { kind: 'none' };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`"${value}" is not a health check: use http://host:port/path, grpc://host:port[/service], tcp://host:port or none`);
  }
  const port = Number(url.port);
  switch (url.protocol) {
    case 'http:':
    case 'https:':
      return { kind: 'http', url: url.toString() };
    case 'grpc:':
      if (!port) throw new Error(`grpc health check "${value}" needs a port`);
      return { kind: 'grpc', address: `${url.hostname}:${port}`, service: decodeURIComponent(url.pathname.replace(/^\//, '')) };
    case 'tcp:':
      if (!port) throw new Error(`tcp health check "${value}" needs a port`);
      return { kind: 'tcp', host: url.hostname.replace(/^\[|\]$/g, ''), port };
    default:
      throw new Error(`health check "${value}": unsupported scheme ${url.protocol} (http, https, grpc, tcp)`);
  }
}

export function createHealthProbe(spec: HealthCheckSpec): HealthProbe {
  switch (spec.kind) {
    case 'none':
      return { check: async () => ({ healthy: true }), close: () => undefined };
    case 'http':
      return { check: (timeoutMs) => httpCheck(spec.url, timeoutMs), close: () => undefined };
    case 'tcp':
      return { check: (timeoutMs) => tcpCheck(spec.host, spec.port, timeoutMs), close: () => undefined };
    case 'grpc':
      return grpcProbe(spec.address, spec.service);
  }
}

async function httpCheck(url: string, timeoutMs: number): Promise<ProbeResult> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    await res.body?.cancel();
    return res.status >= 200 && res.status < 400 ? { healthy: true } : { healthy: false, reason: `GET ${url} answered ${res.status}` };
  } catch (err) {
    return { healthy: false, reason: `GET ${url}: ${describe(err)}` };
  }
}

function tcpCheck(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    const done = (result: ProbeResult) => {
      socket.destroy();
      resolve(result);
    };
    socket.once('connect', () => done({ healthy: true }));
    socket.once('timeout', () => done({ healthy: false, reason: `connect ${host}:${port}: timed out` }));
    socket.once('error', (err) => done({ healthy: false, reason: `connect ${host}:${port}: ${err.message}` }));
  });
}

type HealthClient = Client & {
  Check(
    request: { service: string },
    options: { deadline: number },
    callback: (err: Error | null, response?: { status: string }) => void,
  ): void;
};

function grpcProbe(address: string, service: string): HealthProbe {
  const Health = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');
  // One channel for every check: it reconnects by itself when the app (re)starts, and
  // within a second or two, not after grpc-js's default backoff of up to two minutes.
  const client = new Health(address, credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 500,
    'grpc.max_reconnect_backoff_ms': 2_000,
  }) as unknown as HealthClient;
  return {
    check: (timeoutMs) =>
      new Promise((resolve) =>
        client.Check({ service }, { deadline: Date.now() + timeoutMs }, (err, response) => {
          if (err) return resolve({ healthy: false, reason: `grpc health ${address}: ${err.message}` });
          resolve(
            response?.status === 'SERVING'
              ? { healthy: true }
              : { healthy: false, reason: `grpc health ${address}${service ? ` (${service})` : ''}: ${response?.status ?? 'no status'}` },
          );
        }),
      ),
    close: () => client.close(),
  };
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return cause?.code ?? cause?.message ?? err.message;
  }
  return String(err);
}

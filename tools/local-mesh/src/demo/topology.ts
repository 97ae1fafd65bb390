// The demo topology: the classic front → service-a → service-b, service-c.
export interface DemoService {
  name: string;
  team: string;
  dependencies: string[];
  /** Instances to run; each gets its own process and port. */
  instances: number;
  /** The entry point takes traffic from outside the mesh (the edge), without a mesh token. */
  public?: boolean;
}

export const DEMO_TOPOLOGY: DemoService[] = [
  { name: 'front', team: 'web', dependencies: ['service-a'], instances: 1, public: true },
  { name: 'service-a', team: 'payments', dependencies: ['service-b', 'service-c'], instances: 1 },
  { name: 'service-b', team: 'payments', dependencies: [], instances: 2 },
  { name: 'service-c', team: 'search', dependencies: [], instances: 1 },
];

/**
 * The port a demo service declares. Proxyless clients dial the registered instances'
 * own ports (every demo instance shares this host, so each binds its own); the
 * service port is what a sidecar would listen on.
 */
export const DEMO_SERVICE_PORT = 50051;

/**
 * The mTLS mode of a demo service: with workload identity on, `strict` for every service but the
 * entry point, which the edge (outside the mesh) reaches in plaintext.
 */
export function demoMtlsMode(service: DemoService, mtls: boolean): 'off' | 'strict' {
  return mtls && !service.public ? 'strict' : 'off';
}

/** The ServiceSpec the local mesh registers for a demo service (PUT /api/v1/services/{name}). */
export function demoServiceSpec(service: DemoService, port = DEMO_SERVICE_PORT, mtls = false) {
  return {
    name: service.name,
    team: service.team,
    description: `demo: ${service.dependencies.length ? `calls ${service.dependencies.join(', ')}` : 'a leaf service'}`,
    protocol: 'grpc',
    port,
    dependencies: service.dependencies.map((name) => ({ service: name })),
    // 4 s leaves a retry time after the SDK's keepalive (1 s) drops a connection that a
    // busy host answered late; with 2 s, one slow ping on a loaded laptop failed a call.
    policy: { timeoutMs: 4_000, retries: { attempts: 2, retryOn: ['unavailable'] } },
    ...(demoMtlsMode(service, mtls) !== 'off' ? { mtls: demoMtlsMode(service, mtls) } : {}),
  };
}

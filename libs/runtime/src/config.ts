// Configuration comes from TRELLIS_* environment variables, validated with zod
// at start. A bad value stops the process with a message naming the variable.
import { z } from 'zod';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses `env` with a schema whose keys are the variable names (e.g. `TRELLIS_HTTP_PORT`). */
export function loadConfig<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const relevant: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') relevant[key] = value;
  }
  const result = schema.safeParse(relevant);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((issue) => `${issue.path.join('.') || '(config)'}: ${issue.message}`));
  }
  return result.data;
}

/** Field helpers for env values (all strings). */
export const env = {
  port: (defaultPort: number) => z.coerce.number().int().min(0).max(65535).default(defaultPort),
  int: (defaultValue: number, min = 0, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max).default(defaultValue),
  bool: (defaultValue: boolean) =>
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no'])
      .default(defaultValue ? 'true' : 'false')
      .transform((v) => v === 'true' || v === '1' || v === 'yes'),
  list: (defaultValue: string) =>
    z
      .string()
      .default(defaultValue)
      .transform((v) =>
        v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      ),
  host: (defaultValue: string) => z.string().min(1).default(defaultValue),
  logLevel: () => z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
};

/**
 * Limits of every app's HTTP listener (spread into its schema): how long a client may
 * take to send a request's headers, and the whole request. A slow-loris socket that
 * trickles headers is answered 408 and closed after the first.
 */
export const httpLimitsEnv = {
  TRELLIS_HTTP_HEADERS_TIMEOUT_MS: env.int(10_000, 1_000, 120_000),
  TRELLIS_HTTP_REQUEST_TIMEOUT_MS: env.int(30_000, 1_000, 600_000),
};

/**
 * Limits of every app's TLS listener (spread into its schema): how long a connection may take
 * over its TLS handshake and, on a gRPC port, to send its HTTP/2 preface after it (both absolute,
 * from accept and from the handshake's end), and how many connections may be that far at once
 * (more are closed at accept). See tls-guard.ts and docs/security.md.
 */
export const tlsLimitsEnv = {
  TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS: env.int(10_000, 1_000, 120_000),
  TRELLIS_HTTP2_PREFACE_TIMEOUT_MS: env.int(10_000, 1_000, 120_000),
  TRELLIS_TLS_MAX_PENDING_CONNECTIONS: env.int(1_000, 1, 1_000_000),
};

/** Five minutes: a silent client is let go soon, a client between bursts of calls rarely reconnects. */
export const DEFAULT_GRPC_MAX_CONNECTION_IDLE_MS = 300_000;
/** As istiod's: time for a response in flight to arrive, short enough that the client soon moves. */
export const DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_MS = 10_000;

/**
 * listen(2)'s backlog of a gRPC port: room for every proxy of a cell reconnecting at once (after a restart,
 * within its backoff) while the process is busy serving the first ones. Node's own 511 overflows at a few
 * thousand; the kernel caps the value at net.core.somaxconn (4096 by default since Linux 5.4).
 */
export const DEFAULT_GRPC_LISTEN_BACKLOG = 4096;

/** A limit in milliseconds that 0 turns off; otherwise at least a second (less would close connections between calls). */
const limitMsOrOff = (defaultMs: number, maxMs: number) =>
  env.int(defaultMs, 0, maxMs).refine((ms) => ms === 0 || ms >= 1_000, 'must be 0 (no limit) or at least 1000');

/**
 * Connection management of an app's gRPC server (gRFC A9; spread into its schema with the app's
 * default age). A connection with no call open for TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS is closed
 * (GOAWAY, then close): an open stream, such as an ADS stream, keeps its connection. A connection
 * older than TRELLIS_GRPC_MAX_CONNECTION_AGE_MS (±10 % jitter) is sent GOAWAY, so its client opens
 * a new one, through a load balancer perhaps to another replica; what still runs on the old one is
 * cut TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS later. 0 turns the idle limit or the age off.
 * TRELLIS_GRPC_LISTEN_BACKLOG is how many connections the kernel completes and holds before the
 * process accepts them (DEFAULT_GRPC_LISTEN_BACKLOG says why it is larger than Node's).
 */
export function grpcConnectionEnv(defaults: { maxConnectionAgeMs: number }) {
  return {
    TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS: limitMsOrOff(DEFAULT_GRPC_MAX_CONNECTION_IDLE_MS, 86_400_000),
    TRELLIS_GRPC_MAX_CONNECTION_AGE_MS: limitMsOrOff(defaults.maxConnectionAgeMs, 86_400_000),
    TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS: env.int(DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_MS, 0, 3_600_000),
    TRELLIS_GRPC_LISTEN_BACKLOG: env.int(DEFAULT_GRPC_LISTEN_BACKLOG, 1, 65_535),
  };
}

/** Variables every app that talks to etcd accepts. */
export const etcdEnvSchema = z.object({
  TRELLIS_ETCD_ENDPOINTS: env
    .list('http://127.0.0.1:2379')
    .pipe(z.array(z.url({ protocol: /^https?$/, error: 'each endpoint must be an http:// or https:// URL' })).min(1)),
  TRELLIS_ETCD_PREFIX: z
    .string()
    .regex(/^\/([^/]+\/)*$/, 'must start and end with "/"')
    .default('/trellis/'),
  TRELLIS_ETCD_CA_FILE: z.string().optional(),
  TRELLIS_ETCD_CERT_FILE: z.string().optional(),
  TRELLIS_ETCD_KEY_FILE: z.string().optional(),
  TRELLIS_ETCD_USERNAME: z.string().optional(),
  TRELLIS_ETCD_PASSWORD_FILE: z.string().optional(),
});
export type EtcdEnv = z.infer<typeof etcdEnvSchema>;

// The control plane's configuration: TRELLIS_* variables, validated at start.
import { hostname } from 'node:os';
import { ConfigError, env, etcdEnvSchema, grpcConnectionEnv, httpLimitsEnv, loadConfig, tlsLimitsEnv } from '@trellis/runtime';
import { z } from 'zod';

const HostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port')
  .transform((value) => {
    const i = value.lastIndexOf(':');
    return { host: value.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(value.slice(i + 1)) };
  })
  .refine((hp) => hp.port >= 1 && hp.port <= 65535, 'port must be 1-65535');

/**
 * xDS connections are sent GOAWAY after 30 minutes (±10 %), as istiod's are: each proxy then reconnects,
 * through the load balancer, so after a scale-out the new replicas take their share within the half hour.
 */
export const DEFAULT_XDS_MAX_CONNECTION_AGE_MS = 1_800_000;
/** How often the xDS port's TLS files are read again when TRELLIS_XDS_TLS_RELOAD_SECONDS is not set. */
export const DEFAULT_XDS_TLS_RELOAD_SECONDS = 60;

export const controlPlaneEnvSchema = etcdEnvSchema.extend({
  ...httpLimitsEnv,
  /** The xDS port with TLS: handshake and HTTP/2 preface deadlines, cap on connections not yet through them. */
  ...tlsLimitsEnv,
  /** The xDS port's connections: closed after 5 minutes without a stream, GOAWAY at 30 minutes' age and cut 10 s later. */
  ...grpcConnectionEnv({ maxConnectionAgeMs: DEFAULT_XDS_MAX_CONNECTION_AGE_MS }),
  TRELLIS_HOST: env.host('0.0.0.0'),
  /** xDS gRPC (ADS, SotW and Delta). */
  TRELLIS_XDS_PORT: env.port(18000),
  /** /healthz, /readyz, /metrics, /debug/config_dump, /bootstrap/{service}. */
  TRELLIS_HTTP_PORT: env.port(18080),
  TRELLIS_LOG_LEVEL: env.logLevel(),
  /** authz's ext_authz gRPC address as sidecars reach it. */
  TRELLIS_AUTHZ_ADDRESS: HostPort.default({ host: '127.0.0.1', port: 9191 }),
  /**
   * Sidecars reach authz over mTLS with their workload certificate, accepting only
   * spiffe://<trust domain>/trellis/authz. `false` only toward an authz serving plaintext
   * (TRELLIS_ALLOW_INSECURE_CALLERS without TLS material: local development only).
   */
  TRELLIS_AUTHZ_TLS: env.bool(true),
  /**
   * An OpenTelemetry collector's OTLP/gRPC address (host:port) sidecars send spans to. Unset (the
   * default): sidecars propagate traceparent and record nothing.
   */
  TRELLIS_TRACING_OTLP_ADDRESS: HostPort.optional(),
  /** With a collector: the share of requests without a caller's sampling decision that are recorded. */
  TRELLIS_TRACING_SAMPLING_PERCENT: z.coerce.number().min(0).max(100).default(1),
  /**
   * The xDS addresses of every control-plane replica as sidecars reach them,
   * comma-separated (rendered into /bootstrap, so a sidecar fails over to another
   * replica at once); default 127.0.0.1:<xds port>.
   */
  TRELLIS_XDS_ADVERTISE_ADDRESS: z
    .string()
    .transform((value) => value.split(',').map((a) => a.trim()))
    .pipe(z.array(HostPort).min(1).max(32))
    .optional(),
  /**
   * Admit xDS clients that present no credentials (today's grpc-js-xds bootstraps
   * only know insecure channels). They never receive secrets. Off by default; the
   * local dev mesh turns it on.
   */
  TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: env.bool(false),
  /**
   * TLS on the xDS port: certificate and key files. With a client CA as well,
   * every xDS client must present a certificate naming its service (mTLS).
   */
  TRELLIS_XDS_TLS_CERT_FILE: z.string().min(1).optional(),
  TRELLIS_XDS_TLS_KEY_FILE: z.string().min(1).optional(),
  TRELLIS_XDS_TLS_CLIENT_CA_FILE: z.string().min(1).optional(),
  /**
   * How often those files are read again (SIGHUP reads them at once): a rotated certificate or CA serves new
   * connections within this time, no restart; established streams keep theirs. Files that do not load keep the last good ones.
   */
  TRELLIS_XDS_TLS_RELOAD_SECONDS: env.int(DEFAULT_XDS_TLS_RELOAD_SECONDS, 1, 3_600),
  /**
   * Bearer token for /debug/* and any /bootstrap (the registry's admin token). Unset:
   * /debug answers loopback only, and a bootstrap needs the service's xDS token.
   */
  TRELLIS_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /**
   * Instead of TRELLIS_ADMIN_TOKEN: a file holding it, read again on the TRELLIS_XDS_TLS_RELOAD_SECONDS poll and
   * on SIGHUP, so a rotation needs no restart. A broken or emptied file keeps the last good token.
   */
  TRELLIS_ADMIN_TOKEN_FILE: z.string().min(1).optional(),
  /** This replica's name in proxy status records. */
  TRELLIS_CONTROL_PLANE_ID: z.string().min(1).max(256).default(`${hostname()}-${process.pid}`),
  /** Debounce of registry changes: wait this long after the last change… */
  TRELLIS_XDS_DEBOUNCE_MS: env.int(100, 0, 10_000),
  /** …but never longer than this after the first one. */
  TRELLIS_XDS_DEBOUNCE_MAX_MS: env.int(500, 0, 60_000),
  /** A rebuild is handed to the streams in slices of about this long, serving ACKs in between; 0: all in one event-loop turn. */
  TRELLIS_XDS_FANOUT_SLICE_MS: env.int(20, 0, 10_000),
  /**
   * After the first model is served, run a few synthetic changes through the change path on throwaway state
   * (change-rehearsal.ts), so V8 has compiled it before the first real change; false turns it off.
   */
  TRELLIS_XDS_CHANGE_REHEARSAL: env.bool(true),
  /**
   * The rehearsal also runs throwaway ADS sessions, one per identity it translates, with in-process clients that
   * answer as Envoy does (stream-rehearsal.ts: no socket, metric or status), so the sessions' code and the wire
   * encoder are compiled before the first proxy connects. Off: at 10,000 / 5,000 it lowered the first push's and
   * round 1's server CPU (3 of 3 pairs), at 1,000 / 1,000 it made the first push and round 1 slower (4 of 5 pairs).
   */
  TRELLIS_XDS_STREAM_REHEARSAL: env.bool(false),
  /**
   * Endpoint retention (src/model/endpoint-retention.ts): endpoints lost to a
   * mass lease expiry — more than this share of a service's endpoints within the
   * window, or all of them — are kept this many seconds (0 turns it off).
   */
  TRELLIS_ENDPOINT_RETENTION_SECONDS: env.int(60, 0, 3_600),
  TRELLIS_ENDPOINT_RETENTION_SHARE: z.coerce.number().min(0).max(1).default(0.5),
  TRELLIS_ENDPOINT_RETENTION_WINDOW_MS: env.int(10_000, 0, 600_000),
  /**
   * Streams one connection may hold open at once (Envoy and grpc-js-xds open one ADS
   * stream per connection); more are refused with RESOURCE_EXHAUSTED.
   */
  TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION: env.int(16, 1, 1_000),
  /**
   * The largest request a stream may send, in bytes (gRPC's and istiod's default, 4 MiB; an Envoy's first request is
   * ~52 KB). A request is held until its last byte arrives, so one connection can make the control plane hold at
   * most its streams times this; a larger request is refused with RESOURCE_EXHAUSTED at its 5-byte length prefix.
   */
  TRELLIS_XDS_MAX_REQUEST_BYTES: env.int(4 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024),
  /**
   * The xDS port's keepalive: a ping every TIME on each connection, closed if unanswered within TIMEOUT (a dead
   * proxy's streams and status go). grpc-js judges the answer with a timer, and Node runs due timers before it
   * reads sockets, so a turn busier than TIMEOUT (a first push on a loaded host) would drop every healthy proxy
   * whose ping was in flight, and they would all reconnect at once: the timeout is long.
   */
  TRELLIS_XDS_KEEPALIVE_TIME_MS: env.int(30_000, 1_000, 3_600_000),
  TRELLIS_XDS_KEEPALIVE_TIMEOUT_MS: env.int(60_000, 1_000, 600_000),
  /** A stream that sends no first request within this is ended with DEADLINE_EXCEEDED. */
  TRELLIS_XDS_FIRST_REQUEST_TIMEOUT_MS: env.int(10_000, 100, 300_000),
  /** How often proxy statuses are written to etcd, and how many per round. */
  TRELLIS_PROXY_STATUS_INTERVAL_MS: env.int(1000, 100, 60_000),
  TRELLIS_PROXY_STATUS_MAX_WRITES: env.int(200, 1, 10_000),
  /**
   * Longest a status flush waits while the xDS fan-out translates or streams are being answered (a connection storm,
   * a change) before it writes anyway; 0: flushes never wait.
   */
  TRELLIS_PROXY_STATUS_MAX_DEFER_MS: env.int(10_000, 0, 600_000),
});

export type ControlPlaneConfig = z.infer<typeof controlPlaneEnvSchema>;

/** Cross-field rules zod's object shape cannot say. */
function checkTls(config: ControlPlaneConfig): ControlPlaneConfig {
  const cert = config.TRELLIS_XDS_TLS_CERT_FILE !== undefined;
  const key = config.TRELLIS_XDS_TLS_KEY_FILE !== undefined;
  if (cert !== key)
    throw new ConfigError([
      `${cert ? 'TRELLIS_XDS_TLS_KEY_FILE' : 'TRELLIS_XDS_TLS_CERT_FILE'}: required when ${cert ? 'TRELLIS_XDS_TLS_CERT_FILE' : 'TRELLIS_XDS_TLS_KEY_FILE'} is set`,
    ]);
  if (config.TRELLIS_XDS_TLS_CLIENT_CA_FILE !== undefined && !cert)
    throw new ConfigError(['TRELLIS_XDS_TLS_CLIENT_CA_FILE: requires TRELLIS_XDS_TLS_CERT_FILE and TRELLIS_XDS_TLS_KEY_FILE']);
  return config;
}

export function loadControlPlaneConfig(source: NodeJS.ProcessEnv = process.env): ControlPlaneConfig {
  const config = checkTls(loadConfig(controlPlaneEnvSchema, source));
  // Which of the two would rule is a guess: refuse it, naming both.
  if (config.TRELLIS_ADMIN_TOKEN && config.TRELLIS_ADMIN_TOKEN_FILE)
    throw new ConfigError(['TRELLIS_ADMIN_TOKEN and TRELLIS_ADMIN_TOKEN_FILE are both set: set one']);
  return config;
}

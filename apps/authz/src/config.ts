// authz configuration: TRELLIS_* environment variables, validated at start.
import { MAX_MESH_TOKEN_LIFETIME_SECONDS, MESH_TOKEN_RENEW_BEFORE_SECONDS } from '@trellis/mesh-contracts';
import { env, etcdEnvSchema, grpcConnectionEnv, httpLimitsEnv, loadConfig, tlsLimitsEnv } from '@trellis/runtime';
import { z } from 'zod';

/** `host:port,host:port`, as ioredis takes Sentinel and Cluster nodes. */
const redisNodeList = z
  .string()
  .transform((v) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  )
  .pipe(
    z
      .array(z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/, 'each node must be host:port'))
      .min(1)
      .transform((nodes) =>
        nodes.map((node) => {
          const at = node.lastIndexOf(':');
          return { host: node.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(node.slice(at + 1)) };
        }),
      ),
  );

/**
 * No age limit on the ext_authz port unless asked for: grpc-js sends its second GOAWAY at once, not a
 * round trip after the first (gRFC A9), so a Check already on the wire then is refused, and Envoy's
 * ext_authz client does not retry it. Behind an L4 load balancer that pins sidecars to old replicas,
 * TRELLIS_GRPC_MAX_CONNECTION_AGE_MS trades that rare failed Check for rebalancing.
 */
export const DEFAULT_AUTHZ_MAX_CONNECTION_AGE_MS = 0;

export const authzEnvSchema = etcdEnvSchema
  .extend({
    ...httpLimitsEnv,
    /** The gRPC port with TLS: handshake and HTTP/2 preface deadlines, cap on connections not yet through them; the mTLS port: the handshake's. */
    ...tlsLimitsEnv,
    /** The gRPC port's connections: closed after 5 minutes without a call; no age limit by default. */
    ...grpcConnectionEnv({ maxConnectionAgeMs: DEFAULT_AUTHZ_MAX_CONNECTION_AGE_MS }),
    TRELLIS_HOST: env.host('0.0.0.0'),
    TRELLIS_GRPC_PORT: env.port(9191),
    TRELLIS_HTTP_PORT: env.port(8181),
    /** HTTPS with client certificates: POST /v1/token for callers outside Envoy (the SDK). */
    TRELLIS_MTLS_PORT: env.port(8443),
    TRELLIS_LOG_LEVEL: env.logLevel(),
    TRELLIS_REDIS_URL: z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' }).default('redis://127.0.0.1:6379'),
    /** ACL user and its password (a file, e.g. a mounted Secret); override the URL's userinfo. */
    TRELLIS_REDIS_USERNAME: z.string().min(1).max(256).optional(),
    TRELLIS_REDIS_PASSWORD_FILE: z.string().min(1).optional(),
    /** TLS (implied by rediss://): roots that verify the server, and an optional client certificate. */
    TRELLIS_REDIS_TLS_CA_FILE: z.string().min(1).optional(),
    TRELLIS_REDIS_TLS_CERT_FILE: z.string().min(1).optional(),
    TRELLIS_REDIS_TLS_KEY_FILE: z.string().min(1).optional(),
    /** Redis Sentinel: `host:port` of each sentinel and the master's name; the URL then gives only credentials, TLS and db. */
    TRELLIS_REDIS_SENTINELS: redisNodeList.optional(),
    TRELLIS_REDIS_SENTINEL_MASTER: z.string().min(1).max(256).optional(),
    /** Redis Cluster: `host:port` of some nodes (the rest are discovered). */
    TRELLIS_REDIS_CLUSTER_NODES: redisNodeList.optional(),
    TRELLIS_REDIS_KEY_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9:_-]{1,64}$/)
      .default('trellis:authz:'),
    /** Each Redis command gives up after this; a Check must answer within Envoy's ext_authz timeout (200 ms by default). */
    TRELLIS_REDIS_COMMAND_TIMEOUT_MS: env.int(50, 1, 5_000),
    TRELLIS_TOKEN_ISSUER: z.string().min(1).max(256).default('trellis'),
    TRELLIS_TOKEN_TTL_SECONDS: env.int(900, 60, MAX_MESH_TOKEN_LIFETIME_SECONDS),
    /** Default: TTL − max(clock skew, 2 × MESH_TOKEN_RENEW_BEFORE_SECONDS) (780 s of 900). */
    TRELLIS_TOKEN_CACHE_TTL_SECONDS: z.coerce.number().int().min(1).max(86_400).optional(),
    TRELLIS_CLOCK_SKEW_SECONDS: env.int(30, 0, 300),
    /** Directory of PEM private keys (a mounted Kubernetes Secret); `$CREDENTIALS_DIRECTORY` (systemd LoadCredential=) is used when unset. */
    TRELLIS_SIGNING_KEYS_DIR: z.string().min(1).optional(),
    /** Set by systemd for `LoadCredential=`: the key files live there. */
    CREDENTIALS_DIRECTORY: z.string().min(1).optional(),
    /** One PEM private key in the environment, for setups without files. */
    TRELLIS_SIGNING_KEY: z.string().min(1).optional(),
    /** Local development only: sign with a key generated at start (replicas then do not share it). */
    TRELLIS_SIGNING_KEY_EPHEMERAL: env.bool(false),
    /** How long a new key is published (JWKS, etcd) before it signs, so every validator has it first. */
    TRELLIS_KEY_PUBLISH_LEAD_SECONDS: env.int(300, 0, 86_400),
    /** How often the key directory is re-read to pick up a rotated Secret. */
    TRELLIS_KEY_RELOAD_SECONDS: env.int(60, 1, 3_600),
    /** File of `service:secret` lines (or a directory of files named by service) that authenticate `POST /v1/token`. */
    TRELLIS_TOKEN_ENDPOINT_CREDENTIALS: z.string().min(1).optional(),
    /** How often that path is read again: a credential removed from it buys no certificate after this long, no restart. */
    TRELLIS_TOKEN_ENDPOINT_CREDENTIALS_RELOAD_SECONDS: env.int(5, 1, 3_600),
    /** SPIFFE trust domain of workload certificates (written to mesh/settings if absent; the stored value wins). */
    TRELLIS_TRUST_DOMAIN: z
      .string()
      .max(253)
      .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/, 'must be a DNS name')
      .default('trellis.local'),
    /** The mesh CA: a root or intermediate certificate (PEM, optionally followed by its intermediates) and its key. */
    TRELLIS_CA_CERT_FILE: z.string().min(1).optional(),
    TRELLIS_CA_KEY_FILE: z.string().min(1).optional(),
    /** The roots workloads trust (one, or two during a CA rotation); default: the CA certificate when it is a root. */
    TRELLIS_CA_TRUST_BUNDLE_FILE: z.string().min(1).optional(),
    /** Local development only: generate (once) and use a dev root in this directory. */
    TRELLIS_CA_DEV_ROOT_DIR: z.string().min(1).optional(),
    /** Lifetime of workload certificates; agents renew at half-life. */
    TRELLIS_WORKLOAD_CERT_TTL_SECONDS: env.int(86_400, 300, 30 * 86_400),
    /**
     * authz's serving certificate on its gRPC and mTLS ports (must carry spiffe://<td>/trellis/authz, which clients pin);
     * default: one authz issues itself from its mesh CA.
     */
    TRELLIS_TLS_CERT_FILE: z.string().min(1).optional(),
    TRELLIS_TLS_KEY_FILE: z.string().min(1).optional(),
    /** The roots callers' client certificates must chain to; default: the mesh CA's trust bundle. */
    TRELLIS_TLS_CLIENT_CA_FILE: z.string().min(1).optional(),
    /**
     * Local development only: Checks without a client certificate are decided on the route's context extensions,
     * and POST /v1/token on the HTTP port accepts the service credential alone.
     */
    TRELLIS_ALLOW_INSECURE_CALLERS: env.bool(false),
    /**
     * Serve Checks from a worker thread whose isolate does nothing else (check-worker/): the default. false: on the
     * main thread, beside the etcd and Redis clients and the HTTP servers (one thread less; slower per Check).
     */
    TRELLIS_CHECK_WORKER: env.bool(true),
    /** Kubernetes ServiceAccount tokens as proof of identity: the cluster's issuer and JWKS URL, and the audience tokens must carry. */
    TRELLIS_K8S_TOKEN_ISSUER: z.string().min(1).optional(),
    TRELLIS_K8S_JWKS_URL: z.url({ protocol: /^https?$/ }).optional(),
    TRELLIS_K8S_TOKEN_AUDIENCE: z.string().min(1).max(256).default('trellis-ca'),
    /** Where a Cloudflare Access team publishes its signing keys; `{teamDomain}` is replaced. */
    TRELLIS_CLOUDFLARE_CERTS_URL_TEMPLATE: z
      .string()
      .refine((v) => v.includes('{teamDomain}') && /^https?:\/\//.test(v), 'must be an http(s) URL containing {teamDomain}')
      .default('https://{teamDomain}/cdn-cgi/access/certs'),
  })
  .superRefine((cfg, ctx) => {
    if ((cfg.TRELLIS_REDIS_SENTINELS === undefined) !== (cfg.TRELLIS_REDIS_SENTINEL_MASTER === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['TRELLIS_REDIS_SENTINEL_MASTER'],
        message: 'TRELLIS_REDIS_SENTINELS and TRELLIS_REDIS_SENTINEL_MASTER go together',
      });
    }
    if (cfg.TRELLIS_REDIS_SENTINELS !== undefined && cfg.TRELLIS_REDIS_CLUSTER_NODES !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['TRELLIS_REDIS_CLUSTER_NODES'], message: 'use either Sentinel or Cluster, not both' });
    }
    if ((cfg.TRELLIS_REDIS_TLS_CERT_FILE === undefined) !== (cfg.TRELLIS_REDIS_TLS_KEY_FILE === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['TRELLIS_REDIS_TLS_KEY_FILE'],
        message: 'TRELLIS_REDIS_TLS_CERT_FILE and TRELLIS_REDIS_TLS_KEY_FILE go together',
      });
    }
    if ((cfg.TRELLIS_CA_CERT_FILE === undefined) !== (cfg.TRELLIS_CA_KEY_FILE === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['TRELLIS_CA_KEY_FILE'], message: 'TRELLIS_CA_CERT_FILE and TRELLIS_CA_KEY_FILE go together' });
    }
    if ((cfg.TRELLIS_TLS_CERT_FILE === undefined) !== (cfg.TRELLIS_TLS_KEY_FILE === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['TRELLIS_TLS_KEY_FILE'],
        message: 'TRELLIS_TLS_CERT_FILE and TRELLIS_TLS_KEY_FILE go together',
      });
    }
    if ((cfg.TRELLIS_K8S_TOKEN_ISSUER === undefined) !== (cfg.TRELLIS_K8S_JWKS_URL === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['TRELLIS_K8S_JWKS_URL'],
        message: 'TRELLIS_K8S_TOKEN_ISSUER and TRELLIS_K8S_JWKS_URL go together',
      });
    }
    if (cfg.TRELLIS_CLOCK_SKEW_SECONDS * 2 > cfg.TRELLIS_TOKEN_TTL_SECONDS) {
      ctx.addIssue({ code: 'custom', path: ['TRELLIS_CLOCK_SKEW_SECONDS'], message: 'must be at most half of TRELLIS_TOKEN_TTL_SECONDS' });
    }
    // A cached token must keep at least the validators' clock skew of validity when handed out.
    if (
      cfg.TRELLIS_TOKEN_CACHE_TTL_SECONDS !== undefined &&
      cfg.TRELLIS_TOKEN_CACHE_TTL_SECONDS > cfg.TRELLIS_TOKEN_TTL_SECONDS - cfg.TRELLIS_CLOCK_SKEW_SECONDS
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['TRELLIS_TOKEN_CACHE_TTL_SECONDS'],
        message: `must be at most TRELLIS_TOKEN_TTL_SECONDS - TRELLIS_CLOCK_SKEW_SECONDS (${cfg.TRELLIS_TOKEN_TTL_SECONDS - cfg.TRELLIS_CLOCK_SKEW_SECONDS})`,
      });
    }
  });

export type AuthzConfig = z.infer<typeof authzEnvSchema> & { TRELLIS_TOKEN_CACHE_TTL_SECONDS: number };

export function loadAuthzConfig(source: NodeJS.ProcessEnv = process.env): AuthzConfig {
  const config = loadConfig(authzEnvSchema, source);
  return {
    ...config,
    TRELLIS_TOKEN_CACHE_TTL_SECONDS:
      config.TRELLIS_TOKEN_CACHE_TTL_SECONDS ?? defaultTokenCacheTtl(config.TRELLIS_TOKEN_TTL_SECONDS, config.TRELLIS_CLOCK_SKEW_SECONDS),
  };
}

/**
 * How long a minted token is handed out again from the cache: until twice the
 * SDK's renewal window (MESH_TOKEN_RENEW_BEFORE_SECONDS) before its exp, so a
 * client renewing gets a new token, never the one it is replacing; never closer
 * to exp than the clock skew. 900 s tokens: 780 s.
 */
export function defaultTokenCacheTtl(ttlSeconds: number, clockSkewSeconds: number): number {
  return Math.max(1, ttlSeconds - Math.max(clockSkewSeconds, 2 * MESH_TOKEN_RENEW_BEFORE_SECONDS));
}

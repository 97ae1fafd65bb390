// The records Trellis stores in etcd. Every value read from etcd is parsed with
// these schemas before use; every value written was produced by them.
import { z } from 'zod';
import { DNS_LABEL, RESERVED_SERVICE_NAMES, weakJwkReason } from '@trellis/mesh-contracts';

/** DNS name: dot-separated labels, up to 253 chars. */
const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/**
 * A host name every consumer can put in a URL: a DNS name of two or more labels
 * whose last label starts with a letter. WHATWG URL parsing (Node's `new URL`)
 * reads a host whose last label is numeric ("m.3", "a.0x1f") as an IPv4 address
 * and throws when the rest is not one, so such names are refused.
 */
const HOST_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** What the schema's host rule promises, checked the way consumers use it: `new URL` keeps the name as it is. */
export function isUrlHostName(name: string): boolean {
  if (!HOST_NAME.test(name)) return false;
  try {
    return new URL(`https://${name}/`).hostname === name;
  } catch {
    return false;
  }
}

// The regex alone is not enough: an "xn--" label must also be valid punycode, or `new URL` throws ("0.xn--0").
const HostName = (example: string) =>
  z
    .string()
    .max(253)
    .refine(isUrlHostName, `must be a DNS name of two or more labels, the last starting with a letter, such as ${example}`);

const DnsLabel = z
  .string()
  .regex(DNS_LABEL, 'must be a DNS label: lower-case letters, digits and "-", 1-63 characters, starting and ending with a letter or digit');

export const ServiceName = DnsLabel.refine((name) => !RESERVED_SERVICE_NAMES.has(name), {
  message: `is reserved for Trellis itself (${[...RESERVED_SERVICE_NAMES].join(', ')}); choose another service name`,
});
export type ServiceName = z.infer<typeof ServiceName>;

export const TeamName = DnsLabel.describe('owning team, a DNS label');

/** An ingress host name as stored: lower-case, no port, no trailing dot. */
export const IngressHost = HostName('api.example.com');

/** Instance ids come from pods and VMs (pod names, hostnames, uuids): a safe key segment. */
export const InstanceId = z
  .string()
  // No `/i`: the pattern is published in the OpenAPI document, where JSON Schema has no flags.
  .regex(/^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$/, 'must be 1-128 characters of letters, digits, ".", "_" and "-"')
  .refine((id) => !id.includes('..'), 'must not contain ".."')
  .meta({ example: 'payments-7d4b9c-x2x9z' });
export type InstanceId = z.infer<typeof InstanceId>;

const LabelKey = z
  .string()
  .regex(/^[a-zA-Z0-9]([a-zA-Z0-9._/-]{0,61}[a-zA-Z0-9])?$/, 'label keys are 1-63 characters of letters, digits, ".", "_", "-" and "/"');
const LabelValue = z.string().regex(/^[a-zA-Z0-9._-]{0,63}$/, 'label values are 0-63 characters of letters, digits, ".", "_" and "-"');
export const Labels = z.record(LabelKey, LabelValue).refine((labels) => Object.keys(labels).length <= 32, 'at most 32 labels');

export const Protocol = z.enum(['http', 'http2', 'grpc', 'tcp']);
export type Protocol = z.infer<typeof Protocol>;

const Millis = (max: number) => z.number().int().positive().max(max);

/**
 * Envoy's retry_on conditions a policy may name. The gRPC ones (cancelled …
 * unavailable) match the response's grpc-status and are the only ones proxyless
 * clients honour; the others apply to Envoy sidecars only.
 */
export const RetryOn = z
  .enum([
    '5xx',
    'gateway-error',
    'reset',
    // The connection was reset before the request headers were sent: the callee never saw the request. Envoy 1.31+.
    'reset-before-request',
    'connect-failure',
    'retriable-4xx',
    'refused-stream',
    'cancelled',
    'deadline-exceeded',
    'resource-exhausted',
    'unavailable',
  ])
  .describe(
    "When to retry, as Envoy's retry_on. Envoy sidecars: 5xx, gateway-error (502/503/504), reset (any reset or timeout, " +
      'also after the request was sent), reset-before-request (reset before the request was sent; Envoy 1.31+), ' +
      'connect-failure, retriable-4xx (409), refused-stream (HTTP/2 REFUSED_STREAM). Sidecars and proxyless gRPC clients: ' +
      'the grpc-status cancelled, deadline-exceeded, resource-exhausted, unavailable.',
  );

export const RetryPolicy = z
  .object({
    attempts: z.number().int().min(0).max(10),
    perTryTimeoutMs: Millis(600_000).optional(),
    retryOn: z.array(RetryOn).min(1).max(RetryOn.options.length).default(['connect-failure', 'refused-stream', 'unavailable']),
  })
  .strict();

export const CircuitBreaker = z
  .object({
    maxConnections: z.number().int().min(1).max(1_000_000).optional(),
    maxPendingRequests: z.number().int().min(1).max(1_000_000).optional(),
    maxRequests: z.number().int().min(1).max(1_000_000).optional(),
    maxRetries: z.number().int().min(0).max(1_000_000).optional(),
  })
  .strict();

export const OutlierDetection = z
  .object({
    consecutive5xx: z.number().int().min(1).max(1000).default(5),
    intervalMs: Millis(3_600_000).default(10_000),
    baseEjectionTimeMs: Millis(3_600_000).default(30_000),
    maxEjectionPercent: z.number().int().min(0).max(100).default(10),
  })
  .strict();

export const HealthCheck = z
  .object({
    /** HTTP path to probe; absent means a TCP connect check (or gRPC health for grpc services). */
    path: z
      .string()
      .regex(/^\/[\x21-\x7e]{0,255}$/, 'must be an absolute path of printable ASCII')
      .optional(),
    intervalMs: Millis(3_600_000).default(10_000),
    timeoutMs: Millis(60_000).default(1_000),
    unhealthyThreshold: z.number().int().min(1).max(100).default(3),
    healthyThreshold: z.number().int().min(1).max(100).default(1),
  })
  .strict();

export const LoadBalancing = z.enum(['round_robin', 'least_request', 'ring_hash', 'random']);

/**
 * What ring_hash hashes a request on, so one key keeps reaching one host: a
 * request header, a cookie, or the caller's source IP. Without it a route hashes
 * nothing and ring_hash picks at random; the translator then hashes the source IP.
 */
export const HashOn = z.union([
  z.object({ header: z.string().regex(/^[a-z0-9-]{1,64}$/, 'a lower-case HTTP header name') }).strict(),
  z.object({ cookie: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a cookie name') }).strict(),
  z.object({ sourceIp: z.literal(true) }).strict(),
]);
export type HashOn = z.infer<typeof HashOn>;

export const LocalRateLimit = z
  .object({
    /** Token bucket: `maxTokens` burst, refilled with `tokensPerFill` every `fillIntervalMs`. */
    maxTokens: z.number().int().min(1).max(1_000_000),
    tokensPerFill: z.number().int().min(1).max(1_000_000),
    fillIntervalMs: z.number().int().min(50).max(3_600_000),
  })
  .strict();

export const TrafficPolicy = z
  .object({
    timeoutMs: Millis(3_600_000).optional(),
    retries: RetryPolicy.optional(),
    circuitBreaker: CircuitBreaker.optional(),
    outlierDetection: OutlierDetection.optional(),
    healthCheck: HealthCheck.optional(),
    loadBalancing: LoadBalancing.optional(),
    /** For ring_hash: what requests are hashed on (see HashOn). */
    hashOn: HashOn.optional(),
    rateLimit: LocalRateLimit.optional(),
  })
  .strict();
export type TrafficPolicy = z.infer<typeof TrafficPolicy>;

export const Dependency = z
  .object({
    service: ServiceName,
    /** Overrides the callee's own policy for this caller's calls. */
    policy: TrafficPolicy.optional(),
  })
  .strict();
export type Dependency = z.infer<typeof Dependency>;

export const TrafficSubset = z
  .object({
    name: DnsLabel.describe('subset name, a DNS label'),
    /** Instances whose labels include all of these belong to the subset. */
    labels: Labels,
    weight: z.number().int().min(0).max(100),
  })
  .strict();
export type TrafficSubset = z.infer<typeof TrafficSubset>;

export const TrafficSplit = z
  .array(TrafficSubset)
  .min(1)
  .max(16)
  .superRefine((subsets, ctx) => {
    const total = subsets.reduce((sum, s) => sum + s.weight, 0);
    if (total !== 100) ctx.addIssue({ code: 'custom', message: `subset weights must add up to 100 (they add up to ${total})` });
    const seen = new Set<string>();
    subsets.forEach((s, i) => {
      if (seen.has(s.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate subset "${s.name}"` });
      seen.add(s.name);
    });
  });
export type TrafficSplit = z.infer<typeof TrafficSplit>;

export const Ingress = z
  .object({
    host: IngressHost,
    pathPrefix: z
      .string()
      .regex(/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,255}$/, 'must start with "/" and contain only URL path characters')
      .default('/'),
    /** Cloudflare Access application that fronts this route; absent means the edge does not require Access. */
    cloudflareAccess: z
      .object({
        teamDomain: HostName('myteam.cloudflareaccess.com'),
        audience: z
          .string()
          .regex(/^[A-Fa-f0-9]{16,128}$/, 'must be the Access application AUD tag (hex)')
          .meta({ example: '4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2' }),
      })
      .strict()
      .optional(),
  })
  .strict();
export type Ingress = z.infer<typeof Ingress>;

/**
 * How a service's inbound side treats transport security (adopted service by service):
 * `off` plaintext; `permissive` TLS and plaintext both accepted (callers that can, use
 * TLS with their workload certificate); `strict` only mTLS from a declared caller's
 * certificate. Absent means `off`.
 */
export const MtlsMode = z.enum(['off', 'permissive', 'strict']);
export type MtlsMode = z.infer<typeof MtlsMode>;

/** A Kubernetes ServiceAccount whose projected token may obtain this service's workload certificate. */
export const KubernetesServiceAccount = z
  .object({
    namespace: DnsLabel.describe('namespace, a DNS label'),
    serviceAccount: z.string().max(253).regex(DNS_NAME, 'must be a DNS name'),
  })
  .strict();
export type KubernetesServiceAccount = z.infer<typeof KubernetesServiceAccount>;

/** Who may prove to be this service to the mesh CA (besides the service's own VM credential). */
export const WorkloadIdentity = z.object({ kubernetes: z.array(KubernetesServiceAccount).max(16).default([]) }).strict();
export type WorkloadIdentity = z.infer<typeof WorkloadIdentity>;

/**
 * Stored at `hosts/<host>`: the team that owns an ingress host. The first service that
 * claims a host fixes its owner (in the same txn as that service's write); only an
 * admin assigns it to another team. Deleting the last service on the host releases a
 * first claim (not an admin's assignment), in the same txn as the delete.
 */
export const HostClaim = z
  .object({
    host: IngressHost,
    team: TeamName,
    /** Who fixed the owner: the actor of the first claiming write, or the admin who assigned it. */
    claimedBy: z.string().max(256),
    at: z.iso.datetime(),
    /** Set when an admin assigned the host rather than a first service claiming it. */
    assigned: z.boolean().default(false),
  })
  .strict();
export type HostClaim = z.infer<typeof HostClaim>;

/** What an engineer declares: the body of `PUT /api/v1/services/{name}`. */
export const ServiceSpec = z
  .object({
    name: ServiceName,
    team: TeamName,
    description: z.string().max(1024).default(''),
    protocol: Protocol,
    port: z.number().int().min(1).max(65535),
    dependencies: z.array(Dependency).max(256).default([]),
    policy: TrafficPolicy.default({}),
    trafficSplit: TrafficSplit.optional(),
    ingress: Ingress.optional(),
    mtls: MtlsMode.optional(),
    workloadIdentity: WorkloadIdentity.optional(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    spec.dependencies.forEach((dep, i) => {
      if (dep.service === spec.name)
        ctx.addIssue({ code: 'custom', path: ['dependencies', i, 'service'], message: 'a service cannot depend on itself' });
      if (seen.has(dep.service))
        ctx.addIssue({ code: 'custom', path: ['dependencies', i, 'service'], message: `duplicate dependency "${dep.service}"` });
      seen.add(dep.service);
    });
  });
export type ServiceSpec = z.infer<typeof ServiceSpec>;
export type ServiceSpecInput = z.input<typeof ServiceSpec>;

export const ChangeMetadata = z
  .object({
    /** Who made the change: a team, `admin`, or a token subject. */
    actor: z.string().max(256),
    at: z.iso.datetime(),
  })
  .strict();

/** Stored at `services/<name>`. `generation` counts changes; history entries are keyed by it. */
export const ServiceRecord = z
  .object({
    spec: ServiceSpec,
    generation: z.number().int().min(1),
    created: ChangeMetadata,
    updated: ChangeMetadata,
    /**
     * Per declared dependency: the generation since which it has been declared without a
     * break. Kept by MeshStore (absent on records written before it existed: read as 1).
     * A dependency removed and declared again gets a new value, which lets the control
     * plane give proxyless clients fresh resource names for it: a workaround for a
     * grpc-js-xds 1.14 bug, documented with the resource names in apps/control-plane/README.md.
     */
    dependencySince: z.record(ServiceName, z.number().int().min(1)).optional(),
  })
  .strict();
export type ServiceRecord = z.infer<typeof ServiceRecord>;

/** The generation since which `record` has declared `dependency` without a break. */
export function dependencySince(record: Pick<ServiceRecord, 'dependencySince'>, dependency: string): number {
  return record.dependencySince?.[dependency] ?? 1;
}

export const HistoryAction = z.enum(['create', 'update', 'delete', 'rollback']);

/** Stored at `history/<service>/<generation>`: every change, kept with who made it and when. */
export const HistoryEntry = z
  .object({
    service: ServiceName,
    generation: z.number().int().min(1),
    action: HistoryAction,
    actor: z.string().max(256),
    at: z.iso.datetime(),
    /** The definition after the change; null for a delete. */
    spec: ServiceSpec.nullable(),
    /** For a rollback: the generation whose definition was restored. */
    restoredGeneration: z.number().int().min(1).optional(),
  })
  .strict();
export type HistoryEntry = z.infer<typeof HistoryEntry>;

export const Locality = z
  .object({
    region: z
      .string()
      .max(128)
      .regex(/^[a-zA-Z0-9._-]*$/)
      .default(''),
    zone: z
      .string()
      .max(128)
      .regex(/^[a-zA-Z0-9._-]*$/)
      .default(''),
    subZone: z
      .string()
      .max(128)
      .regex(/^[a-zA-Z0-9._-]*$/)
      .default(''),
  })
  .strict();
export type Locality = z.infer<typeof Locality>;

/** Stored at `instances/<service>/<id>`, bound to a lease: it disappears when its heartbeats stop. */
export const InstanceRecord = z
  .object({
    service: ServiceName,
    id: InstanceId,
    /** IP literal (v4 or v6); proxyless gRPC clients require IP endpoints. */
    address: z.union([z.ipv4().meta({ format: 'ipv4', example: '10.0.3.7' }), z.ipv6().meta({ format: 'ipv6', example: 'fd00::7' })]),
    port: z.number().int().min(1).max(65535),
    labels: Labels.default({}),
    locality: Locality.default({ region: '', zone: '', subZone: '' }),
    platform: z.enum(['vm', 'k8s']),
    weight: z.number().int().min(1).max(128).default(1),
    registeredAt: z.iso.datetime(),
    /**
     * Set when the instance started draining (its agent got SIGTERM): it finishes the calls
     * it has but gets no new ones; the control plane sends it as EDS `DRAINING`.
     */
    drainingSince: z.iso.datetime().optional(),
  })
  .strict();
export type InstanceRecord = z.infer<typeof InstanceRecord>;
export type InstanceRecordInput = z.input<typeof InstanceRecord>;

/**
 * Stored at `deregistered/<service>/<id>` in the same txn that deletes an
 * instance on purpose, under a lease of its own (DEREGISTRATION_TTL_SECONDS).
 * etcd reports a lease expiry and a delete as the same DELETE event; this
 * tombstone is how readers tell an instance that was taken away from one whose
 * lease lapsed (the control plane retains endpoints lost to a mass expiry).
 */
export const InstanceDeregistration = z
  .object({
    service: ServiceName,
    id: InstanceId,
    at: z.iso.datetime(),
  })
  .strict();
export type InstanceDeregistration = z.infer<typeof InstanceDeregistration>;
/** How long a deregistration tombstone lives: longer than any endpoint retention grace period. */
export const DEREGISTRATION_TTL_SECONDS = 600;

/** Stored at `mesh/settings`: mesh-wide values every component agrees on. */
export const MeshSettings = z
  .object({
    /** `iss` of mesh tokens (authz mints, sidecars validate). */
    tokenIssuer: z.string().min(1).max(256),
    /** Leeway validators allow for clock skew. */
    clockSkewSeconds: z.number().int().min(0).max(300).default(30),
    /** SPIFFE trust domain of workload certificates; absent means DEFAULT_TRUST_DOMAIN. */
    trustDomain: z.string().max(253).regex(DNS_NAME, 'must be a DNS name').optional(),
  })
  .strict();
export type MeshSettings = z.infer<typeof MeshSettings>;

const PublicJwk = z
  .object({
    kty: z.enum(['RSA', 'EC']),
    kid: z.string().min(1).max(128),
    alg: z.enum(['RS256', 'ES256']),
    use: z.literal('sig').default('sig'),
    n: z.string().max(2048).optional(),
    e: z.string().max(16).optional(),
    crv: z.string().max(16).optional(),
    x: z.string().max(128).optional(),
    y: z.string().max(128).optional(),
  })
  .strict()
  .superRefine((jwk, ctx) => {
    // A weak key (RSA e != 65537 or < 2048 bits, an EC curve other than P-256/P-384) is never trusted.
    const { kty, n, e, crv, x, y } = jwk;
    const reason = weakJwkReason({ kty, n, e, crv, x, y });
    if (reason) ctx.addIssue({ code: 'custom', message: reason });
  });
export type PublicJwk = z.infer<typeof PublicJwk>;

/**
 * Stored at `authz/keys/<kid>`: a public key mesh tokens may be signed with.
 * Published before it signs (`activeFrom`); kept until every token it signed expired (`retireAfter`).
 */
export const AuthzPublicKey = z
  .object({
    kid: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/),
    jwk: PublicJwk,
    publishedAt: z.iso.datetime(),
    activeFrom: z.iso.datetime(),
    retireAfter: z.iso.datetime().optional(),
  })
  .strict();
export type AuthzPublicKey = z.infer<typeof AuthzPublicKey>;

/** An etcd revision as etcd3 reports it: a decimal int64 in a string. */
const EtcdRevision = z.string().regex(/^[0-9]{1,19}$/, 'an etcd revision: decimal digits');

const XdsTypeStatus = z
  .object({
    lastSentVersion: z.string().max(128).optional(),
    lastAckedVersion: z.string().max(128).optional(),
    lastNack: z
      .object({
        version: z.string().max(128),
        // Older replicas kept up to 4096 characters; new writes keep MAX_NACK_ERROR_CHARS.
        error: z.string().max(4096),
        at: z.iso.datetime(),
        /**
         * The etcd revision of the mesh model the rejected config was built from: the
         * newest change at or before it is the one that caused it. Absent in older records.
         */
        meshRevision: EtcdRevision.optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** Longest NACK error kept: enough to name the resource and field, never a page of attacker text. */
export const MAX_NACK_ERROR_CHARS = 1024;

// A node id is the proxy's own text, shown in the registry and printed by `trellis proxy-status`.
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const NO_CONTROL_CHARACTERS = /^[^\x00-\x1f\x7f]+$/;

/**
 * Stored at `status/proxies/<service>/<nodeId>/<stream>` by the control plane replica serving
 * it, under that replica's lease. A record belongs to the stream that wrote it: a
 * second stream claiming the same node id gets its own record and never replaces or
 * deletes the first's.
 */
export const ProxyStatus = z
  .object({
    service: ServiceName,
    nodeId: z.string().min(1).max(256).regex(NO_CONTROL_CHARACTERS, 'must not contain control characters'),
    controlPlane: z.string().max(256),
    /** The stream that wrote it (`<control plane id>/<stream number>`); absent in records of older replicas. */
    stream: z.string().min(1).max(300).optional(),
    connectedAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
    /** The mesh revision the last pushed config was built from; ties a NACK to the change that caused it. */
    meshRevision: z.string().max(32).optional(),
    /** Per xDS type; a proxy that never asked for a type has no entry (zod 4's record over an enum would demand all five). */
    types: z.partialRecord(z.enum(['lds', 'rds', 'cds', 'eds', 'sds']), XdsTypeStatus),
  })
  .strict();
export type ProxyStatus = z.infer<typeof ProxyStatus>;

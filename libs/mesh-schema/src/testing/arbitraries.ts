// fast-check arbitraries over the records in etcd, for property tests of their
// consumers. Values are drawn wide on purpose — numeric labels, reserved ports,
// odd paths, keys without their parameters, issuers of any text — and then kept
// only when the schema (what the registry accepts) takes them: every generated
// record is one the registry would have written.
import fc from 'fast-check';
import type { z } from 'zod';
import { AuthzPublicKey, InstanceRecord, MeshSettings, RetryOn, ServiceRecord, ServiceSpec, type ServiceSpecInput } from '../records';
import type { MeshState } from '../state';

export const RECORD_TIME = '2026-01-01T00:00:00.000Z';

/** What the schema makes of `value`, or undefined when it refuses it (then the registry would have too). */
export function accepted<S extends z.ZodType>(schema: S, value: unknown): z.output<S> | undefined {
  const result = schema.safeParse(value);
  return result.success ? result.data : undefined;
}

const POOL = ['a', 'b', 'c', 'd'] as const;
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?$/);
/** Mostly names that pass, some that must not (numeric last labels, IP literals), which the filter drops. */
const hostish = fc.oneof(
  {
    arbitrary: fc
      .tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.stringMatching(/^[a-z][a-z0-9-]{0,4}[a-z0-9]$/))
      .map(([ls, tld]) => [...ls, tld].join('.')),
    weight: 6,
  },
  { arbitrary: fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join('.')), weight: 1 },
  {
    arbitrary: fc.constantFrom('m.3', 'a.0x1f', 'acme.cloudflareaccess.com', 'xn--bcher-kva.example', '1.2.3.4', 'shop.example.com'),
    weight: 1,
  },
);
const port = fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constantFrom(80, 8080, 9191, 15000, 15001, 18000));
const millis = fc.oneof(fc.integer({ min: 1, max: 3_600_000 }), fc.constantFrom(1, 999, 1000, 1001, 60_000));
const path = fc.oneof(
  fc.stringMatching(/^\/[\x21-\x7e]{0,16}$/),
  fc.constantFrom('/', '/healthz', '/grpc.health.v1.Health/Check', '/%2e%2e/x'),
);

/** A traffic policy as a service spec or a dependency override may give it (raw input: parse it with TrafficPolicy). */
export const trafficPolicyArbitrary = fc.record(
  {
    timeoutMs: millis,
    retries: fc.record(
      {
        attempts: fc.integer({ min: 0, max: 10 }),
        perTryTimeoutMs: fc.integer({ min: 1, max: 600_000 }),
        retryOn: fc.subarray([...RetryOn.options], { minLength: 1 }),
      },
      { requiredKeys: ['attempts'] },
    ),
    circuitBreaker: fc.record(
      {
        maxConnections: fc.integer({ min: 1, max: 1_000_000 }),
        maxPendingRequests: fc.integer({ min: 1, max: 1_000_000 }),
        maxRequests: fc.integer({ min: 1, max: 1_000_000 }),
        maxRetries: fc.integer({ min: 0, max: 1_000_000 }),
      },
      { requiredKeys: [] },
    ),
    outlierDetection: fc.record(
      {
        consecutive5xx: fc.integer({ min: 1, max: 1000 }),
        intervalMs: millis,
        baseEjectionTimeMs: millis,
        maxEjectionPercent: fc.integer({ min: 0, max: 100 }),
      },
      { requiredKeys: [] },
    ),
    healthCheck: fc.record(
      {
        path,
        intervalMs: millis,
        timeoutMs: fc.integer({ min: 1, max: 60_000 }),
        unhealthyThreshold: fc.integer({ min: 1, max: 100 }),
        healthyThreshold: fc.integer({ min: 1, max: 100 }),
      },
      { requiredKeys: [] },
    ),
    loadBalancing: fc.constantFrom('round_robin', 'least_request', 'ring_hash', 'random'),
    hashOn: fc.oneof(
      fc.record({ header: fc.stringMatching(/^[a-z0-9-]{1,12}$/) }),
      fc.record({ cookie: fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/) }),
      fc.constant({ sourceIp: true }),
    ),
    rateLimit: fc.record({
      maxTokens: fc.integer({ min: 1, max: 1_000_000 }),
      tokensPerFill: fc.integer({ min: 1, max: 1_000_000 }),
      fillIntervalMs: fc.integer({ min: 50, max: 3_600_000 }),
    }),
  },
  { requiredKeys: [] },
);

const labels = fc.dictionary(fc.constantFrom('track', 'version', 'app.kubernetes.io/name'), fc.constantFrom('stable', 'canary', 'v1', ''), {
  maxKeys: 2,
});

const trafficSplit = fc
  .tuple(fc.integer({ min: 0, max: 100 }), fc.constantFrom('stable', 'v1'), fc.constantFrom('canary', 'v2'), labels, labels)
  .map(([weight, first, second, l1, l2]) => [
    { name: first, labels: l1, weight },
    { name: second, labels: l2, weight: 100 - weight },
  ]);

const ingress = fc.record(
  {
    host: hostish,
    pathPrefix: fc.oneof(fc.constant('/'), fc.stringMatching(/^\/[a-z0-9/._-]{0,12}$/)),
    cloudflareAccess: fc.record({ teamDomain: hostish, audience: fc.stringMatching(/^[a-f0-9]{16,40}$/) }),
  },
  { requiredKeys: ['host'] },
);

const specOf = (name: string) =>
  fc.record(
    {
      name: fc.constant(name),
      team: fc.constantFrom('core', 'shop'),
      protocol: fc.constantFrom('http', 'http2', 'grpc', 'tcp'),
      port,
      dependencies: fc
        .subarray(POOL.filter((n) => n !== name) as string[])
        .chain((deps) =>
          fc.tuple(
            ...deps.map((service) =>
              fc.record({ service: fc.constant(service), policy: trafficPolicyArbitrary }, { requiredKeys: ['service'] }),
            ),
          ),
        ),
      policy: trafficPolicyArbitrary,
      trafficSplit,
      ingress,
      mtls: fc.constantFrom('off', 'permissive', 'strict'),
    },
    { requiredKeys: ['name', 'team', 'protocol', 'port'] },
  );

const instance = fc.record({
  service: fc.constantFrom(...POOL, 'ghost'),
  id: fc.stringMatching(/^[a-z0-9]([a-z0-9.-]{0,6}[a-z0-9])?$/),
  address: fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('127.0.0.1', '::1', '0.0.0.0')),
  port,
  labels,
  locality: fc.record({ region: fc.constantFrom('', 'eu', 'us'), zone: fc.constantFrom('', 'z1', 'z-2') }),
  platform: fc.constantFrom('vm', 'k8s'),
  weight: fc.integer({ min: 1, max: 128 }),
  registeredAt: fc.constant(RECORD_TIME),
  drainingSince: fc.option(fc.constant(RECORD_TIME), { nil: undefined }),
});

/** RSA and EC public keys with real parameters, and ones whose parameters are missing or are not keys. */
const authzKey = fc
  .record({
    kid: fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/),
    kind: fc.constantFrom('rsa', 'ec', 'rsa-garbage', 'ec-missing'),
    activeFrom: fc.constantFrom(RECORD_TIME, '2099-01-01T00:00:00.000Z'),
    retireAfter: fc.option(fc.constantFrom('2000-01-01T00:00:00.000Z', '2099-01-01T00:00:00.000Z'), { nil: undefined }),
  })
  .map(({ kid, kind, activeFrom, retireAfter }) => {
    const jwk =
      kind === 'rsa'
        ? { kty: 'RSA', kid, alg: 'RS256', n: RSA_N, e: 'AQAB' }
        : kind === 'ec'
          ? { kty: 'EC', kid, alg: 'ES256', crv: 'P-256', x: EC_X, y: EC_Y }
          : kind === 'rsa-garbage'
            ? { kty: 'RSA', kid, alg: 'RS256', n: 'x', e: 'AQAB' }
            : { kty: 'EC', kid, alg: 'ES256' };
    return { kid, jwk, publishedAt: RECORD_TIME, activeFrom, ...(retireAfter ? { retireAfter } : {}) };
  });

// A real P-256 point and RSA-2048 modulus (public halves only), so well-formed keys import.
const EC_X = 'Weg2-kovDJ-y5irZg9yhS06qrA45BrCnpYtxMNkErUM';
const EC_Y = '7LPcu36qaeP2iibu8tNsd9RXlLNGDW4WlFeYgOoWjiQ';
const RSA_N =
  'ysbo7oDiq-WMBM2h6pZn-23qPfpPlffx0Q6TgMAiyRTwOUW0WUt86kV88ols88sBn8zKIx4s9HVzunnWtDY5EV8c2pJXF7ETFACaraaul9Rw6Oy3W78PrMkC2YD-xfagyAJcvRJWwqKBeagqf0mxQgpqlOEJ90N9iMu1i_6vKHttA8qKK5jnJq71im9gxFrPSB1eQt2E8511SLpBsMDSegJ-iGQdZ_JwoYBKD4HsOYGdTFOx78hsQfe7mMqRijokXha_bMdh9m17yocmUstQ7O_YMeEgHUJlBJz5KG_x2i9zPp9jpvPVYyul9tHxwW4mxgsNZYiRixovf470pyuTUQ';

export interface GeneratedMesh {
  services: ServiceRecord[];
  instances: InstanceRecord[];
  authzKeys: AuthzPublicKey[];
  meshSettings?: MeshSettings;
}

/** A mesh of records the registry accepts: services from a small pool (so dependencies resolve), instances, keys, settings. */
export const meshArbitrary: fc.Arbitrary<GeneratedMesh> = fc
  .record({
    specs: fc.tuple(...POOL.map((name) => fc.option(specOf(name), { nil: undefined, freq: 4 }))),
    instances: fc.array(instance, { maxLength: 6 }),
    authzKeys: fc.array(authzKey, { maxLength: 3 }),
    meshSettings: fc.option(
      fc.record(
        {
          tokenIssuer: fc.string({ minLength: 1, maxLength: 40 }),
          clockSkewSeconds: fc.integer({ min: 0, max: 300 }),
          // Up to the longest DNS name: names derived from it (SNI) must still fit Envoy's limits.
          trustDomain: fc.oneof(hostish, fc.constant(`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`)),
        },
        { requiredKeys: ['tokenIssuer', 'clockSkewSeconds'] },
      ),
      {
        nil: undefined,
      },
    ),
  })
  .map(({ specs, instances, authzKeys, meshSettings }) => {
    const services = specs.flatMap((spec) => {
      const parsed = spec && accepted(ServiceSpec, spec as ServiceSpecInput);
      if (!parsed) return [];
      const record = accepted(ServiceRecord, {
        spec: parsed,
        generation: 1,
        created: { actor: 'test', at: RECORD_TIME },
        updated: { actor: 'test', at: RECORD_TIME },
      });
      return record ? [record] : [];
    });
    return {
      services,
      instances: instances.flatMap((i) => accepted(InstanceRecord, i) ?? []),
      authzKeys: authzKeys.flatMap((k) => accepted(AuthzPublicKey, k) ?? []),
      ...(meshSettings && accepted(MeshSettings, meshSettings) ? { meshSettings: accepted(MeshSettings, meshSettings)! } : {}),
    };
  });

/**
 * How many cases a property test draws: its default in `npm test`, or
 * TRELLIS_PROPERTY_RUNS for a deep run (`TRELLIS_PROPERTY_RUNS=20000 npx jest poison`).
 */
export function propertyRuns(defaultRuns: number): number {
  const deep = Number(process.env['TRELLIS_PROPERTY_RUNS']);
  return Number.isInteger(deep) && deep > 0 ? deep : defaultRuns;
}

/** A generated mesh as the watcher would mirror it (revision 7; service n at modRevision n + 2). */
export function meshStateOf(mesh: GeneratedMesh): MeshState {
  const instances = new Map<string, Map<string, InstanceRecord>>();
  for (const i of mesh.instances) {
    let byId = instances.get(i.service);
    if (!byId) instances.set(i.service, (byId = new Map()));
    byId.set(i.id, i);
  }
  return {
    revision: '7',
    services: new Map(mesh.services.map((s, n) => [s.spec.name, { value: s, modRevision: String(n + 2), createRevision: String(n + 2) }])),
    instances,
    deregistered: new Map(),
    ...(mesh.meshSettings ? { meshSettings: mesh.meshSettings } : {}),
    authzKeys: new Map(mesh.authzKeys.map((k) => [k.kid, k])),
    invalid: new Map(),
  };
}

import { Cluster_DiscoveryType, Cluster_LbPolicy } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { HealthStatus } from '@trellis/envoy-types/envoy/config/core/v3/health_check';
import { CodecClientType } from '@trellis/envoy-types/envoy/type/v3/http';
import { packAny } from '@trellis/envoy-types';
import { Cluster } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { ClusterLoadAssignment } from '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import { TrafficPolicy, type Protocol } from '@trellis/mesh-schema';
import { accepted, propertyRuns, trafficPolicyArbitrary } from '@trellis/mesh-schema/testing';
import fc from 'fast-check';
import type { LocalityEndpoints } from '../model';
import {
  authzCluster,
  encodeLoadAssignment,
  encodeSidecarCluster,
  loadAssignment,
  proxylessCluster,
  sidecarCluster,
  type ClusterInput,
} from './clusters';

const base = { name: 'outbound|b', connectTimeoutMs: 1500 };

describe('sidecarCluster', () => {
  it.each<[string, TrafficPolicy['loadBalancing'], Cluster_LbPolicy]>([
    ['default', undefined, Cluster_LbPolicy.ROUND_ROBIN],
    ['least_request', 'least_request', Cluster_LbPolicy.LEAST_REQUEST],
    ['ring_hash', 'ring_hash', Cluster_LbPolicy.RING_HASH],
    ['random', 'random', Cluster_LbPolicy.RANDOM],
  ])('maps load balancing %s', (_name, loadBalancing, expected) => {
    expect(sidecarCluster({ ...base, protocol: 'http', policy: loadBalancing ? { loadBalancing } : {} }).lbPolicy).toBe(expected);
  });

  it.each<[Protocol, boolean]>([
    ['grpc', true],
    ['http2', true],
    ['http', false],
    ['tcp', false],
  ])('speaks HTTP/2 upstream to %s services: %s', (protocol, http2) => {
    const cluster = sidecarCluster({ ...base, protocol, policy: {} });
    expect(Object.keys(cluster.typedExtensionProtocolOptions).length > 0).toBe(http2);
  });

  it('is an EDS cluster over ADS named after itself, with the connect timeout', () => {
    const cluster = sidecarCluster({ ...base, protocol: 'http', policy: {} });
    expect(cluster.clusterDiscoveryType).toEqual({ $case: 'type', value: Cluster_DiscoveryType.EDS });
    expect(cluster.edsClusterConfig).toMatchObject({ serviceName: 'outbound|b', edsConfig: { configSourceSpecifier: { $case: 'ads' } } });
    expect(cluster.connectTimeout).toMatchObject({ seconds: '1', nanos: 500_000_000 });
    expect(cluster.circuitBreakers).toBeUndefined();
    expect(cluster.outlierDetection).toBeUndefined();
    expect(cluster.healthChecks).toEqual([]);
  });

  it('carries circuit breakers and outlier detection from the policy', () => {
    const cluster = sidecarCluster({
      ...base,
      protocol: 'http',
      policy: {
        circuitBreaker: { maxConnections: 10, maxPendingRequests: 5, maxRequests: 20, maxRetries: 2 },
        outlierDetection: { consecutive5xx: 3, intervalMs: 2000, baseEjectionTimeMs: 15_000, maxEjectionPercent: 50 },
      },
    });
    expect(cluster.circuitBreakers!.thresholds[0]).toMatchObject({
      maxConnections: 10,
      maxPendingRequests: 5,
      maxRequests: 20,
      maxRetries: 2,
    });
    expect(cluster.outlierDetection).toMatchObject({
      consecutive5xx: 3,
      interval: { seconds: '2', nanos: 0 },
      baseEjectionTime: { seconds: '15', nanos: 0 },
      maxEjectionPercent: 50,
    });
  });

  it.each<[string, Protocol, string | undefined, string]>([
    ['an HTTP path', 'http', '/healthz', 'httpHealthCheck'],
    ['gRPC health for grpc without a path', 'grpc', undefined, 'grpcHealthCheck'],
    ['a TCP connect for http without a path', 'http', undefined, 'tcpHealthCheck'],
    ['a TCP connect for tcp even with a path', 'tcp', '/x', 'tcpHealthCheck'],
  ])('health-checks with %s', (_name, protocol, path, expected) => {
    const check = { intervalMs: 5000, timeoutMs: 250, unhealthyThreshold: 2, healthyThreshold: 1, ...(path ? { path } : {}) };
    const [healthCheck] = sidecarCluster({ ...base, protocol, policy: { healthCheck: check } }).healthChecks;
    expect(healthCheck!.healthChecker?.$case).toBe(expected);
    expect(healthCheck).toMatchObject({
      interval: { seconds: '5', nanos: 0 },
      timeout: { seconds: '0', nanos: 250_000_000 },
      unhealthyThreshold: 2,
      healthyThreshold: 1,
    });
  });

  it.each<[Protocol, CodecClientType]>([
    ['http', CodecClientType.HTTP1],
    ['http2', CodecClientType.HTTP2],
    ['grpc', CodecClientType.HTTP2],
  ])('sends HTTP health checks on a %s cluster with the codec its sidecar speaks', (protocol, codec) => {
    const check = { intervalMs: 5000, timeoutMs: 250, unhealthyThreshold: 2, healthyThreshold: 1, path: '/healthz' };
    const [healthCheck] = sidecarCluster({ ...base, protocol, policy: { healthCheck: check } }).healthChecks;
    expect(healthCheck!.healthChecker).toMatchObject({ $case: 'httpHealthCheck', value: { path: '/healthz', codecClientType: codec } });
  });
});

// The fast path (written around the policy's bytes, encoded once per policy) against the reference (the whole
// message built and encoded by the generated code) on generated input.
describe('encodeSidecarCluster', () => {
  const hex = (any: { value: Uint8Array }) => Buffer.from(any.value).toString('hex');
  const expectReference = (input: ClusterInput) => {
    const reference = packAny(Cluster, sidecarCluster(input));
    const fast = encodeSidecarCluster(input);
    expect(fast.typeUrl).toBe(reference.typeUrl);
    expect(hex(fast)).toBe(hex(reference));
  };
  const name = fc.string({ maxLength: 40 });
  const input: fc.Arbitrary<ClusterInput> = fc
    .record({
      name,
      protocol: fc.constantFrom<Protocol>('http', 'http2', 'grpc', 'tcp'),
      policy: trafficPolicyArbitrary.map((p) => accepted(TrafficPolicy, p)).filter((p): p is TrafficPolicy => p !== undefined),
      connectTimeoutMs: fc.oneof(fc.integer({ min: 0, max: 3_600_000 }), fc.constantFrom(1000, 1500)),
      peer: fc.option(fc.record({ spiffeId: fc.string({ minLength: 1, maxLength: 40 }), sni: fc.option(name, { nil: undefined }) }), {
        nil: undefined,
      }),
    })
    .map(({ peer, ...rest }) => ({ ...rest, ...(peer ? { peerSpiffeId: peer.spiffeId, peerSni: peer.sni } : {}) }));

  it('encodes byte for byte what the generated encoder gives for the whole message, for each callee sharing a policy', () => {
    fc.assert(
      fc.property(input, name, (i, other) => {
        expectReference(i);
        // The same policy object again (its bytes now kept), under another name.
        expectReference({ ...i, name: other });
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('shares the bytes of equal plain policies (distinct objects) without mixing up their balancing, protocol or timeout', () => {
    for (const protocol of ['http', 'grpc'] as const)
      for (const loadBalancing of [undefined, 'ring_hash'] as const)
        for (const connectTimeoutMs of [1000, 2500])
          expectReference({ name: 'svc-1', protocol, policy: loadBalancing ? { loadBalancing } : {}, connectTimeoutMs });
  });
});

// The same for endpoints: written in place against the generated encoding of loadAssignment's message.
describe('encodeLoadAssignment', () => {
  const text = fc.oneof(fc.constant(''), fc.string({ maxLength: 20 }));
  const weight = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 0xffffffff }));
  const endpoint = fc.record(
    {
      instanceId: text,
      address: fc.oneof(text, fc.constantFrom('10.0.0.1', 'fd00::1', 'db.internal')),
      port: fc.integer({ min: 0, max: 65535 }),
      weight,
      draining: fc.constant(true as const),
    },
    { requiredKeys: ['instanceId', 'address', 'port', 'weight'] },
  );
  const localities: fc.Arbitrary<LocalityEndpoints[]> = fc.array(
    fc.record({
      locality: fc.record({ region: text, zone: text, subZone: text }),
      weight,
      endpoints: fc.array(endpoint, { maxLength: 4 }),
    }),
    { maxLength: 4 },
  );

  it('encodes byte for byte what the generated encoder gives for the whole message', () => {
    fc.assert(
      fc.property(text, localities, (name, groups) => {
        const reference = packAny(ClusterLoadAssignment, loadAssignment(name, groups));
        const fast = encodeLoadAssignment(name, groups);
        expect(fast.typeUrl).toBe(reference.typeUrl);
        expect(Buffer.from(fast.value).toString('hex')).toBe(Buffer.from(reference.value).toString('hex'));
      }),
      { numRuns: propertyRuns(300) },
    );
  });
});

describe('proxylessCluster', () => {
  it('keeps only what grpc-js-xds implements', () => {
    const cluster = proxylessCluster({
      ...base,
      protocol: 'grpc',
      policy: {
        loadBalancing: 'least_request',
        circuitBreaker: { maxConnections: 1, maxRequests: 7 },
        healthCheck: {} as never,
      },
    });
    expect(cluster.lbPolicy).toBe(Cluster_LbPolicy.ROUND_ROBIN);
    expect(cluster.circuitBreakers!.thresholds).toEqual([expect.objectContaining({ maxRequests: 7, maxConnections: undefined })]);
    expect(cluster.outlierDetection).toBeUndefined();
    expect(cluster.healthChecks).toEqual([]);
    expect(proxylessCluster({ ...base, protocol: 'grpc', policy: { loadBalancing: 'ring_hash' } }).lbPolicy).toBe(
      Cluster_LbPolicy.RING_HASH,
    );
  });

  it("turns the policy's outlier detection into gRPC's failure-percentage ejection (gRFC A50 has no consecutive 5xx)", () => {
    const cluster = proxylessCluster({
      ...base,
      protocol: 'grpc',
      policy: { outlierDetection: { consecutive5xx: 4, intervalMs: 1500, baseEjectionTimeMs: 5000, maxEjectionPercent: 50 } },
    });
    expect(cluster.outlierDetection).toMatchObject({
      interval: { seconds: '1', nanos: 500_000_000 },
      baseEjectionTime: { seconds: '5', nanos: 0 },
      maxEjectionPercent: 50,
      enforcingSuccessRate: 0,
      enforcingFailurePercentage: 100,
      failurePercentageThreshold: 50,
      failurePercentageMinimumHosts: 2,
      failurePercentageRequestVolume: 4,
    });
  });
});

describe('loadAssignment and authzCluster', () => {
  it('weights localities and endpoints', () => {
    const cla = loadAssignment('outbound|b', [
      {
        locality: { region: 'eu', zone: 'a', subZone: '' },
        weight: 3,
        endpoints: [{ instanceId: 'x', address: 'fd00::1', port: 80, weight: 3 }],
      },
    ]);
    expect(cla.endpoints[0]).toMatchObject({ loadBalancingWeight: 3, priority: 0, locality: { region: 'eu', zone: 'a' } });
    expect(cla.endpoints[0]!.lbEndpoints[0]).toMatchObject({ loadBalancingWeight: 3 });
  });

  it('sends a draining endpoint as DRAINING and a serving one with no status (UNKNOWN)', () => {
    const cla = loadAssignment('outbound|b', [
      {
        locality: { region: '', zone: 'a', subZone: '' },
        weight: 1,
        endpoints: [
          { instanceId: 'x', address: '10.0.0.1', port: 80, weight: 1 },
          { instanceId: 'y', address: '10.0.0.2', port: 80, weight: 1, draining: true },
        ],
      },
    ]);
    expect(cla.endpoints[0]!.lbEndpoints.map((e) => e.healthStatus)).toEqual([HealthStatus.UNKNOWN, HealthStatus.DRAINING]);
  });

  it('resolves a DNS name with STRICT_DNS and uses an IP literal as is', () => {
    expect(authzCluster('authz.trellis.svc', 9191, 1000).clusterDiscoveryType).toEqual({
      $case: 'type',
      value: Cluster_DiscoveryType.STRICT_DNS,
    });
    expect(authzCluster('10.0.0.9', 9191, 1000).clusterDiscoveryType).toEqual({ $case: 'type', value: Cluster_DiscoveryType.STATIC });
    expect(authzCluster('::1', 9191, 1000).clusterDiscoveryType).toEqual({ $case: 'type', value: Cluster_DiscoveryType.STATIC });
  });
});

// Mesh model → Cluster and ClusterLoadAssignment.
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { typeUrlOf } from '@trellis/envoy-types';
import { Cluster, Cluster_DiscoveryType, Cluster_LbPolicy, type DeepPartial } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { OutlierDetection } from '@trellis/envoy-types/envoy/config/cluster/v3/outlier_detection';
import { RoutingPriority, TransportSocket } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { ConfigSource } from '@trellis/envoy-types/envoy/config/core/v3/config_source';
import { HealthStatus } from '@trellis/envoy-types/envoy/config/core/v3/health_check';
import {
  HealthCheck,
  HealthCheck_GrpcHealthCheck,
  HealthCheck_HttpHealthCheck,
  HealthCheck_TcpHealthCheck,
} from '@trellis/envoy-types/envoy/config/core/v3/health_check';
import { ClusterLoadAssignment } from '@trellis/envoy-types/envoy/config/endpoint/v3/endpoint';
import { CodecClientType } from '@trellis/envoy-types/envoy/type/v3/http';
import type { Any } from '@trellis/envoy-types/google/protobuf/any';
import type { Protocol, TrafficPolicy } from '@trellis/mesh-schema';
import type { LocalityEndpoints } from '../model';
import { adsConfigSource, duration, http2ProtocolOptions, socketAddress } from './common';
import { AUTHZ_CLUSTER_NAME } from './names';
import { proxylessUpstreamTls, sidecarUpstreamTls } from './workload-tls';

const LB_POLICY: Record<NonNullable<TrafficPolicy['loadBalancing']>, Cluster_LbPolicy> = {
  round_robin: Cluster_LbPolicy.ROUND_ROBIN,
  least_request: Cluster_LbPolicy.LEAST_REQUEST,
  ring_hash: Cluster_LbPolicy.RING_HASH,
  random: Cluster_LbPolicy.RANDOM,
};

export interface ClusterInput {
  name: string;
  /** The ClusterLoadAssignment's name, when it differs from the cluster's (proxyless clusters). */
  edsServiceName?: string;
  protocol: Protocol;
  policy: TrafficPolicy;
  connectTimeoutMs: number;
  /** The callee's SPIFFE ID when calls to it use mTLS (its mode is permissive or strict). */
  peerSpiffeId?: string;
  /** With `peerSpiffeId`, the SNI a sidecar sends (names.ts meshSni). */
  peerSni?: string;
}

/**
 * An EDS cluster for an Envoy sidecar, carrying the callee's (or overridden) traffic
 * policy; mTLS toward a callee that takes it (its health checks ride the same TLS).
 */
export function sidecarCluster({ name, protocol, policy, connectTimeoutMs, peerSpiffeId, peerSni }: ClusterInput): Cluster {
  return Cluster.fromPartial({
    name,
    clusterDiscoveryType: { $case: 'type', value: Cluster_DiscoveryType.EDS },
    edsClusterConfig: { edsConfig: adsConfigSource(), serviceName: name },
    ...sidecarClusterPolicy(protocol, policy, connectTimeoutMs),
    ...(peerSpiffeId ? { transportSocket: sidecarUpstreamTls({ spiffeId: peerSpiffeId, sni: peerSni ?? '', protocol }) } : {}),
  });
}

/** The fields of a sidecar cluster that its policy, protocol and connect timeout decide (all but its names and TLS). */
function sidecarClusterPolicy(protocol: Protocol, policy: TrafficPolicy, connectTimeoutMs: number): DeepPartial<Cluster> {
  const breaker = policy.circuitBreaker;
  const outlier = policy.outlierDetection;
  const check = policy.healthCheck;
  return {
    connectTimeout: duration(connectTimeoutMs),
    lbPolicy: LB_POLICY[policy.loadBalancing ?? 'round_robin'],
    typedExtensionProtocolOptions: protocol === 'grpc' || protocol === 'http2' ? http2ProtocolOptions() : {},
    ...(breaker
      ? {
          circuitBreakers: {
            thresholds: [
              {
                priority: RoutingPriority.DEFAULT,
                maxConnections: breaker.maxConnections,
                maxPendingRequests: breaker.maxPendingRequests,
                maxRequests: breaker.maxRequests,
                maxRetries: breaker.maxRetries,
              },
            ],
          },
        }
      : {}),
    ...(outlier
      ? {
          outlierDetection: {
            consecutive5xx: outlier.consecutive5xx,
            interval: duration(outlier.intervalMs),
            baseEjectionTime: duration(outlier.baseEjectionTimeMs),
            maxEjectionPercent: outlier.maxEjectionPercent,
          },
        }
      : {}),
    healthChecks: check ? [healthCheck(protocol, check)] : [],
  };
}

// A connection storm translates the clusters of every callee that some caller calls (at 10,000 services,
// thousands called by one caller each), and a sidecar cluster is its name twice around fields its callee's
// policy decides: those are encoded once per policy and written in between, instead of building and encoding
// the whole Cluster object graph per callee. Byte for byte `packAny(Cluster, sidecarCluster(input))`
// (clusters.test.ts). Field tags (field number << 3 | wire type), in the generated encoder's order: name,
// discovery type, EDS config, then the policy's fields (connect timeout … outlier detection), then TLS.
const CLUSTER_NAME = (1 << 3) | 2;
const CLUSTER_TYPE = (2 << 3) | 0;
const CLUSTER_EDS_CONFIG = (3 << 3) | 2;
const EDS_CONFIG_SOURCE = (1 << 3) | 2;
const EDS_SERVICE_NAME = (2 << 3) | 2;
const CLUSTER_TRANSPORT_SOCKET = (24 << 3) | 2;

let clusterConstants: { typeUrl: string; configSource: Uint8Array } | undefined;
/** The policy fields' bytes by policy object, then by protocol and connect timeout. */
const encodedPolicies = new WeakMap<TrafficPolicy, Map<string, Uint8Array>>();
/**
 * The same for a policy without a circuit breaker, outlier detection or health check (most services'): those
 * bytes depend only on the protocol, the load balancing and the connect timeout, so callees with equal such
 * policies (distinct objects) share them. A few hundred keys at most (4 protocols, 5 balancings, the timeouts
 * the settings ever had); cleared if a long-lived process ever gathers more.
 */
const plainPolicies = new Map<string, Uint8Array>();
const PLAIN_POLICIES_MAX = 256;
/** One writer for every cluster (they never overlap); `finish()` copies the bytes out. */
const clusterWriter = new BinaryWriter();

/** `packAny(Cluster, sidecarCluster(input))`, byte for byte, written around bytes its callee's policy shares. */
export function encodeSidecarCluster({ name, protocol, policy, connectTimeoutMs, peerSpiffeId, peerSni }: ClusterInput): Any {
  const c = (clusterConstants ??= { typeUrl: typeUrlOf(Cluster), configSource: ConfigSource.encode(adsConfigSource()).finish() });
  const policyFields = encodedSidecarClusterPolicy(protocol, policy, connectTimeoutMs);
  let bytes: Uint8Array;
  try {
    const w = clusterWriter;
    if (name !== '') w.uint32(CLUSTER_NAME).string(name);
    w.uint32(CLUSTER_TYPE).int32(Cluster_DiscoveryType.EDS);
    w.uint32(CLUSTER_EDS_CONFIG).fork().uint32(EDS_CONFIG_SOURCE).bytes(c.configSource);
    if (name !== '') w.uint32(EDS_SERVICE_NAME).string(name);
    w.join().raw(policyFields);
    if (peerSpiffeId) {
      const tls = sidecarUpstreamTls({ spiffeId: peerSpiffeId, sni: peerSni ?? '', protocol });
      TransportSocket.encode(tls, w.uint32(CLUSTER_TRANSPORT_SOCKET).fork()).join();
    }
    bytes = w.finish();
  } catch (err) {
    clusterWriter.finish(); // drop what a failed encoding left in the shared writer
    throw err;
  }
  return { $type: 'google.protobuf.Any', typeUrl: c.typeUrl, value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

function encodedSidecarClusterPolicy(protocol: Protocol, policy: TrafficPolicy, connectTimeoutMs: number): Uint8Array {
  const plain = !policy.circuitBreaker && !policy.outlierDetection && !policy.healthCheck;
  const key = plain ? `${protocol}|${connectTimeoutMs}|${policy.loadBalancing}` : `${protocol}|${connectTimeoutMs}`;
  let byKey = plain ? plainPolicies : encodedPolicies.get(policy);
  if (!byKey) encodedPolicies.set(policy, (byKey = new Map()));
  let bytes = byKey.get(key);
  if (!bytes) {
    if (plain && plainPolicies.size >= PLAIN_POLICIES_MAX) plainPolicies.clear();
    // Only these fields set: their encoding is exactly their part of the whole cluster's.
    bytes = Cluster.encode(Cluster.fromPartial(sidecarClusterPolicy(protocol, policy, connectTimeoutMs))).finish();
    byKey.set(key, bytes);
  }
  return bytes;
}

function healthCheck(protocol: Protocol, check: NonNullable<TrafficPolicy['healthCheck']>): HealthCheck {
  const healthChecker: HealthCheck['healthChecker'] =
    check.path !== undefined && protocol !== 'tcp'
      ? {
          $case: 'httpHealthCheck',
          value: HealthCheck_HttpHealthCheck.fromPartial({
            path: check.path,
            // The callee's sidecar speaks only HTTP/2 to an HTTP/2 or gRPC cluster's callers; HTTP/1.1 probes would fail.
            codecClientType: protocol === 'grpc' || protocol === 'http2' ? CodecClientType.HTTP2 : CodecClientType.HTTP1,
          }),
        }
      : protocol === 'grpc'
        ? { $case: 'grpcHealthCheck', value: HealthCheck_GrpcHealthCheck.fromPartial({}) }
        : { $case: 'tcpHealthCheck', value: HealthCheck_TcpHealthCheck.fromPartial({}) };
  return HealthCheck.fromPartial({
    timeout: duration(check.timeoutMs),
    interval: duration(check.intervalMs),
    unhealthyThreshold: check.unhealthyThreshold,
    healthyThreshold: check.healthyThreshold,
    healthChecker,
  });
}

/**
 * The cluster a proxyless gRPC client gets: only what grpc-js-xds implements
 * (EDS over ADS, ROUND_ROBIN or RING_HASH, max_requests, outlier detection), so it never NACKs.
 */
export function proxylessCluster({ name, edsServiceName = name, policy, peerSpiffeId }: ClusterInput): Cluster {
  const maxRequests = policy.circuitBreaker?.maxRequests;
  return Cluster.fromPartial({
    name,
    clusterDiscoveryType: { $case: 'type', value: Cluster_DiscoveryType.EDS },
    edsClusterConfig: { edsConfig: adsConfigSource(), serviceName: edsServiceName },
    lbPolicy: policy.loadBalancing === 'ring_hash' ? Cluster_LbPolicy.RING_HASH : Cluster_LbPolicy.ROUND_ROBIN,
    ...(maxRequests !== undefined ? { circuitBreakers: { thresholds: [{ priority: RoutingPriority.DEFAULT, maxRequests }] } } : {}),
    ...(policy.outlierDetection ? { outlierDetection: proxylessOutlierDetection(policy.outlierDetection) } : {}),
    ...(peerSpiffeId ? { transportSocket: proxylessUpstreamTls(peerSpiffeId) } : {}),
  });
}

/**
 * gRPC's outlier detection (gRFC A50) has no consecutive-5xx ejection, only
 * success-rate and failure-percentage: the policy's "N failures in a row" becomes
 * "at least N calls in an interval, half of them failed". Success-rate ejection
 * (on unless switched off) needs five hosts and a statistical spread, so it is off;
 * two hosts are enough to eject one.
 */
function proxylessOutlierDetection(outlier: NonNullable<TrafficPolicy['outlierDetection']>): OutlierDetection {
  return OutlierDetection.fromPartial({
    interval: duration(outlier.intervalMs),
    baseEjectionTime: duration(outlier.baseEjectionTimeMs),
    maxEjectionPercent: outlier.maxEjectionPercent,
    enforcingSuccessRate: 0,
    enforcingFailurePercentage: 100,
    failurePercentageThreshold: 50,
    failurePercentageMinimumHosts: 2,
    failurePercentageRequestVolume: outlier.consecutive5xx,
  });
}

/** Endpoints by locality, each locality weighted by the sum of its serving endpoints' weights. */
export function loadAssignment(clusterName: string, localities: readonly LocalityEndpoints[]): ClusterLoadAssignment {
  return ClusterLoadAssignment.fromPartial({
    clusterName,
    endpoints: localities.map((group) => ({
      locality: group.locality,
      loadBalancingWeight: group.weight,
      priority: 0,
      lbEndpoints: group.endpoints.map((endpoint) => ({
        hostIdentifier: { $case: 'endpoint', value: { address: socketAddress(endpoint.address, endpoint.port) } },
        // grpc-js-xds uses only UNKNOWN and HEALTHY endpoints; Envoy sends a DRAINING host no new requests.
        ...(endpoint.draining ? { healthStatus: HealthStatus.DRAINING } : {}),
        loadBalancingWeight: endpoint.weight,
      })),
    })),
  });
}

// Every callee's endpoints are encoded once per model (callers share them), but a connection storm at
// 10,000 services and every instance change re-encode them: written straight into a writer, byte for byte
// `packAny(ClusterLoadAssignment, loadAssignment(…))` (clusters.test.ts), instead of building the object graph
// (five nested messages per endpoint) to encode it once. Field tags in the generated encoders' order.
const CLA_CLUSTER_NAME = (1 << 3) | 2;
const CLA_ENDPOINTS = (2 << 3) | 2;
const LOCALITY_LOCALITY = (1 << 3) | 2;
const LOCALITY_LB_ENDPOINTS = (2 << 3) | 2;
const LOCALITY_WEIGHT = (3 << 3) | 2;
const LOCALITY_REGION = (1 << 3) | 2;
const LOCALITY_ZONE = (2 << 3) | 2;
const LOCALITY_SUB_ZONE = (3 << 3) | 2;
const LB_ENDPOINT_ENDPOINT = (1 << 3) | 2;
const LB_ENDPOINT_HEALTH_STATUS = (2 << 3) | 0;
const LB_ENDPOINT_WEIGHT = (4 << 3) | 2;
const ENDPOINT_ADDRESS = (1 << 3) | 2;
const ADDRESS_SOCKET_ADDRESS = (1 << 3) | 2;
const SOCKET_ADDRESS_ADDRESS = (2 << 3) | 2;
const SOCKET_ADDRESS_PORT_VALUE = (3 << 3) | 0;
const UINT32_VALUE = (1 << 3) | 0;
let loadAssignmentTypeUrl: string | undefined;

/** `packAny(ClusterLoadAssignment, loadAssignment(clusterName, localities))`, byte for byte. */
export function encodeLoadAssignment(clusterName: string, localities: readonly LocalityEndpoints[]): Any {
  let bytes: Uint8Array;
  try {
    const w = clusterWriter;
    if (clusterName !== '') w.uint32(CLA_CLUSTER_NAME).string(clusterName);
    for (const group of localities) {
      w.uint32(CLA_ENDPOINTS).fork();
      const { region, zone, subZone } = group.locality;
      w.uint32(LOCALITY_LOCALITY).fork();
      if (region !== '') w.uint32(LOCALITY_REGION).string(region);
      if (zone !== '') w.uint32(LOCALITY_ZONE).string(zone);
      if (subZone !== '') w.uint32(LOCALITY_SUB_ZONE).string(subZone);
      w.join();
      for (const endpoint of group.endpoints) {
        w.uint32(LOCALITY_LB_ENDPOINTS).fork().uint32(LB_ENDPOINT_ENDPOINT).fork().uint32(ENDPOINT_ADDRESS).fork();
        w.uint32(ADDRESS_SOCKET_ADDRESS).fork();
        if (endpoint.address !== '') w.uint32(SOCKET_ADDRESS_ADDRESS).string(endpoint.address);
        w.uint32(SOCKET_ADDRESS_PORT_VALUE).uint32(endpoint.port).join().join().join();
        if (endpoint.draining) w.uint32(LB_ENDPOINT_HEALTH_STATUS).int32(HealthStatus.DRAINING);
        writeUInt32Value(w.uint32(LB_ENDPOINT_WEIGHT), endpoint.weight).join();
      }
      writeUInt32Value(w.uint32(LOCALITY_WEIGHT), group.weight);
      // priority 0: proto3 leaves it out.
      w.join();
    }
    bytes = w.finish();
  } catch (err) {
    clusterWriter.finish(); // drop what a failed encoding left in the shared writer
    throw err;
  }
  loadAssignmentTypeUrl ??= typeUrlOf(ClusterLoadAssignment);
  return {
    $type: 'google.protobuf.Any',
    typeUrl: loadAssignmentTypeUrl,
    value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
  };
}

/** A google.protobuf.UInt32Value field (its tag already written): a wrapper is present even when its value is 0. */
function writeUInt32Value(w: BinaryWriter, value: number): BinaryWriter {
  w.fork();
  if (value !== 0) w.uint32(UINT32_VALUE).uint32(value);
  return w.join();
}

/**
 * The ext_authz gRPC upstream: a DNS name is resolved by Envoy, an IP literal is used as is.
 * `peer`: mTLS with the workload certificate, accepting only authz's SPIFFE ID.
 */
export function authzCluster(host: string, port: number, connectTimeoutMs: number, peer?: { spiffeId: string; sni: string }): Cluster {
  const isIp = /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':');
  return Cluster.fromPartial({
    name: AUTHZ_CLUSTER_NAME,
    clusterDiscoveryType: { $case: 'type', value: isIp ? Cluster_DiscoveryType.STATIC : Cluster_DiscoveryType.STRICT_DNS },
    connectTimeout: duration(connectTimeoutMs),
    lbPolicy: Cluster_LbPolicy.ROUND_ROBIN,
    typedExtensionProtocolOptions: http2ProtocolOptions(),
    loadAssignment: loadAssignment(AUTHZ_CLUSTER_NAME, [
      { locality: { region: '', zone: '', subZone: '' }, weight: 1, endpoints: [{ instanceId: 'authz', address: host, port, weight: 1 }] },
    ]),
    ...(peer ? { transportSocket: sidecarUpstreamTls({ ...peer, protocol: 'grpc' }) } : {}),
  });
}

// Trace context in the sidecars. Envoy adds a W3C `traceparent` (and keeps or
// generates `x-request-id`, which the access log records) only when its HTTP
// connection manager has a tracer; with one it joins the caller's trace (same
// trace id, its own span as the parent) or starts one. Istio does the same: a
// tracing provider on every sidecar HCM. Without a collector nothing is recorded
// (sampling 0 %) but the context still travels, so applications and their logs
// can follow a request across hops. With one (TRELLIS_TRACING_OTLP_ADDRESS) each
// sidecar sends its spans there over OTLP/gRPC, through a cluster of its own.
import type { BinaryWriter } from '@bufbuild/protobuf/wire';
import { packAny, typeUrlOf } from '@trellis/envoy-types';
import { Cluster, Cluster_DiscoveryType, Cluster_LbPolicy } from '@trellis/envoy-types/envoy/config/cluster/v3/cluster';
import { OpenTelemetryConfig } from '@trellis/envoy-types/envoy/config/trace/v3/opentelemetry';
import { HttpConnectionManager_Tracing } from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import type { DeepPartial } from '@trellis/envoy-types/envoy/config/listener/v3/listener_components';
import type { TracingSettings } from '../model';
import { duration, http2ProtocolOptions, socketAddress, utf8 } from './common';
import { TRACING_COLLECTOR_CLUSTER_NAME } from './names';

export const OPENTELEMETRY_TRACER = 'envoy.tracers.opentelemetry';

/**
 * The tracer of a sidecar HCM of `service`: propagation only (no exporter, nothing sampled), or,
 * with `tracing`, spans sent to the collector for the share of new traces it asks for (a caller's
 * sampled flag is followed either way).
 */
export function sidecarTracing(service: string, tracing: TracingSettings | undefined): DeepPartial<HttpConnectionManager_Tracing> {
  const otel = otelConfig(service, tracing);
  return {
    provider: { name: OPENTELEMETRY_TRACER, configType: { $case: 'typedConfig', value: packAny(OpenTelemetryConfig, otel) } },
    // Without a collector nothing is sampled; the context is injected regardless.
    randomSampling: { value: tracing?.samplingPercent ?? 0 },
    // x-client-trace-id forces a trace only when there is somewhere to send it.
    clientSampling: { value: tracing ? 100 : 0 },
  };
}

function otelConfig(service: string, tracing: TracingSettings | undefined): OpenTelemetryConfig {
  return OpenTelemetryConfig.fromPartial({
    serviceName: service,
    ...(tracing
      ? {
          grpcService: {
            targetSpecifier: { $case: 'envoyGrpc', value: { clusterName: TRACING_COLLECTOR_CLUSTER_NAME } },
            timeout: duration(1000),
          },
        }
      : {}),
  });
}

// Field tags of the tracer written in place below (Tracing, Tracing.Http, Any, OpenTelemetryConfig).
const TRACING_PROVIDER = (9 << 3) | 2;
const PROVIDER_NAME = (1 << 3) | 2;
const PROVIDER_TYPED_CONFIG = (3 << 3) | 2;
const ANY_TYPE_URL = (1 << 3) | 2;
const ANY_VALUE = (2 << 3) | 2;
const OTEL_SERVICE_NAME = (2 << 3) | 2;

/** What every sidecar's tracer under the same settings shares: the fields before the provider, and the exporter's. */
interface EncodedTracing {
  sampling: Uint8Array;
  exporter: Uint8Array;
}
const encodedTracings = new WeakMap<TracingSettings, EncodedTracing>();
let untraced: EncodedTracing | undefined;
let otelTypeUrl: Uint8Array | undefined;

/**
 * Writes the body of `HttpConnectionManager_Tracing.encode(fromPartial(sidecarTracing(service, tracing)))` into `w`,
 * byte for byte (sidecar-hcm.test.ts): only the service name varies between sidecars under the same settings.
 */
export function writeSidecarTracing(service: string, tracing: TracingSettings | undefined, w: BinaryWriter): BinaryWriter {
  let encoded = tracing ? encodedTracings.get(tracing) : untraced;
  if (!encoded) {
    const { provider: _provider, ...sampling } = sidecarTracing('', tracing);
    encoded = {
      // The generated encoders' order: sampling before the provider; the exporter before the service name.
      sampling: HttpConnectionManager_Tracing.encode(HttpConnectionManager_Tracing.fromPartial(sampling)).finish(),
      exporter: OpenTelemetryConfig.encode(otelConfig('', tracing)).finish(),
    };
    if (tracing) encodedTracings.set(tracing, encoded);
    else untraced = encoded;
  }
  otelTypeUrl ??= utf8(typeUrlOf(OpenTelemetryConfig));
  w.raw(encoded.sampling).uint32(TRACING_PROVIDER).fork().uint32(PROVIDER_NAME).string(OPENTELEMETRY_TRACER);
  w.uint32(PROVIDER_TYPED_CONFIG).fork().uint32(ANY_TYPE_URL).bytes(otelTypeUrl);
  // An Any leaves an empty value out.
  if (encoded.exporter.length > 0 || service !== '') {
    w.uint32(ANY_VALUE).fork().raw(encoded.exporter);
    if (service !== '') w.uint32(OTEL_SERVICE_NAME).string(service);
    w.join();
  }
  return w.join().join();
}

/** The OTLP/gRPC collector's cluster: a DNS name is resolved by Envoy, an IP literal used as is. */
export function tracingCollectorCluster(tracing: TracingSettings, connectTimeoutMs: number): Cluster {
  const { host, port } = tracing.collector;
  const isIp = /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':');
  return Cluster.fromPartial({
    name: TRACING_COLLECTOR_CLUSTER_NAME,
    clusterDiscoveryType: { $case: 'type', value: isIp ? Cluster_DiscoveryType.STATIC : Cluster_DiscoveryType.STRICT_DNS },
    connectTimeout: duration(connectTimeoutMs),
    lbPolicy: Cluster_LbPolicy.ROUND_ROBIN,
    typedExtensionProtocolOptions: http2ProtocolOptions(),
    loadAssignment: {
      clusterName: TRACING_COLLECTOR_CLUSTER_NAME,
      endpoints: [{ lbEndpoints: [{ hostIdentifier: { $case: 'endpoint', value: { address: socketAddress(host, port) } } }] }],
    },
  });
}

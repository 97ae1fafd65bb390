// Trace context in the sidecars. Envoy adds a W3C `traceparent` (and keeps or
// generates `x-request-id`, which the access log records) only when its HTTP
// connection manager has a tracer; with one it joins the caller's trace (same
// trace id, its own span as the parent) or starts one. Istio does the same: a
// tracing provider on every sidecar HCM. Without a collector nothing is recorded
// (sampling 0 %) but the context still travels, so applications and their logs
// can follow a request across hops.
import { packAny } from '@trellis/envoy-types';
import { OpenTelemetryConfig } from '@trellis/envoy-types/envoy/config/trace/v3/opentelemetry';
import type { HttpConnectionManager_Tracing } from '@trellis/envoy-types/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager';
import type { DeepPartial } from '@trellis/envoy-types/envoy/config/listener/v3/listener_components';

export const OPENTELEMETRY_TRACER = 'envoy.tracers.opentelemetry';

/** The tracer of a sidecar HCM of `service`: propagation only (no exporter, nothing sampled). */
export function sidecarTracing(service: string): DeepPartial<HttpConnectionManager_Tracing> {
  return {
    provider: {
      name: OPENTELEMETRY_TRACER,
      configType: { $case: 'typedConfig', value: packAny(OpenTelemetryConfig, OpenTelemetryConfig.fromPartial({ serviceName: service })) },
    },
    // Nothing to export to, so nothing is sampled; the context is injected regardless.
    randomSampling: { value: 0 },
    clientSampling: { value: 0 },
  };
}

// Transport security between workloads (mTLS with SPIFFE certificates from the
// mesh CA). Pure builders of the TLS pieces a proxyless gRPC client and server
// get; the certificates themselves never travel over xDS — they are files the
// agent keeps fresh, named by the bootstrap's certificate provider instance.
import { packAny } from '@trellis/envoy-types';
import { TransportSocket } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { DownstreamTlsContext, UpstreamTlsContext } from '@trellis/envoy-types/envoy/extensions/transport_sockets/tls/v3/tls';
import type { MtlsMode } from '@trellis/mesh-schema';
import { WORKLOAD_CERT_PROVIDER } from './names';

const TLS_TRANSPORT_SOCKET = 'envoy.transport_sockets.tls';

const certificateProvider = { instanceName: WORKLOAD_CERT_PROVIDER, certificateName: '' };

/**
 * What a caller uses toward a callee whose mode is permissive or strict: its own
 * certificate, the mesh roots, and the callee's SPIFFE ID as the only acceptable
 * server identity (a certificate of any other service is refused).
 */
export function proxylessUpstreamTls(calleeSpiffeId: string): TransportSocket {
  const context = UpstreamTlsContext.fromPartial({
    commonTlsContext: {
      tlsCertificateProviderInstance: certificateProvider,
      validationContextType: {
        $case: 'validationContext',
        value: {
          caCertificateProviderInstance: certificateProvider,
          matchSubjectAltNames: [{ matchPattern: { $case: 'exact', value: calleeSpiffeId } }],
        },
      },
    },
  });
  return TransportSocket.fromPartial({
    name: TLS_TRANSPORT_SOCKET,
    configType: { $case: 'typedConfig', value: packAny(UpstreamTlsContext, context) },
  });
}

/**
 * A server's TLS: its own certificate and the mesh roots. Strict requires a client
 * certificate; permissive verifies one when presented and admits callers without.
 */
export function proxylessDownstreamTls(mode: Exclude<MtlsMode, 'off'>): TransportSocket {
  const context = DownstreamTlsContext.fromPartial({
    commonTlsContext: {
      tlsCertificateProviderInstance: certificateProvider,
      validationContextType: { $case: 'validationContext', value: { caCertificateProviderInstance: certificateProvider } },
    },
    requireClientCertificate: mode === 'strict',
  });
  return TransportSocket.fromPartial({
    name: TLS_TRANSPORT_SOCKET,
    configType: { $case: 'typedConfig', value: packAny(DownstreamTlsContext, context) },
  });
}

// Transport security between workloads (mTLS with SPIFFE certificates from the
// mesh CA). Pure builders of the TLS pieces proxies get. The certificates never
// travel over xDS: they are files the agent keeps fresh. A proxyless client reads
// them through its bootstrap's certificate provider instance; an Envoy sidecar
// through path-based SDS (@trellis/mesh-contracts sidecar-certificates.ts).
import { packAny } from '@trellis/envoy-types';
import { TransportSocket } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { ApiVersion, ConfigSource } from '@trellis/envoy-types/envoy/config/core/v3/config_source';
import { SubjectAltNameMatcher_SanType } from '@trellis/envoy-types/envoy/extensions/transport_sockets/tls/v3/common';
import type { SdsSecretConfig } from '@trellis/envoy-types/envoy/extensions/transport_sockets/tls/v3/secret';
import {
  CommonTlsContext,
  DownstreamTlsContext,
  UpstreamTlsContext,
} from '@trellis/envoy-types/envoy/extensions/transport_sockets/tls/v3/tls';
import {
  SDS_TRUST_BUNDLE,
  SDS_WORKLOAD_CERTIFICATE,
  SIDECAR_CERTIFICATE_DIR,
  sidecarSdsPath,
  type MtlsMode,
  type Protocol,
  type SidecarSecretName,
} from '@trellis/mesh-schema';
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

/**
 * A secret from the sidecar's certificate directory. Envoy watches the directory
 * for moves (the agent's `..data` swap) and re-reads the files named in the SDS file.
 */
function sidecarSecret(name: SidecarSecretName): SdsSecretConfig {
  return {
    name,
    sdsConfig: ConfigSource.fromPartial({
      resourceApiVersion: ApiVersion.V3,
      configSourceSpecifier: {
        $case: 'pathConfigSource',
        value: { path: sidecarSdsPath(name), watchedDirectory: { path: SIDECAR_CERTIFICATE_DIR } },
      },
    }),
  };
}

/** The sidecar's certificate, the mesh roots, and (outbound) the only peer identities accepted. */
function sidecarCommonTls(alpnProtocols: string[], peerSpiffeIds: readonly string[] = []): CommonTlsContext {
  return CommonTlsContext.fromPartial({
    tlsCertificateSdsSecretConfigs: [sidecarSecret(SDS_WORKLOAD_CERTIFICATE)],
    validationContextType: {
      $case: 'combinedValidationContext',
      value: {
        defaultValidationContext: {
          matchTypedSubjectAltNames: peerSpiffeIds.map((id) => ({
            sanType: SubjectAltNameMatcher_SanType.URI,
            matcher: { matchPattern: { $case: 'exact', value: id } },
          })),
        },
        validationContextSdsSecretConfig: sidecarSecret(SDS_TRUST_BUNDLE),
      },
    },
    alpnProtocols,
  });
}

/** ALPN a caller offers: HTTP/2 to grpc and http2 services (the cluster speaks it), HTTP/1.1 to http, none over TCP. */
function upstreamAlpn(protocol: Protocol): string[] {
  if (protocol === 'grpc' || protocol === 'http2') return ['h2'];
  return protocol === 'http' ? ['http/1.1'] : [];
}

/**
 * What a sidecar uses toward a callee whose mode is permissive or strict: its own
 * certificate, the mesh roots, and the callee's SPIFFE ID as the only acceptable
 * URI SAN (a certificate of any other service, even from the mesh CA, is refused).
 */
export function sidecarUpstreamTls(callee: { spiffeId: string; sni: string; protocol: Protocol }): TransportSocket {
  const context = UpstreamTlsContext.fromPartial({
    commonTlsContext: sidecarCommonTls(upstreamAlpn(callee.protocol), [callee.spiffeId]),
    sni: callee.sni,
  });
  return TransportSocket.fromPartial({
    name: TLS_TRANSPORT_SOCKET,
    configType: { $case: 'typedConfig', value: packAny(UpstreamTlsContext, context) },
  });
}

/**
 * An inbound listener's TLS: the sidecar's certificate, peers verified against the
 * mesh roots. `requireClientCertificate` in strict mode; in permissive mode a TLS
 * caller's certificate is verified when presented. Which service a verified peer is
 * decides RBAC (filters.ts), not the handshake.
 */
export function sidecarDownstreamTls(protocol: Protocol, requireClientCertificate: boolean): TransportSocket {
  const context = DownstreamTlsContext.fromPartial({
    commonTlsContext: sidecarCommonTls(protocol === 'tcp' ? [] : ['h2', 'http/1.1']),
    requireClientCertificate,
  });
  return TransportSocket.fromPartial({
    name: TLS_TRANSPORT_SOCKET,
    configType: { $case: 'typedConfig', value: packAny(DownstreamTlsContext, context) },
  });
}

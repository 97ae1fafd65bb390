// What a proxyless service needs to speak mTLS through grpc-js-xds: a bootstrap
// whose certificate provider reads the agent's certificate files (the control
// plane's TLS resources name it), and the verified caller handed to handlers.
import { ServerInterceptingCall, type ServerInterceptingCallInterface, type ServerInterceptor } from '@grpc/grpc-js';
import { serviceOfPeerCertificate } from '@trellis/pki';
import type { CertificateFiles } from './certificate-files';
import { CALLER_KEY_ID_METADATA_KEY, CALLER_METADATA_KEY } from './grpc-interceptors';

/** The certificate provider instance the control plane's TLS contexts name. */
export const WORKLOAD_CERT_PROVIDER = 'trellis-workload';
/** gRPC's standard server listener name; the control plane answers it for any bound address. */
export const SERVER_LISTENER_TEMPLATE = 'grpc/server?xds.resource.listening_address=%s';

export interface ProxylessBootstrapOptions {
  /**
   * host:port of the xDS server (or the agent's local relay). Several control-plane
   * replicas: an array (or a comma-separated list) of IP:port addresses, see xdsServerUri.
   */
  xdsServer: string | readonly string[];
  service: string;
  nodeId: string;
  locality?: { region?: string; zone?: string; subZone?: string };
  /** The workload certificate files; without them the service speaks plaintext only. */
  certificates?: CertificateFiles;
  /** How often grpc-js re-reads the files (default 10 s; renewals happen hours before expiry). */
  refreshIntervalSeconds?: number;
}

const IPV4_HOST_PORT = /^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/;
const IPV6_HOST_PORT = /^\[[0-9a-fA-F:.]+\]:\d{1,5}$/;

/**
 * The xDS server_uri for one or several control-plane replicas. grpc-js-xds talks
 * only to xds_servers[0], but its target may name several addresses
 * (`ipv4:10.0.0.5:18000,10.0.0.6:18000`): the channel connects to the first that
 * answers and, when that replica goes away, to another at once instead of after
 * a reconnect backoff. Only IP literals can be listed this way; for names, give
 * one DNS name that resolves to every replica (a headless Kubernetes Service).
 */
export function xdsServerUri(addresses: string | readonly string[]): string {
  const list = (typeof addresses === 'string' ? addresses.split(',') : [...addresses]).map((a) => a.trim()).filter((a) => a !== '');
  if (list.length === 0) throw new Error('xdsServer: at least one control-plane address is needed');
  if (list.length === 1) return list[0]!;
  if (list.every((a) => IPV4_HOST_PORT.test(a))) return `ipv4:${list.join(',')}`;
  if (list.every((a) => IPV6_HOST_PORT.test(a))) return `ipv6:${list.join(',')}`;
  throw new Error(
    `xdsServer: several control-plane addresses must all be IPv4 (a.b.c.d:port) or all IPv6 ([addr]:port) literals; ` +
      `for names, use one DNS name that resolves to every replica (got ${list.join(', ')})`,
  );
}

/** The JSON for GRPC_XDS_BOOTSTRAP_CONFIG: node.cluster = the service, node.id = the instance, like a sidecar. */
export function proxylessBootstrap(options: ProxylessBootstrapOptions): Record<string, unknown> {
  const { locality = {} } = options;
  return {
    xds_servers: [{ server_uri: xdsServerUri(options.xdsServer), channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: {
      id: options.nodeId,
      cluster: options.service,
      locality: { region: locality.region ?? '', zone: locality.zone ?? '', sub_zone: locality.subZone ?? '' },
    },
    server_listener_resource_name_template: SERVER_LISTENER_TEMPLATE,
    ...(options.certificates
      ? {
          certificate_providers: {
            [WORKLOAD_CERT_PROVIDER]: {
              plugin_name: 'file_watcher',
              config: {
                certificate_file: options.certificates.certificateFile,
                private_key_file: options.certificates.privateKeyFile,
                ca_certificate_file: options.certificates.caCertificateFile,
                refresh_interval: `${options.refreshIntervalSeconds ?? 10}s`,
              },
            },
          },
        }
      : {}),
  };
}

/**
 * Server interceptor: hands handlers the caller its verified client certificate
 * proves (`x-trellis-caller`), after removing anything the client sent under that
 * name. Who may call at all is the XdsServer's RBAC (from the control plane); a
 * call without a certificate (permissive mode) has no caller.
 */
export function peerCallerInterceptor(trustDomain: () => string): ServerInterceptor {
  return (_method, call: ServerInterceptingCallInterface) =>
    new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, mdNext) {
            metadata.remove(CALLER_METADATA_KEY);
            metadata.remove(CALLER_KEY_ID_METADATA_KEY);
            const caller = serviceOfPeerCertificate(call.getAuthContext().sslPeerCertificate, trustDomain());
            if (caller) metadata.set(CALLER_METADATA_KEY, caller);
            mdNext(metadata);
          },
        });
      },
    });
}

// The Envoy bootstrap a VM or pod sidecar starts with (GET /bootstrap/{service}).
// Pure: everything else the sidecar runs arrives over ADS. The only static
// pieces are the xDS cluster and the local app, whose port is per node.
import { stringify } from 'yaml';
import { SDS_WORKLOAD_CERTIFICATE, SIDECAR_CERTIFICATE_DIR, sidecarSdsPath, type Locality, type Protocol } from '@trellis/mesh-schema';
import { LOCAL_APP_CLUSTER_NAME, OUTBOUND_PORT_METADATA } from '../envoy/names';
import { DEFAULT_TRANSLATOR_SETTINGS } from '../model/mesh-model';

export const XDS_CLUSTER_NAME = 'trellis-xds';
/** Where the translation expects it (TranslatorSettings.adminPort keeps TCP dependencies off it). */
export const DEFAULT_ADMIN_PORT = DEFAULT_TRANSLATOR_SETTINGS.adminPort;

export interface BootstrapInput {
  /** node.cluster: the service this sidecar fronts. */
  service: string;
  /** node.id: unique per instance (pod name, hostname). */
  nodeId: string;
  /** The application's port on 127.0.0.1 (the `local-app` cluster); also node metadata `trellis.app_port`. */
  appPort: number;
  /** The application's protocol: grpc and http2 apps are reached over HTTP/2. */
  appProtocol: Protocol;
  /**
   * Every control-plane replica's xDS address as this sidecar reaches it. All of
   * them are endpoints of the xDS cluster, so when the replica a sidecar streams
   * from goes away it reconnects to another at once, without a DNS round.
   */
  xds: ReadonlyArray<{ host: string; port: number }>;
  /**
   * Credential for the ADS stream, sent as `authorization` initial metadata.
   * A literal `${VAR}` placeholder is fine: the start script substitutes it.
   */
  xdsToken?: string;
  /**
   * TLS to the control plane: CA to verify it, and optionally a client certificate (mTLS):
   * files that stay as they are (`certFile`, `keyFile`), or `workloadCertificate`, the one
   * the agent keeps renewed, read over path-based SDS like every mesh TLS context, so a
   * reconnect after a renewal presents the new certificate.
   */
  xdsTls?: { caFile: string; certFile?: string; keyFile?: string; workloadCertificate?: boolean; serverName?: string };
  locality?: Partial<Locality>;
  /** Admin interface, always on 127.0.0.1. */
  adminPort?: number;
  /**
   * Where this sidecar's outbound listener binds on 127.0.0.1, when not the mesh-wide port:
   * node metadata `trellis.outbound_port`, which the control plane builds the listener on.
   * Two sidecars on one VM need their own.
   */
  outboundPort?: number;
  /**
   * A port on every address where `GET /ready` is proxied to the admin interface's /ready, which
   * answers 200 only once Envoy is LIVE: its first clusters and listeners from xDS are loaded.
   * Kubernetes cannot reach the admin interface on 127.0.0.1; a startup probe on this port can,
   * so the app container starts only when the mesh is ready for it.
   */
  readyPort?: number;
}

export const READY_LISTENER_NAME = 'trellis-ready';
export const ADMIN_CLUSTER_NAME = 'trellis-admin';

/** The static listener behind `readyPort`: GET /ready only, everything else 404. */
function readyListener(port: number) {
  return {
    name: READY_LISTENER_NAME,
    address: { socket_address: { address: '0.0.0.0', port_value: port } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: 'trellis_ready',
              route_config: {
                name: READY_LISTENER_NAME,
                virtual_hosts: [
                  {
                    name: 'ready',
                    domains: ['*'],
                    routes: [
                      {
                        match: { path: '/ready', headers: [{ name: ':method', string_match: { exact: 'GET' } }] },
                        route: { cluster: ADMIN_CLUSTER_NAME },
                      },
                      { match: { prefix: '/' }, direct_response: { status: 404 } },
                    ],
                  },
                ],
              },
              http_filters: [
                {
                  name: 'envoy.filters.http.router',
                  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
                },
              ],
            },
          },
        ],
      },
    ],
  };
}

const V3 = 'V3';
const HTTP2_OPTIONS = {
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
    '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
    explicit_http_config: { http2_protocol_options: {} },
  },
};

function isIpLiteral(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':');
}

function staticCluster(name: string, addresses: ReadonlyArray<{ host: string; port: number }>, http2: boolean) {
  return {
    name,
    type: addresses.every((a) => isIpLiteral(a.host)) ? 'STATIC' : 'STRICT_DNS',
    connect_timeout: '1s',
    ...(http2 ? { typed_extension_protocol_options: HTTP2_OPTIONS } : {}),
    load_assignment: {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: addresses.map(({ host, port }) => ({
            endpoint: { address: { socket_address: { address: host, port_value: port } } },
          })),
        },
      ],
    },
  };
}

/** The same path-based SDS reference the control plane's TLS contexts make (envoy/workload-tls.ts). */
function sidecarSecretReference(name: typeof SDS_WORKLOAD_CERTIFICATE) {
  return {
    name,
    sds_config: {
      path_config_source: { path: sidecarSdsPath(name), watched_directory: { path: SIDECAR_CERTIFICATE_DIR } },
      resource_api_version: V3,
    },
  };
}

/** The bootstrap as a plain object in Envoy's proto-JSON field names. */
export function buildBootstrap(input: BootstrapInput): Record<string, unknown> {
  const adsSource = { ads: {}, resource_api_version: V3 };
  if (input.xds.length === 0) throw new Error('a bootstrap needs at least one control-plane address');
  const xdsCluster = staticCluster(XDS_CLUSTER_NAME, input.xds, true);
  const tls = input.xdsTls;
  const xdsClusterWithTls = tls
    ? {
        ...xdsCluster,
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
            // One name for every replica: their certificates must all carry it (or set server_name).
            sni: tls.serverName ?? input.xds[0]!.host,
            common_tls_context: {
              validation_context: { trusted_ca: { filename: tls.caFile } },
              ...(tls.certFile && tls.keyFile
                ? { tls_certificates: [{ certificate_chain: { filename: tls.certFile }, private_key: { filename: tls.keyFile } }] }
                : tls.workloadCertificate
                  ? { tls_certificate_sds_secret_configs: [sidecarSecretReference(SDS_WORKLOAD_CERTIFICATE)] }
                  : {}),
            },
          },
        },
      }
    : xdsCluster;
  const http2App = input.appProtocol === 'grpc' || input.appProtocol === 'http2';
  return {
    node: {
      id: input.nodeId,
      cluster: input.service,
      locality: { region: input.locality?.region ?? '', zone: input.locality?.zone ?? '', sub_zone: input.locality?.subZone ?? '' },
      metadata: { 'trellis.app_port': input.appPort, ...(input.outboundPort ? { [OUTBOUND_PORT_METADATA]: input.outboundPort } : {}) },
    },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: input.adminPort ?? DEFAULT_ADMIN_PORT } } },
    dynamic_resources: {
      ads_config: {
        api_type: 'GRPC',
        transport_api_version: V3,
        set_node_on_first_message_only: true,
        grpc_services: [
          {
            envoy_grpc: { cluster_name: XDS_CLUSTER_NAME },
            ...(input.xdsToken !== undefined ? { initial_metadata: [{ key: 'authorization', value: `Bearer ${input.xdsToken}` }] } : {}),
          },
        ],
      },
      cds_config: adsSource,
      lds_config: adsSource,
    },
    static_resources: {
      ...(input.readyPort ? { listeners: [readyListener(input.readyPort)] } : {}),
      clusters: [
        xdsClusterWithTls,
        staticCluster(LOCAL_APP_CLUSTER_NAME, [{ host: '127.0.0.1', port: input.appPort }], http2App),
        ...(input.readyPort
          ? [staticCluster(ADMIN_CLUSTER_NAME, [{ host: '127.0.0.1', port: input.adminPort ?? DEFAULT_ADMIN_PORT }], false)]
          : []),
      ],
    },
  };
}

export type BootstrapFormat = 'yaml' | 'json';

/** YAML for a `.yaml` config path, JSON for a `.json` one (Envoy picks the parser by extension). */
export function renderBootstrap(input: BootstrapInput, format: BootstrapFormat = 'yaml'): string {
  const bootstrap = buildBootstrap(input);
  const header = `# Envoy bootstrap of a sidecar of service ${input.service} (node ${input.nodeId}), rendered by the Trellis control plane.\n`;
  // No anchors/aliases: plain YAML that envsubst-style start scripts and every YAML reader handle.
  return format === 'json'
    ? `${JSON.stringify(bootstrap, null, 2)}\n`
    : header + stringify(bootstrap, { lineWidth: 0, aliasDuplicateObjects: false });
}

// xDS resource type URLs, in one place (cf. go-control-plane pkg/resource/v3).
export const TypeUrl = {
  Listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  RouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  Cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  ClusterLoadAssignment: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  Secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
} as const;

export type XdsTypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

/**
 * Make-before-break order for pushes on an ADS stream: clusters before the
 * endpoints they use, listeners before the routes they reference, secrets first.
 */
export const ADS_PUSH_ORDER: readonly XdsTypeUrl[] = [
  TypeUrl.Secret,
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
];

/** Short names for logs and metric labels. */
export const TYPE_SHORT_NAME: Record<XdsTypeUrl, string> = {
  [TypeUrl.Listener]: 'lds',
  [TypeUrl.RouteConfiguration]: 'rds',
  [TypeUrl.Cluster]: 'cds',
  [TypeUrl.ClusterLoadAssignment]: 'eds',
  [TypeUrl.Secret]: 'sds',
};

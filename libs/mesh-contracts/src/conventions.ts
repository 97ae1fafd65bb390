// Names fixed across the deployables, in one place: the control plane, authz and
// the deploy recipes all depend on them.

/**
 * `aud` of the token a sidecar presents to open an xDS stream: authz issues it
 * (`POST /v1/token {"audience":"trellis-xds"}`), the control plane checks it.
 * No service may take this name, or its mesh tokens would open xDS streams.
 */
export const XDS_TOKEN_AUDIENCE = 'trellis-xds';

/**
 * A service name: a DNS label (lower-case letters, digits and "-", 1-63 characters).
 * Service names become etcd key segments, SPIFFE IDs, Envoy names, mesh token `sub`s
 * and the caller header: anything else is refused before it reaches any of them.
 */
export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * The largest xDS message on the wire: the control plane sends responses up to this size (a big mesh's CDS
 * or EDS exceeds grpc-js's default 4 MiB receive limit), and whatever carries or receives them (the agent's
 * xDS relay) must accept as much, or a response the control plane sent fails on the way.
 */
export const XDS_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Service names that stand for a Trellis component, never a registered service. */
export const RESERVED_SERVICE_NAMES: ReadonlySet<string> = new Set([XDS_TOKEN_AUDIENCE]);

/**
 * ext_authz per-route `context_extensions`: the control plane sets them on each
 * route, authz reads them. They say who calls whom in a way the application cannot
 * forge (never `x-envoy-downstream-service-cluster`, which any client can send).
 */
export const CONTEXT_SOURCE = 'trellis.source';
export const CONTEXT_DESTINATION = 'trellis.destination';
/** `outbound` (A's sidecar asks for A→B), `inbound` (B's sidecar validates), `edge` (Contour or a public service's sidecar). */
export const CONTEXT_DIRECTION = 'trellis.direction';

/**
 * Headers the mesh sets for the upstream application after verifying them; any
 * copy a client sent is removed first. The proxyless SDK uses the same names.
 */
export const CALLER_HEADER = 'x-trellis-caller';
export const ACCESS_EMAIL_HEADER = 'x-trellis-access-email';
export const ACCESS_SERVICE_TOKEN_HEADER = 'x-trellis-access-service-token';

/**
 * Workload identities are SPIFFE IDs in a certificate's URI SAN:
 * `spiffe://<trust domain>/svc/<service>`. The trust domain is `mesh/settings.trustDomain`
 * (authz writes it); records written before it existed mean this default.
 */
export const DEFAULT_TRUST_DOMAIN = 'trellis.local';

export function spiffeIdOf(trustDomain: string, service: string): string {
  return `spiffe://${trustDomain}/svc/${service}`;
}

/** The service a SPIFFE ID names in `trustDomain`, or undefined for any other URI (another domain, another path). */
export function serviceOfSpiffeId(uri: string, trustDomain: string): string | undefined {
  const prefix = `spiffe://${trustDomain}/svc/`;
  if (!uri.startsWith(prefix)) return undefined;
  const service = uri.slice(prefix.length);
  return DNS_LABEL.test(service) ? service : undefined;
}

/**
 * Trellis's own components have identities outside `/svc/`, so no registered service
 * (whatever its name) can be issued one: `spiffe://<trust domain>/trellis/<component>`.
 * - `authz`: authz's serving certificate (its ext_authz gRPC port and its mTLS token port);
 *   clients pin this ID.
 * - `edge`: the edge proxy (Contour's Envoy) presenting itself to authz for edge Checks.
 */
export type TrellisComponent = 'authz' | 'edge';

export function componentSpiffeIdOf(trustDomain: string, component: TrellisComponent): string {
  return `spiffe://${trustDomain}/trellis/${component}`;
}

// Names fixed across the deployables, in one place: the control plane, authz and
// the deploy recipes all depend on them.

/**
 * `aud` of the token a sidecar presents to open an xDS stream: authz issues it
 * (`POST /v1/token {"audience":"trellis-xds"}`), the control plane checks it.
 * No service may take this name, or its mesh tokens would open xDS streams.
 */
export const XDS_TOKEN_AUDIENCE = 'trellis-xds';

/** Service names that stand for a Trellis component, never a registered service. */
export const RESERVED_SERVICE_NAMES: ReadonlySet<string> = new Set([XDS_TOKEN_AUDIENCE]);

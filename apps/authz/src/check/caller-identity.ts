// Who is asking: the identity in the client certificate of the Check's mTLS
// connection, never what the request says. The route's context extensions still
// say which way the request goes and to whom; the certificate says who the
// asking proxy is, and the two must agree:
//   outbound  the proxy must be a service; its service is the source (a
//             `trellis.source` naming another service is an impersonation attempt)
//   inbound   the proxy must be the destination's own sidecar
//   edge      the edge proxy (spiffe://<td>/trellis/edge), or a public service's
//             own sidecar naming itself
// Without a verified certificate nothing is decided, unless the operator runs
// authz for local development (TRELLIS_ALLOW_INSECURE_CALLERS).
import { CONTEXT_DESTINATION, CONTEXT_SOURCE } from '@trellis/mesh-contracts';
import type { PeerIdentity } from '@trellis/pki';
import type { Direction } from '../metrics';
import type { RouteContext } from './check-attributes';
import { forbid, unauthenticated, type CallerIdentityDenial, type Decision } from './decision';

export type CallerIdentityResult =
  /** `contextExtensions` with the source the certificate proves (outbound). */
  { ok: true; contextExtensions: RouteContext } | { ok: false; reason: CallerIdentityDenial; decision: Decision };

/**
 * Checks the Check's sender against what it asks. `peer` is undefined when the
 * connection carried no verified client certificate.
 */
export function authorizeCaller(
  direction: Direction,
  context: RouteContext,
  peer: PeerIdentity | undefined,
  allowInsecureCallers: boolean,
): CallerIdentityResult {
  if (!peer) {
    if (allowInsecureCallers) return { ok: true, contextExtensions: context };
    return deny(
      'peer-unauthenticated',
      unauthenticated('peer-unauthenticated', 'authz answers only proxies that present a workload certificate (mTLS)'),
    );
  }
  if (peer.kind === 'unknown')
    return deny('peer-unknown-identity', forbid('peer-unknown-identity', 'the client certificate names no service of this mesh'));
  const source = context[CONTEXT_SOURCE];
  const destination = context[CONTEXT_DESTINATION];
  switch (direction) {
    case 'outbound': {
      if (peer.kind !== 'service') return deny('peer-not-a-service', forbid('peer-not-a-service', 'outbound checks come from a service'));
      if (source !== undefined && source !== peer.service)
        return deny(
          'source-mismatch',
          forbid('source-mismatch', `the route says ${CONTEXT_SOURCE}=${source}, the client certificate proves ${peer.service}`),
        );
      return { ok: true, contextExtensions: source === peer.service ? context : { ...context, [CONTEXT_SOURCE]: peer.service } };
    }
    case 'inbound':
      if (peer.kind !== 'service') return deny('peer-not-a-service', forbid('peer-not-a-service', 'inbound checks come from a service'));
      if (destination !== peer.service)
        return deny(
          'destination-mismatch',
          forbid(
            'destination-mismatch',
            `${peer.service}'s proxy may validate only its own inbound calls, not ${destination ?? '(none)'}'s`,
          ),
        );
      return { ok: true, contextExtensions: context };
    case 'edge':
      if (peer.kind === 'component' && peer.component === 'edge') return { ok: true, contextExtensions: context };
      if (peer.kind === 'service' && destination === peer.service) return { ok: true, contextExtensions: context };
      return deny(
        'edge-peer-not-allowed',
        forbid('edge-peer-not-allowed', "edge checks come from the edge proxy or the destination's own sidecar"),
      );
    default:
      // No direction: the Check itself is refused as misconfigured.
      return { ok: true, contextExtensions: context };
  }
}

const deny = (reason: CallerIdentityDenial, decision: Decision): CallerIdentityResult => ({ ok: false, reason, decision });

// Reading the identity out of a verified peer certificate. Only URI SANs of the
// mesh's trust domain count: a certificate from another domain, or one whose
// identity is only in its subject, names no service.
import type { PeerCertificate } from 'node:tls';
import { componentSpiffeIdOf, serviceOfSpiffeId, type TrellisComponent } from '@trellis/mesh-contracts';

/** The URI SANs of a certificate as Node reports them (`subjectaltname`: "URI:…, DNS:…"). */
export function uriSans(subjectAltName: string | undefined): string[] {
  return (subjectAltName ?? '')
    .split(/,\s*/)
    .filter((san) => san.startsWith('URI:'))
    .map((san) => san.slice(4));
}

/**
 * The service a peer certificate proves, or undefined. A certificate with more than one
 * SPIFFE ID is refused (an X.509-SVID has exactly one).
 */
export function serviceOfPeerCertificate(
  cert: Pick<PeerCertificate, 'subjectaltname'> | undefined,
  trustDomain: string,
): string | undefined {
  const spiffe = uriSans(cert?.subjectaltname).filter((uri) => uri.startsWith('spiffe://'));
  if (spiffe.length !== 1) return undefined;
  return serviceOfSpiffeId(spiffe[0]!, trustDomain);
}

/** Who a verified peer certificate says it is: a service, one of Trellis's components, or nobody we know. */
export type PeerIdentity = { kind: 'service'; service: string } | { kind: 'component'; component: TrellisComponent } | { kind: 'unknown' };

const COMPONENTS: readonly TrellisComponent[] = ['authz', 'edge'];

/** The identity of a verified peer certificate in `trustDomain`: exactly one SPIFFE ID, naming a service or a component. */
export function identityOfPeerCertificate(cert: Pick<PeerCertificate, 'subjectaltname'> | undefined, trustDomain: string): PeerIdentity {
  const spiffe = uriSans(cert?.subjectaltname).filter((uri) => uri.startsWith('spiffe://'));
  if (spiffe.length !== 1) return { kind: 'unknown' };
  const id = spiffe[0]!;
  const service = serviceOfSpiffeId(id, trustDomain);
  if (service) return { kind: 'service', service };
  const component = COMPONENTS.find((c) => componentSpiffeIdOf(trustDomain, c) === id);
  return component ? { kind: 'component', component } : { kind: 'unknown' };
}

/**
 * A TLS client's server identity check (`checkServerIdentity`) that pins a SPIFFE ID
 * instead of a host name: the server's certificate, already verified against the
 * trust bundle, must carry exactly `expected` (e.g. authz's spiffe://<td>/trellis/authz).
 */
export function spiffeServerIdentityCheck(
  expected: string,
): (hostname: string, cert: Pick<PeerCertificate, 'subjectaltname'>) => Error | undefined {
  return (_hostname, cert) => {
    const spiffe = uriSans(cert.subjectaltname).filter((uri) => uri.startsWith('spiffe://'));
    return spiffe.length === 1 && spiffe[0] === expected
      ? undefined
      : new Error(`the server's certificate names ${spiffe.join(', ') || 'no SPIFFE ID'}, not ${expected}`);
  };
}

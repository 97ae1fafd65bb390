// Reading the identity out of a verified peer certificate. Only URI SANs of the
// mesh's trust domain count: a certificate from another domain, or one whose
// identity is only in its subject, names no service.
import type { PeerCertificate } from 'node:tls';
import { serviceOfSpiffeId } from '@trellis/mesh-contracts';

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

// Who may open an xDS stream for a service. A proxy proves its service with a
// workload certificate from the mesh CA (mTLS: the one URI SAN
// spiffe://<trust domain>/svc/<name>, trust domain from mesh/settings), or with a mesh token (RS256, issued by authz, `aud` = XDS_TOKEN_AUDIENCE, `sub` = the
// service) in the `authorization: Bearer …` metadata — Envoy sends it through
// the ADS grpc_service `initial_metadata`. A token naming another service than
// `node.cluster` is refused. Clients that present nothing (grpc-js-xds bootstraps
// only know insecure channel credentials) are admitted only when the operator
// allows it (TRELLIS_XDS_ALLOW_INSECURE_CLIENTS), and never receive secrets.
import type { PeerCertificate } from 'node:tls';
import type { Metadata } from '@grpc/grpc-js';
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import {
  DEFAULT_TRUST_DOMAIN,
  MAX_MESH_TOKEN_LIFETIME_SECONDS,
  verifyMeshToken,
  XDS_TOKEN_AUDIENCE,
  type AuthzPublicKey,
  type MeshSettings,
  type MeshTokenKeyLookup,
} from '@trellis/mesh-schema';
import { serviceOfPeerCertificate } from '@trellis/pki';

export type StreamAuthResult =
  { admitted: true; authenticated: boolean; method: 'certificate' | 'token' | 'insecure' } | { admitted: false; reason: string };

export interface TokenKeys {
  authzKeys: ReadonlyMap<string, AuthzPublicKey>;
  meshSettings?: MeshSettings | undefined;
}

export type StreamAuthenticator = (metadata: Metadata, service: string, peerCertificate?: PeerCertificate) => Promise<StreamAuthResult>;

/**
 * The service a verified client certificate proves: its one SPIFFE ID in the mesh's trust
 * domain. A subject CN proves nothing (any CA-signed certificate could carry any CN).
 */
export function serviceOfCertificate(certificate: PeerCertificate, trustDomain: string): string | undefined {
  return serviceOfPeerCertificate(certificate, trustDomain);
}

export function createStreamAuthenticator(options: { allowInsecure: boolean; keys: () => TokenKeys }): StreamAuthenticator {
  return async (metadata, service, peerCertificate) => {
    const header = metadata.get('authorization')[0];
    if (peerCertificate) {
      // The TLS layer verified the chain (the server requires client certificates when it has a client CA).
      const named = serviceOfCertificate(peerCertificate, options.keys().meshSettings?.trustDomain ?? DEFAULT_TRUST_DOMAIN);
      if (named !== service)
        return {
          admitted: false,
          reason: `client certificate names service ${JSON.stringify(named ?? '')}, not node.cluster "${service}"`,
        };
      if (header === undefined) return { admitted: true, authenticated: true, method: 'certificate' };
    }
    if (header === undefined) {
      return options.allowInsecure
        ? { admitted: true, authenticated: false, method: 'insecure' }
        : {
            admitted: false,
            reason: 'no credentials: present a mesh token in "authorization: Bearer <token>" (insecure clients are not allowed)',
          };
    }
    const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(String(header));
    if (!match) return { admitted: false, reason: 'malformed authorization metadata: expected "Bearer <token>"' };
    const refused = await xdsTokenRefusal(match[1]!, service, options.keys());
    if (refused) return { admitted: false, reason: refused.replace('does not name the service', 'does not match node.cluster') };
    return { admitted: true, authenticated: true, method: 'token' };
  };
}

/**
 * Why `token` does not prove `service` (undefined when it does): an xDS token, checked
 * by the mesh's one token rule (as authz and the SDK apply it) — alg and key strength,
 * iss, aud = XDS_TOKEN_AUDIENCE, a required exp and iat, no iat in the future, a
 * bounded lifetime, a sub that is a service name — whose `sub` is `service`.
 */
export async function xdsTokenRefusal(token: string, service: string, { authzKeys, meshSettings }: TokenKeys): Promise<string | undefined> {
  if (!meshSettings) return 'mesh settings not loaded: cannot check the token issuer';
  if (authzKeys.size === 0) return 'no authz public keys published: cannot verify tokens';
  const verified = await verifyMeshToken(token, keyLookup(authzKeys), {
    issuer: meshSettings.tokenIssuer,
    audience: XDS_TOKEN_AUDIENCE,
    clockSkewSeconds: meshSettings.clockSkewSeconds,
    maxLifetimeSeconds: MAX_MESH_TOKEN_LIFETIME_SECONDS,
  });
  if (!verified.valid) return `invalid token: ${verified.reason}: ${verified.detail}`;
  if (verified.subject !== service) return `token subject does not name the service "${service}"`;
  return undefined;
}

/** Published keys by kid, each imported once per record. */
const imported = new WeakMap<AuthzPublicKey, KeyObject>();
function keyLookup(keys: ReadonlyMap<string, AuthzPublicKey>): MeshTokenKeyLookup {
  return (kid) => {
    const record = keys.get(kid);
    if (!record) return undefined;
    let key = imported.get(record);
    if (!key) {
      try {
        key = createPublicKey({ key: record.jwk as JsonWebKey, format: 'jwk' });
      } catch {
        return undefined; // no usable key: the token names an unknown kid
      }
      imported.set(record, key);
    }
    return { kid, alg: record.jwk.alg, key };
  };
}

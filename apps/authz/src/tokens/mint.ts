// Signing one mesh token: RS256 (or ES256), iss = the mesh, sub = caller, aud = callee.
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { SigningKey } from '../keys/signing-key';

export interface MeshTokenClaims {
  issuer: string;
  subject: string;
  audience: string;
  ttlSeconds: number;
}

export interface MintedToken {
  token: string;
  kid: string;
  /** Seconds since the epoch, as in the token. */
  issuedAt: number;
  expiresAt: number;
}

export async function mintMeshToken(key: SigningKey, claims: MeshTokenClaims, now: number = Date.now()): Promise<MintedToken> {
  const issuedAt = Math.floor(now / 1000);
  const expiresAt = issuedAt + claims.ttlSeconds;
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .setIssuer(claims.issuer)
    .setSubject(claims.subject)
    .setAudience(claims.audience)
    .setIssuedAt(issuedAt)
    .setNotBefore(issuedAt)
    .setExpirationTime(expiresAt)
    .setJti(randomUUID())
    .sign(key.privateKey);
  return { token, kid: key.kid, issuedAt, expiresAt };
}

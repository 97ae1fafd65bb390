// The one definition of a valid mesh token, for every verifier (authz, the
// proxyless SDK): size and shape first, then kid and alg against the published
// keys, then signature and claims. Every rejection has a reason.
import { decodeProtectedHeader, jwtVerify, errors, type KeyInput } from 'jose';
import { DNS_LABEL } from './conventions';
import { weakKeyInputReason } from './public-keys';
import { tokenTimeProblem } from './token-claims';

/** Why a signed JWT is refused, whoever minted it (the mesh here, Cloudflare Access at the edge). */
export const JWT_REJECTIONS = [
  'missing',
  'oversized',
  'malformed',
  'unknown-kid',
  'weak-key',
  'bad-signature',
  'expired',
  'not-yet-valid',
  'wrong-audience',
  'wrong-issuer',
] as const;
export type JwtRejection = (typeof JWT_REJECTIONS)[number];

/** Why a mesh token is refused: a bounded set, so it can label a metric. */
export const TOKEN_REJECTIONS = [...JWT_REJECTIONS, 'alg-not-allowed', 'invalid-claims'] as const;
export type TokenRejection = (typeof TOKEN_REJECTIONS)[number];

export type TokenVerification =
  | { valid: true; subject: string; audience: string; expiresAt: number; kid: string }
  | { valid: false; reason: TokenRejection; detail: string };

export interface TokenExpectations {
  issuer: string;
  audience: string;
  clockSkewSeconds: number;
  /** Upper bound on exp - iat (at most MAX_MESH_TOKEN_LIFETIME_SECONDS): a token claiming a longer life was not minted by us. */
  maxLifetimeSeconds: number;
}

export const ALLOWED_ALGS = ['RS256', 'ES256'] as const;
export type MeshTokenAlg = (typeof ALLOWED_ALGS)[number];

/** The longest life a mesh token may claim (exp - iat); authz's TRELLIS_TOKEN_TTL_SECONDS cannot exceed it. */
export const MAX_MESH_TOKEN_LIFETIME_SECONDS = 86_400;

/**
 * The renewal window of mesh tokens, shared by both sides: a holder (the SDK)
 * renews a token this long before its `exp`, in the background, still using the
 * one it holds; authz never hands out a cached token with less than twice this
 * left, so a renewal always gets a fresh token rather than the one it holds.
 */
export const MESH_TOKEN_RENEW_BEFORE_SECONDS = 60;

/** A published verification key. */
export interface MeshTokenKey {
  kid: string;
  alg: string;
  key: KeyInput;
}

/** The key a token's `kid` names, or undefined when none is published (or it signs with another alg). */
export type MeshTokenKeyLookup = (kid: string, alg: MeshTokenAlg) => MeshTokenKey | undefined | Promise<MeshTokenKey | undefined>;

const MAX_TOKEN_LENGTH = 4096;
const MAX_HEADER_SEGMENT_LENGTH = 512;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export async function verifyMeshToken(
  token: string | undefined,
  lookupKey: MeshTokenKeyLookup,
  expected: TokenExpectations,
  now: number = Date.now(),
): Promise<TokenVerification> {
  const maxLifetime = Math.min(expected.maxLifetimeSeconds, MAX_MESH_TOKEN_LIFETIME_SECONDS);
  if (!token) return reject('missing', 'no token');
  if (token.length > MAX_TOKEN_LENGTH) return reject('oversized', `token longer than ${MAX_TOKEN_LENGTH} characters`);
  if (!COMPACT_JWS.test(token)) return reject('malformed', 'not a signed compact JWT');
  if (token.indexOf('.') > MAX_HEADER_SEGMENT_LENGTH) return reject('oversized', 'protected header too large');

  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    return reject('malformed', 'protected header is not JSON');
  }
  if (typeof header.alg !== 'string' || !(ALLOWED_ALGS as readonly string[]).includes(header.alg)) {
    return reject('alg-not-allowed', `alg ${String(header.alg)} is not allowed`);
  }
  if (typeof header.kid !== 'string') return reject('unknown-kid', 'no kid in the header');
  const key = await lookupKey(header.kid, header.alg as MeshTokenAlg);
  if (!key) return reject('unknown-kid', 'kid is not a published key');
  if (key.alg !== header.alg) return reject('alg-not-allowed', `key ${key.kid} signs ${key.alg}, token says ${header.alg}`);
  const weakness = weakKeyInputReason(key.key);
  if (weakness) return reject('weak-key', `key ${key.kid} is not accepted: ${weakness}`);

  try {
    const { payload } = await jwtVerify(token, key.key, {
      algorithms: [key.alg],
      issuer: expected.issuer,
      audience: expected.audience,
      clockTolerance: expected.clockSkewSeconds,
      maxTokenAge: maxLifetime + expected.clockSkewSeconds,
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat'],
      currentDate: new Date(now),
    });
    // `sub` becomes the caller header and a metric's context: a validly signed token
    // naming something that is no service name ("a\nb") is refused, never passed on.
    if (typeof payload.sub !== 'string' || !DNS_LABEL.test(payload.sub)) return reject('invalid-claims', 'sub must be a service name');
    const times = tokenTimeProblem(payload, { clockSkewSeconds: expected.clockSkewSeconds, maxLifetimeSeconds: maxLifetime }, now);
    if (times) return reject(times.reason, times.detail);
    return { valid: true, subject: payload.sub, audience: expected.audience, expiresAt: payload.exp!, kid: key.kid };
  } catch (err) {
    return rejectionOf(err);
  }
}

function reject(reason: TokenRejection, detail: string): TokenVerification {
  return { valid: false, reason, detail };
}

/** Maps jose's errors onto our reasons; anything unexpected counts as malformed. */
export function rejectionOf(err: unknown): TokenVerification {
  if (err instanceof errors.JWTExpired) return reject('expired', 'token expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'aud':
        return reject('wrong-audience', 'token is for another audience');
      case 'iss':
        return reject('wrong-issuer', 'token is from another issuer');
      case 'nbf':
        return reject('not-yet-valid', 'token is not valid yet');
      case 'iat':
        return reject('not-yet-valid', 'token was issued in the future');
      default:
        return reject('invalid-claims', `${err.claim}: ${err.message}`);
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return reject('bad-signature', 'signature does not verify');
  if (err instanceof errors.JOSEAlgNotAllowed) return reject('alg-not-allowed', 'algorithm not allowed');
  return reject('malformed', err instanceof Error ? err.message : 'unreadable token');
}

// What every Trellis verifier demands of a JWT's times and of a claim it passes on,
// whoever signed the token (authz, Cloudflare Access, a team's identity provider):
// a signature proves who wrote the claims, not that they are sensible. A token that
// claims to be issued in the future or to live for years was not minted by a
// well-behaved issuer, and a claim with a line break would split a header.

export interface TokenTimeLimits {
  clockSkewSeconds: number;
  /** Upper bound on exp - iat. */
  maxLifetimeSeconds: number;
}

export type TokenTimeProblem = { reason: 'invalid-claims' | 'not-yet-valid' | 'expired'; detail: string };

/**
 * Checks a verified payload's `exp` and `iat`: `exp` present and numeric and not past
 * (less the skew); `iat`, when present (a verifier that needs it says so to jose),
 * numeric and not beyond the skew in the future; and a lifetime within
 * `maxLifetimeSeconds` — `exp - iat`, or without `iat` what is left of it (`exp - now`).
 * Undefined when the times are acceptable.
 */
export function tokenTimeProblem(
  payload: { exp?: unknown; iat?: unknown },
  limits: TokenTimeLimits,
  nowMs: number = Date.now(),
): TokenTimeProblem | undefined {
  const { exp, iat } = payload;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return { reason: 'invalid-claims', detail: 'exp is required' };
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat)))
    return { reason: 'invalid-claims', detail: 'iat must be a number' };
  const now = Math.floor(nowMs / 1000);
  if (iat !== undefined && iat > now + limits.clockSkewSeconds)
    return { reason: 'not-yet-valid', detail: 'token was issued in the future' };
  if (exp <= now - limits.clockSkewSeconds) return { reason: 'expired', detail: 'token expired' };
  const lifetime = iat !== undefined ? exp - iat : exp - now - limits.clockSkewSeconds;
  if (lifetime > limits.maxLifetimeSeconds)
    return { reason: 'invalid-claims', detail: `lifetime longer than ${limits.maxLifetimeSeconds} s is not accepted` };
  return undefined;
}

/** Longest claim value passed on as a header (an email address is at most 254). */
export const MAX_FORWARDED_CLAIM_LENGTH = 320;

/**
 * Whether a claim may be forwarded as a header value: a non-empty string of at most
 * MAX_FORWARDED_CLAIM_LENGTH characters with no control character (CR, LF, NUL, …),
 * which could end the header or inject another.
 */
export function isForwardableClaim(value: unknown): value is string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_FORWARDED_CLAIM_LENGTH && !/[\x00-\x1f\x7f]/.test(value);
}

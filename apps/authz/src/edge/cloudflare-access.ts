// North-south: validating the Cloudflare Access JWT Contour forwards for public
// routes. Keys come from the team's certs endpoint (cached by jose, refetched on
// an unknown kid after a cooldown, which is how Cloudflare's key rotation lands);
// iss must be the team domain and aud the Access application's tag.
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose';
import type { AuthzMetrics } from '../metrics';
import { isForwardableClaim, JWT_REJECTIONS, rejectingWeakKeys, tokenTimeProblem, WeakKeyError } from '@trellis/mesh-contracts';
import type { Logger } from '@trellis/runtime';

export interface AccessApplication {
  teamDomain: string;
  audience: string;
}

export interface AccessIdentity {
  /** A user's email, for interactive logins. */
  email?: string;
  /** The service token's Client ID, for machine callers. */
  serviceTokenId?: string;
  subject: string;
}

/** Why a Cloudflare Access JWT is refused: a bounded set, so it can label a metric. */
export const ACCESS_REJECTIONS = [...JWT_REJECTIONS, 'invalid-claims', 'no-identity', 'certs-unavailable', 'unusable-team-domain'] as const;

/**
 * The longest life an Access JWT may claim (exp - iat): Cloudflare's longest
 * application session is one month. A token claiming more was not issued by Access.
 */
export const ACCESS_MAX_TOKEN_LIFETIME_SECONDS = 31 * 86_400;
export type AccessRejection = (typeof ACCESS_REJECTIONS)[number];

export type AccessVerification = { valid: true; identity: AccessIdentity } | { valid: false; reason: AccessRejection };

export interface CloudflareAccessOptions {
  /** `https://{teamDomain}/cdn-cgi/access/certs` in production; tests point it at a local server. */
  certsUrlTemplate: string;
  clockSkewSeconds: number;
  /** Minimum time between refetches on an unknown kid. */
  cooldownMs?: number;
  /** Refetch the certs at least this often. */
  cacheMaxAgeMs?: number;
  fetchTimeoutMs?: number;
}

const MAX_TOKEN_LENGTH = 8192;

type KeySet = ReturnType<typeof createRemoteJWKSet>;

export class CloudflareAccessVerifier {
  private readonly keySets = new Map<string, KeySet>();
  /** Team domains no certs URL can be built for (a record written around the registry's validation): each logged once. */
  private readonly unusable = new Set<string>();

  constructor(
    private readonly options: CloudflareAccessOptions,
    private readonly metrics: AuthzMetrics,
    private readonly logger?: Pick<Logger, 'warn'>,
  ) {}

  async verify(token: string | undefined, app: AccessApplication): Promise<AccessVerification> {
    if (!token) return { valid: false, reason: 'missing' };
    if (token.length > MAX_TOKEN_LENGTH) return { valid: false, reason: 'oversized' };
    const keySet = this.keySetFor(app.teamDomain);
    if (!keySet) return { valid: false, reason: 'unusable-team-domain' };
    try {
      const { payload } = await jwtVerify(token, rejectingWeakKeys(keySet), {
        algorithms: ['RS256'],
        issuer: `https://${app.teamDomain}`,
        audience: app.audience,
        clockTolerance: this.options.clockSkewSeconds,
        requiredClaims: ['exp', 'iat'],
      });
      const times = tokenTimeProblem(payload, {
        clockSkewSeconds: this.options.clockSkewSeconds,
        maxLifetimeSeconds: ACCESS_MAX_TOKEN_LIFETIME_SECONDS,
      });
      if (times) return { valid: false, reason: times.reason };
      const identity = identityOf(payload);
      if (identity === 'unforwardable') return { valid: false, reason: 'invalid-claims' };
      return identity ? { valid: true, identity } : { valid: false, reason: 'no-identity' };
    } catch (err) {
      return { valid: false, reason: this.reasonOf(err) };
    }
  }

  /**
   * Fetches the certs of teams not seen yet, so the first edge request of a new
   * ingress does not wait for them (a failure is counted; requests retry later).
   * Never rejects: each team is fetched on its own, and one that cannot be is skipped.
   */
  async prefetch(teamDomains: Iterable<string>): Promise<void> {
    const fresh = [...new Set(teamDomains)].filter((teamDomain) => !this.keySets.has(teamDomain));
    await Promise.all(
      fresh.map(async (teamDomain) => {
        try {
          await this.keySetFor(teamDomain)?.reload();
        } catch {
          this.metrics.edgeJwksFetchErrors.inc();
        }
      }),
    );
  }

  /** The team's key set; undefined (logged once, counted) when the domain makes no certs URL. */
  private keySetFor(teamDomain: string): KeySet | undefined {
    let keySet = this.keySets.get(teamDomain);
    if (!keySet) {
      const url = this.certsUrlOf(teamDomain);
      if (!url) return undefined;
      keySet = createRemoteJWKSet(url, {
        cooldownDuration: this.options.cooldownMs ?? 30_000,
        cacheMaxAge: this.options.cacheMaxAgeMs ?? 10 * 60_000,
        timeoutDuration: this.options.fetchTimeoutMs ?? 2_000,
      });
      this.keySets.set(teamDomain, keySet);
    }
    return keySet;
  }

  private certsUrlOf(teamDomain: string): URL | undefined {
    try {
      return new URL(this.options.certsUrlTemplate.replace('{teamDomain}', teamDomain));
    } catch (err) {
      if (!this.unusable.has(teamDomain)) {
        this.unusable.add(teamDomain);
        this.metrics.recordsDropped.inc({ kind: 'accessTeamDomain' });
        this.logger?.warn(
          { teamDomain, err: (err as Error).message },
          'Cloudflare Access team domain makes no certs URL; its edge requests are refused',
        );
      }
      return undefined;
    }
  }

  private reasonOf(err: unknown): Extract<AccessVerification, { valid: false }>['reason'] {
    if (err instanceof errors.JWTExpired) return 'expired';
    if (err instanceof errors.JWTClaimValidationFailed) {
      if (err.claim === 'aud') return 'wrong-audience';
      if (err.claim === 'iss') return 'wrong-issuer';
      if (err.claim === 'nbf' || err.claim === 'iat') return 'not-yet-valid';
      return 'malformed';
    }
    if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) return 'unknown-kid';
    if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad-signature';
    if (err instanceof WeakKeyError) return 'weak-key';
    if (
      err instanceof errors.JWKSTimeout ||
      err instanceof errors.JWKSInvalid ||
      !(err instanceof errors.JOSEError) ||
      err.code === 'ERR_JOSE_GENERIC'
    ) {
      // The certs endpoint failed (network, HTTP status, bad document): fail closed, loudly.
      this.metrics.edgeJwksFetchErrors.inc();
      return 'certs-unavailable';
    }
    return 'malformed';
  }
}

/**
 * Who the token names. The email (or service token id) is forwarded upstream as a
 * header: one with a control character or of absurd length is 'unforwardable' and
 * the token is refused, never passed on.
 */
function identityOf(payload: JWTPayload): AccessIdentity | 'unforwardable' | undefined {
  const subject = typeof payload.sub === 'string' ? payload.sub : '';
  const email = payload['email'];
  if (typeof email === 'string' && email.length > 0) return isForwardableClaim(email) ? { email, subject } : 'unforwardable';
  // Service tokens carry the Client ID in common_name and an empty sub.
  const commonName = payload['common_name'];
  if (typeof commonName === 'string' && commonName.length > 0)
    return isForwardableClaim(commonName) ? { serviceTokenId: commonName, subject } : 'unforwardable';
  return undefined;
}

/** The Access JWT from the `Cf-Access-Jwt-Assertion` header, else the `CF_Authorization` cookie. */
export function accessTokenFrom(headers: Readonly<Record<string, string>>): string | undefined {
  const header = headers['cf-access-jwt-assertion'];
  if (header) return header.trim();
  const cookie = headers['cookie'];
  if (!cookie) return undefined;
  for (const part of cookie.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === 'CF_Authorization') return part.slice(eq + 1).trim();
  }
  return undefined;
}

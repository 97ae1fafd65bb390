// Who is calling, and what they may change.
//
// Writes need a bearer token: either the admin token (TRELLIS_ADMIN_TOKEN, for
// bootstrap and automation) or a team JWT verified against the configured JWKS
// whose `team` claim names the caller's team. A team may change only services
// it owns, and only the instances of those services — so a VM agent or pod
// registers itself with its team's token. Anything unverifiable is refused.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify } from 'jose';
import type { JWTVerifyGetKey } from 'jose';
import { TeamName } from '@trellis/mesh-schema';
import type { RequestHandler, Response } from 'express';
import type { Logger } from '@trellis/runtime';
import type { RegistryMetrics } from './metrics';
import { problems } from './problem';

export type Principal = { kind: 'admin'; actor: 'admin' } | { kind: 'team'; team: string; subject: string; actor: string };

export type AuthFailureReason = 'missing' | 'invalid' | 'expired' | 'no-team' | 'unconfigured' | 'jwks-unavailable';

export type AuthResult = { ok: true; principal: Principal } | { ok: false; reason: AuthFailureReason; detail: string };

export interface AuthenticatorOptions {
  adminToken?: string;
  /** Key source for team JWTs; absent means team tokens are not accepted. */
  jwks?: JWTVerifyGetKey;
  issuer?: string;
  audience: string;
}

export class Authenticator {
  private readonly adminDigest?: Buffer;

  constructor(private readonly options: AuthenticatorOptions) {
    if (options.adminToken) this.adminDigest = digest(options.adminToken);
  }

  static fromConfig(config: {
    TRELLIS_ADMIN_TOKEN?: string;
    TRELLIS_AUTH_JWKS_URL?: string;
    TRELLIS_AUTH_ISSUER?: string;
    TRELLIS_AUTH_AUDIENCE: string;
  }): Authenticator {
    return new Authenticator({
      adminToken: config.TRELLIS_ADMIN_TOKEN,
      jwks: config.TRELLIS_AUTH_JWKS_URL ? createRemoteJWKSet(new URL(config.TRELLIS_AUTH_JWKS_URL)) : undefined,
      issuer: config.TRELLIS_AUTH_ISSUER,
      audience: config.TRELLIS_AUTH_AUDIENCE,
    });
  }

  get acceptsAnyToken(): boolean {
    return this.adminDigest !== undefined || this.options.jwks !== undefined;
  }

  /** Verifies a raw token (from an Authorization header or the UI session cookie). */
  async verify(token: string | undefined): Promise<AuthResult> {
    if (!token) return { ok: false, reason: 'missing', detail: 'a bearer token is required' };
    // Compare digests so the comparison takes the same time whatever the token length.
    if (this.adminDigest && timingSafeEqual(digest(token), this.adminDigest))
      return { ok: true, principal: { kind: 'admin', actor: 'admin' } };
    if (!this.options.jwks) {
      return this.adminDigest
        ? { ok: false, reason: 'invalid', detail: 'the token is not valid' }
        : { ok: false, reason: 'unconfigured', detail: 'no admin token or JWKS is configured, so the registry accepts no writes' };
    }
    try {
      const { payload } = await jwtVerify(token, this.options.jwks, {
        audience: this.options.audience,
        ...(this.options.issuer ? { issuer: this.options.issuer } : {}),
        algorithms: ['RS256', 'ES256', 'EdDSA', 'PS256'],
        requiredClaims: ['exp'],
      });
      const team = TeamName.safeParse(payload['team']);
      if (!team.success) return { ok: false, reason: 'no-team', detail: 'the token has no valid "team" claim' };
      const subject = typeof payload.sub === 'string' ? payload.sub : team.data;
      return { ok: true, principal: { kind: 'team', team: team.data, subject, actor: `team:${team.data}` } };
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return { ok: false, reason: 'expired', detail: 'the token has expired' };
      // Our failure, not the caller's: the key set could not be fetched. Still refused.
      if (!(err instanceof joseErrors.JOSEError) || err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) {
        return { ok: false, reason: 'jwks-unavailable', detail: 'the key set that verifies tokens cannot be fetched; retry later' };
      }
      return { ok: false, reason: 'invalid', detail: 'the token is not valid' };
    }
  }
}

/** Pulls the token out of `Authorization: Bearer <token>`. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(header);
  return match?.[1];
}

/** Throws a 403 problem unless the principal may change services owned by every one of `teams`. */
export function assertCanChange(principal: Principal, teams: ReadonlyArray<string>, what: string): void {
  if (principal.kind === 'admin') return;
  const foreign = teams.find((team) => team !== principal.team);
  if (foreign !== undefined) {
    throw problems.forbidden(`team "${principal.team}" may not change ${what}: it belongs to team "${foreign}"`);
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** API authentication: a bearer token in the Authorization header (cookies are never read here, so no CSRF). */
export function requireBearer(authenticator: Authenticator, metrics: RegistryMetrics, logger: Logger): RequestHandler {
  return (req, res, next) => {
    authenticator
      .verify(bearerToken(req.headers.authorization))
      .then((result) => {
        if (!result.ok) {
          metrics.authFailures.inc({ reason: result.reason });
          if (result.reason === 'jwks-unavailable') {
            logger.error({ method: req.method, path: req.path }, 'refused request: the JWKS cannot be fetched');
            return next(problems.unavailable(result.detail));
          }
          logger.warn({ reason: result.reason, method: req.method, path: req.path }, 'refused unauthenticated request');
          return next(problems.unauthenticated(result.detail));
        }
        res.locals['principal'] = result.principal;
        next();
      })
      .catch(next);
  };
}

export function principalOf(res: Response): Principal {
  const principal = res.locals['principal'] as Principal | undefined;
  // Reaching a write handler without a principal is a wiring bug: fail closed.
  if (!principal) throw problems.unauthenticated('a bearer token is required');
  return principal;
}

// Who is calling, and what they may change.
//
// Writes need a credential: the admin token (TRELLIS_ADMIN_TOKEN, for bootstrap
// and automation), a team JWT verified against the configured JWKS whose `team`
// claim names the caller's team, or — for instance agents — a service's own
// credential (`Basic base64(service:secret)`, the same per-service secret authz
// takes on `POST /v1/token`, from TRELLIS_SERVICE_CREDENTIALS). A team may change
// only services it owns and their instances; a service credential may only
// register, heartbeat, drain and deregister that one service's instances, so a
// leaked agent secret cannot touch definitions or other services. Anything
// unverifiable is refused.
import { matchesSecretDigest, secretDigest, tokenTimeProblem } from '@trellis/mesh-contracts';
import { createRemoteJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import type { JWTVerifyGetKey } from 'jose';
import { rejectingWeakKeys, TeamName, WeakKeyError, type ServiceCredentials } from '@trellis/mesh-schema';
import type { Logger } from '@trellis/runtime';
import type { RequestHandler, Response } from 'express';
import type { RegistryMetrics } from './metrics';
import { problems } from './problem';

export type Principal =
  | { kind: 'admin'; actor: 'admin' }
  | { kind: 'team'; team: string; subject: string; actor: string }
  /** An instance agent holding its service's credential: that service's instances, nothing else. */
  | { kind: 'service'; service: string; actor: string };

export type AuthFailureReason = 'missing' | 'invalid' | 'expired' | 'no-team' | 'unconfigured' | 'jwks-unavailable';

export type AuthResult = { ok: true; principal: Principal } | { ok: false; reason: AuthFailureReason; detail: string };

export interface AuthenticatorOptions {
  /** A fixed token, or one followed from a file (TRELLIS_ADMIN_TOKEN_FILE): asked on every request. */
  adminToken?: string | { readonly current: string | undefined };
  /** Key source for team JWTs; absent means team tokens are not accepted. */
  jwks?: JWTVerifyGetKey;
  issuer?: string;
  audience: string;
  /**
   * Per-service secrets instance agents present, asked on every request (so a reloaded set
   * applies at once); absent means service credentials are not accepted.
   */
  serviceCredentials?: Pick<ServiceCredentials, 'authenticate'>;
  /** Longest life (exp - iat) a team token may claim; default DEFAULT_TEAM_TOKEN_MAX_LIFETIME_SECONDS. */
  maxTokenLifetimeSeconds?: number;
  /** Team tokens remembered as verified (see Authenticator.verify); default DEFAULT_VERIFIED_TEAM_TOKENS. */
  verifiedTokens?: number;
  /** Clock of the verified-token memory, in ms (tests). The token checks themselves use jose's clock. */
  now?: () => number;
}

/** A day: what identity providers issue for CI and people; a token claiming years was not minted by one. */
export const DEFAULT_TEAM_TOKEN_MAX_LIFETIME_SECONDS = 86_400;
/** Clock skew allowed between the identity provider and the registry. */
const TEAM_TOKEN_CLOCK_SKEW_SECONDS = 60;
/** Team tokens remembered as verified: the distinct tokens (CI jobs, people) writing at one time, with room to spare. */
export const DEFAULT_VERIFIED_TEAM_TOKENS = 1024;

type TeamPrincipal = Extract<Principal, { kind: 'team' }>;

interface VerifiedTeamToken {
  principal: TeamPrincipal;
  /** The token's `exp`, in ms: it is taken from memory strictly before (jose would still accept it up to the skew after). */
  expiresAtMs: number;
  /** The key the JWKS gave for it; the memory holds only while the JWKS still gives this very key. */
  key: unknown;
}

export class Authenticator {
  /** The admin token's digest, made again when a reloaded token differs from the one it was made of. */
  private admin?: { token: string; digest: Buffer };
  /** The team JWKS, refusing weak keys (RSA e != 65537 or < 2048 bits, odd EC curves). */
  private readonly teamKeys?: JWTVerifyGetKey;
  /** Team tokens verified before, by the exact token string, oldest first. */
  private readonly verifiedTeamTokens = new Map<string, VerifiedTeamToken>();
  private readonly verifiedTokensMax: number;
  private readonly now: () => number;

  constructor(private readonly options: AuthenticatorOptions) {
    if (options.jwks) this.teamKeys = rejectingWeakKeys(options.jwks) as JWTVerifyGetKey;
    this.verifiedTokensMax = options.verifiedTokens ?? DEFAULT_VERIFIED_TEAM_TOKENS;
    this.now = options.now ?? Date.now;
  }

  static fromConfig(
    config: {
      TRELLIS_ADMIN_TOKEN?: string;
      TRELLIS_AUTH_JWKS_URL?: string;
      TRELLIS_AUTH_ISSUER?: string;
      TRELLIS_AUTH_AUDIENCE: string;
      TRELLIS_AUTH_MAX_TOKEN_LIFETIME_SECONDS?: number;
    },
    serviceCredentials?: Pick<ServiceCredentials, 'authenticate'>,
    /** TRELLIS_ADMIN_TOKEN_FILE, followed: in place of TRELLIS_ADMIN_TOKEN. */
    adminTokenFile?: { readonly current: string | undefined },
  ): Authenticator {
    return new Authenticator({
      adminToken: adminTokenFile ?? config.TRELLIS_ADMIN_TOKEN,
      jwks: config.TRELLIS_AUTH_JWKS_URL ? createRemoteJWKSet(new URL(config.TRELLIS_AUTH_JWKS_URL)) : undefined,
      issuer: config.TRELLIS_AUTH_ISSUER,
      audience: config.TRELLIS_AUTH_AUDIENCE,
      serviceCredentials,
      maxTokenLifetimeSeconds: config.TRELLIS_AUTH_MAX_TOKEN_LIFETIME_SECONDS,
    });
  }

  get acceptsAnyToken(): boolean {
    return this.options.adminToken !== undefined || this.options.jwks !== undefined;
  }

  /**
   * Verifies an API request's Authorization header: `Bearer <token>` (admin or team), or
   * `Basic base64(service:secret)` when service credentials are configured.
   */
  async verifyAuthorization(header: string | undefined): Promise<AuthResult> {
    if (header && /^Basic /i.test(header)) {
      if (!this.options.serviceCredentials)
        return { ok: false, reason: 'invalid', detail: 'service credentials are not accepted here (TRELLIS_SERVICE_CREDENTIALS is unset)' };
      const service = this.options.serviceCredentials.authenticate(header);
      return service
        ? { ok: true, principal: { kind: 'service', service, actor: `service:${service}` } }
        : { ok: false, reason: 'invalid', detail: 'the service credential is not valid' };
    }
    return this.verify(bearerToken(header));
  }

  /** Verifies a raw token (from an Authorization header or the UI session cookie). */
  async verify(token: string | undefined): Promise<AuthResult> {
    if (!token) return { ok: false, reason: 'missing', detail: 'a bearer token is required' };
    // Compare digests so the comparison takes the same time whatever the token length.
    const adminDigest = this.adminDigest();
    if (adminDigest && matchesSecretDigest(token, adminDigest)) return { ok: true, principal: { kind: 'admin', actor: 'admin' } };
    if (!this.teamKeys) {
      return adminDigest
        ? { ok: false, reason: 'invalid', detail: 'the token is not valid' }
        : { ok: false, reason: 'unconfigured', detail: 'no admin token or JWKS is configured, so the registry accepts no writes' };
    }
    const remembered = await this.verifiedBefore(token, this.teamKeys);
    if (remembered) return { ok: true, principal: remembered };
    try {
      let key: unknown;
      const teamKeys = this.teamKeys;
      const keyOf: JWTVerifyGetKey = async (header, input) => (key = await teamKeys(header, input));
      const { payload } = await jwtVerify(token, keyOf, {
        audience: this.options.audience,
        ...(this.options.issuer ? { issuer: this.options.issuer } : {}),
        algorithms: ['RS256', 'ES256', 'EdDSA', 'PS256'],
        requiredClaims: ['exp'],
        clockTolerance: TEAM_TOKEN_CLOCK_SKEW_SECONDS,
      });
      const times = tokenTimeProblem(payload, {
        clockSkewSeconds: TEAM_TOKEN_CLOCK_SKEW_SECONDS,
        maxLifetimeSeconds: this.options.maxTokenLifetimeSeconds ?? DEFAULT_TEAM_TOKEN_MAX_LIFETIME_SECONDS,
      });
      if (times?.reason === 'expired') return { ok: false, reason: 'expired', detail: 'the token has expired' };
      if (times) return { ok: false, reason: 'invalid', detail: `the token is not valid: ${times.detail}` };
      const team = TeamName.safeParse(payload['team']);
      if (!team.success) return { ok: false, reason: 'no-team', detail: 'the token has no valid "team" claim' };
      const subject = typeof payload.sub === 'string' ? payload.sub : team.data;
      // Frozen: a remembered principal is handed to every later request with the token.
      const principal: TeamPrincipal = Object.freeze({ kind: 'team', team: team.data, subject, actor: `team:${team.data}` });
      this.rememberVerified(token, { principal, expiresAtMs: payload.exp! * 1000, key });
      return { ok: true, principal };
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return { ok: false, reason: 'expired', detail: 'the token has expired' };
      if (err instanceof WeakKeyError)
        return { ok: false, reason: 'invalid', detail: 'the token is signed with a key that is not accepted' };
      // Our failure, not the caller's: the key set could not be fetched. Still refused.
      if (!(err instanceof joseErrors.JOSEError) || err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) {
        return { ok: false, reason: 'jwks-unavailable', detail: 'the key set that verifies tokens cannot be fetched; retry later' };
      }
      return { ok: false, reason: 'invalid', detail: 'the token is not valid' };
    }
  }

  /**
   * A team token this registry verified before, presented again (a CI job or a person writes
   * with one token many times): its signature check — a WebCrypto RSA/ECDSA verification
   * through the thread pool, 0.1-0.2 ms a request — is not repeated while the token has not
   * expired and the JWKS, asked again, gives the very key that verified it. Nothing else can
   * change the answer: the claims checked are the token's own (the string is the cache key, so
   * the signed bytes are the same), and every time check that passed stays passed before `exp`.
   * So a key withdrawn from the JWKS refuses its tokens exactly when it would without this
   * memory; refusals are never remembered.
   */
  private adminDigest(): Buffer | undefined {
    const source = this.options.adminToken;
    const token = typeof source === 'string' ? source : source?.current;
    if (!token) return undefined;
    if (this.admin?.token !== token) this.admin = { token, digest: secretDigest(token) };
    return this.admin.digest;
  }

  private async verifiedBefore(token: string, teamKeys: JWTVerifyGetKey): Promise<TeamPrincipal | undefined> {
    const entry = this.verifiedTeamTokens.get(token);
    if (!entry) return undefined;
    if (this.now() < entry.expiresAtMs) {
      try {
        const [protectedHeader = '', payload = '', signature = ''] = token.split('.');
        // The same string passed jwtVerify: a compact JWS whose header names an accepted algorithm.
        const header = decodeProtectedHeader(token) as Parameters<JWTVerifyGetKey>[0];
        const key: unknown = await teamKeys(header, { protected: protectedHeader, payload, signature });
        if (key === entry.key) return entry.principal;
      } catch {
        // The JWKS no longer gives a key for it (or cannot be fetched): verify it in full.
      }
    }
    this.verifiedTeamTokens.delete(token);
    return undefined;
  }

  private rememberVerified(token: string, entry: VerifiedTeamToken): void {
    if (this.verifiedTokensMax <= 0 || entry.key === undefined || !(this.now() < entry.expiresAtMs)) return;
    this.verifiedTeamTokens.delete(token);
    this.verifiedTeamTokens.set(token, entry);
    if (this.verifiedTeamTokens.size > this.verifiedTokensMax) this.verifiedTeamTokens.delete(this.verifiedTeamTokens.keys().next().value!);
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
  if (principal.kind === 'service')
    throw problems.forbidden(`the credential of service "${principal.service}" may only change that service's instances, not ${what}`);
  const foreign = teams.find((team) => team !== principal.team);
  if (foreign !== undefined) {
    throw problems.forbidden(`team "${principal.team}" may not change ${what}: it belongs to team "${foreign}"`);
  }
}

/**
 * API authentication: the Authorization header, a bearer token or a service credential
 * (cookies are never read here, so no CSRF).
 */
export function requireBearer(authenticator: Authenticator, metrics: RegistryMetrics, logger: Logger): RequestHandler {
  return (req, res, next) => {
    authenticator
      .verifyAuthorization(req.headers.authorization)
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

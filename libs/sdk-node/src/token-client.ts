// Client side: obtains A→B mesh tokens from authz's token endpoint. A token is
// renewed MESH_TOKEN_RENEW_BEFORE_SECONDS before it expires, in the background:
// calls keep using the held token while it is valid, so an authz outage costs
// nothing until the held token runs out. Only a caller with no valid token
// waits for authz. One fetch per audience at a time (single-flight).
import { decodeJwt } from 'jose';
import { MESH_TOKEN_RENEW_BEFORE_SECONDS } from '@trellis/mesh-contracts';

export interface MeshTokenClientOptions {
  /** authz's HTTP base URL, e.g. http://authz.trellis:8181 */
  authzUrl: string;
  /** This service's name (the token's `sub`). */
  service: string;
  /** This service's credential for the token endpoint (from a Secret or systemd credential). */
  secret: string;
  /** Renew this long before `exp` (default MESH_TOKEN_RENEW_BEFORE_SECONDS, at most half the token's life). */
  renewBeforeSeconds?: number;
  /** A background renewal failed; the held token stays in use while valid. */
  onRenewError?: (audience: string, err: Error) => void;
  requestTimeoutMs?: number;
  now?: () => number;
}

interface CachedToken {
  token: string;
  renewAt: number;
  /** Presented until then (exp less a margin for the call's own time in flight). */
  usableUntil: number;
}

/** A token is not presented closer to its exp than this: the call still has to reach the callee. */
const IN_FLIGHT_MARGIN_MS = 5_000;
/** After a failed background renewal (or one that returned no newer token), wait this long before the next. */
const RENEW_RETRY_MS = 2_000;

export class MeshTokenError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'MeshTokenError';
  }
}

export class MeshTokenClient {
  private readonly cache = new Map<string, CachedToken>();
  private readonly inFlight = new Map<string, Promise<string>>();
  /** Per audience: no background renewal before this time (after a failure). */
  private readonly renewNotBefore = new Map<string, number>();
  private readonly renewBeforeMs: number;
  private readonly now: () => number;

  constructor(private readonly options: MeshTokenClientOptions) {
    this.renewBeforeMs = (options.renewBeforeSeconds ?? MESH_TOKEN_RENEW_BEFORE_SECONDS) * 1000;
    this.now = options.now ?? Date.now;
  }

  /** A token for calling `audience`; throws MeshTokenError when authz refuses (e.g. the dependency is not declared). */
  async getToken(audience: string): Promise<string> {
    const held = this.cache.get(audience);
    const now = this.now();
    if (held && now < held.renewAt) return held.token;
    if (held && now < held.usableUntil) {
      // Due for renewal but still valid: renew in the background, keep using it meanwhile.
      if (!this.inFlight.has(audience) && now >= (this.renewNotBefore.get(audience) ?? 0))
        this.fetchShared(audience).catch((err: Error) => {
          this.renewNotBefore.set(audience, this.now() + RENEW_RETRY_MS);
          this.options.onRenewError?.(audience, err);
        });
      return held.token;
    }
    return this.fetchShared(audience);
  }

  private fetchShared(audience: string): Promise<string> {
    const pending = this.inFlight.get(audience);
    if (pending) return pending;
    const fetching = this.fetchToken(audience).finally(() => this.inFlight.delete(audience));
    this.inFlight.set(audience, fetching);
    return fetching;
  }

  private async fetchToken(audience: string): Promise<string> {
    const res = await fetch(new URL('/v1/token', this.options.authzUrl), {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from(`${this.options.service}:${this.options.secret}`).toString('base64')}`,
      },
      body: JSON.stringify({ audience }),
      signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 2_000),
    });
    if (!res.ok) {
      const detail = await res.text().catch(() => '');
      throw new MeshTokenError(
        `authz refused a token for ${this.options.service}→${audience}: ${res.status} ${detail.slice(0, 300)}`,
        res.status,
      );
    }
    const body = (await res.json()) as { token?: unknown };
    if (typeof body.token !== 'string') throw new MeshTokenError('authz answered without a token');
    const { exp, iat } = decodeJwt(body.token);
    if (typeof exp !== 'number') throw new MeshTokenError('authz issued a token without exp');
    const expiresAt = exp * 1000;
    const lifetimeMs = typeof iat === 'number' ? expiresAt - iat * 1000 : this.renewBeforeMs * 2;
    const renewAt = expiresAt - Math.min(this.renewBeforeMs, lifetimeMs / 2);
    this.cache.set(audience, { token: body.token, renewAt, usableUntil: expiresAt - IN_FLIGHT_MARGIN_MS });
    // Handed the token already held (an authz cache not yet past it): do not ask again at once.
    if (renewAt <= this.now()) this.renewNotBefore.set(audience, this.now() + RENEW_RETRY_MS);
    return body.token;
  }
}

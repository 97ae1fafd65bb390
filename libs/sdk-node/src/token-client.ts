// Client side: obtains A→B mesh tokens from authz's token endpoint and keeps them
// until shortly before they expire. Concurrent requests for the same audience
// share one fetch (single-flight).
import { decodeJwt } from 'jose';

export interface MeshTokenClientOptions {
  /** authz's HTTP base URL, e.g. http://authz.trellis:8181 */
  authzUrl: string;
  /** This service's name (the token's `sub`). */
  service: string;
  /** This service's credential for the token endpoint (from a Secret or systemd credential). */
  secret: string;
  /** Renew this long before `exp`, so a token is never presented with less validity than validators' skew. */
  renewBeforeSeconds?: number;
  requestTimeoutMs?: number;
  now?: () => number;
}

interface CachedToken {
  token: string;
  renewAt: number;
}

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
  private readonly renewBeforeMs: number;
  private readonly now: () => number;

  constructor(private readonly options: MeshTokenClientOptions) {
    this.renewBeforeMs = (options.renewBeforeSeconds ?? 60) * 1000;
    this.now = options.now ?? Date.now;
  }

  /** A token for calling `audience`; throws MeshTokenError when authz refuses (e.g. the dependency is not declared). */
  async getToken(audience: string): Promise<string> {
    const cached = this.cache.get(audience);
    if (cached && cached.renewAt > this.now()) return cached.token;
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
    const { exp } = decodeJwt(body.token);
    if (typeof exp !== 'number') throw new MeshTokenError('authz issued a token without exp');
    this.cache.set(audience, { token: body.token, renewAt: exp * 1000 - this.renewBeforeMs });
    return body.token;
  }
}

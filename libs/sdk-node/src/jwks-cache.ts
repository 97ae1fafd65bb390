// authz's JWKS, kept stale-while-error: the keys last fetched stay in use until
// a refresh succeeds. jose's createRemoteJWKSet throws once its cache is stale
// and the fetch fails, so a 30 s authz outage at a refresh failed every inbound
// call although the keys had not changed. Refreshes run in the background once
// the set is older than `refreshIntervalMs`; a token naming an unknown kid (a
// rotation) waits for one refresh, at most every `cooldownMs`. Only the very
// first fetch is on a request's path.
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';

export interface JwksCacheOptions {
  /** Background refresh once the keys are this old. Default 5 min. */
  refreshIntervalMs?: number;
  /** Least time between two fetches caused by unknown kids. Default 5 s. */
  cooldownMs?: number;
  timeoutMs?: number;
  /** A refresh failed; the previous keys stay in use. */
  onRefreshError?: (err: Error) => void;
  now?: () => number;
}

export class JwksCache {
  private keys: ReturnType<typeof createLocalJWKSet> | undefined;
  private fetchedAt = 0;
  private lastAttemptAt = -Infinity;
  private inFlight: Promise<void> | undefined;
  private readonly now: () => number;

  constructor(
    private readonly url: URL,
    private readonly options: JwksCacheOptions = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  /** A jose key getter backed by this cache. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    if (!this.keys) await this.refresh(); // nothing to serve yet: the first fetch must succeed
    if (this.now() - this.fetchedAt >= (this.options.refreshIntervalMs ?? 300_000)) void this.refresh().catch(() => undefined);
    try {
      return await this.keys!(header, token);
    } catch (err) {
      // An unknown kid may be a key published since the last fetch: wait for the
      // refresh under way, or start one unless one ran within the cooldown.
      if (this.inFlight) await this.inFlight.catch(() => undefined);
      else if (this.now() - this.lastAttemptAt >= (this.options.cooldownMs ?? 5_000)) await this.refresh().catch(() => undefined);
      else throw err;
      return this.keys!(header, token);
    }
  };

  /** Fetches the set now (one fetch at a time); on failure the previous keys stay and the error is rethrown. */
  refresh(): Promise<void> {
    return (this.inFlight ??= this.fetchKeys().finally(() => (this.inFlight = undefined)));
  }

  private async fetchKeys(): Promise<void> {
    this.lastAttemptAt = this.now();
    try {
      const res = await fetch(this.url, { signal: AbortSignal.timeout(this.options.timeoutMs ?? 2_000) });
      if (!res.ok) throw new Error(`JWKS ${this.url.href} answered ${res.status}`);
      const jwks = (await res.json()) as JSONWebKeySet;
      if (!Array.isArray(jwks?.keys)) throw new Error(`JWKS ${this.url.href} has no keys array`);
      this.keys = createLocalJWKSet(jwks);
      this.fetchedAt = this.now();
    } catch (err) {
      this.options.onRefreshError?.(err as Error);
      throw err;
    }
  }
}

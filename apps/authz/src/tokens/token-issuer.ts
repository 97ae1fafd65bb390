// Where a Check gets its A→B token: in-process cache, then Redis, then a fresh
// signature — the last two behind single-flight so concurrent misses for one
// pair mint once. Keyed by (A, B, kid): a key rotation starts new entries.
// xDS tokens (aud = XDS_TOKEN_AUDIENCE) are signed fresh each time instead.
import type { Logger } from '@trellis/runtime';
import type { KeyRing } from '../keys/key-ring';
import type { SigningKey } from '../keys/signing-key';
import type { AuthzMetrics, MintedKind } from '../metrics';
import { mintMeshToken, type MintedToken } from './mint';
import { PairTokenMemory } from './pair-token-memory';
import type { SharedTokenCache } from './redis-token-cache';
import { SingleFlight } from './single-flight';
import { verifyMeshToken, XDS_TOKEN_AUDIENCE } from '@trellis/mesh-contracts';

export interface TokenIssuerOptions {
  ttlSeconds: number;
  /** How long a token is handed out after it was signed; the rest of its life is margin for validators' clock skew. */
  cacheTtlSeconds: number;
  /** Bound on in-process entries (service pairs × keys); the oldest go first. */
  maxMemoryEntries?: number;
}

/** A token as the in-process cache keeps it (also what the Check worker is handed: check-worker/worker-tokens.ts). */
export interface CachedToken extends MintedToken {
  issuer: string;
  /** Epoch ms after which it is no longer handed out. */
  useUntil: number;
}

/**
 * The rule for handing out a remembered token, the one place it lives (MeshTokenIssuer and the
 * Check worker's WorkerTokens both use it): signed by the key that signs now, for the issuer
 * configured now, and before its useUntil.
 */
export function usableToken(
  memory: PairTokenMemory<CachedToken>,
  source: string,
  destination: string,
  kid: string,
  issuer: string,
  now: number,
): CachedToken | undefined {
  const cached = memory.get(source, destination, kid);
  return cached && cached.issuer === issuer && cached.useUntil > now ? cached : undefined;
}

export class NoSigningKeyError extends Error {
  constructor() {
    super('no signing key is active');
    this.name = 'NoSigningKeyError';
  }
}

export class MeshTokenIssuer {
  private readonly memory: PairTokenMemory<CachedToken>;
  private readonly flights = new SingleFlight<CachedToken>();
  private readonly marginMs: number;
  private readonly memoryHits: { inc(): void };
  private readonly memoryMisses: { inc(): void };

  constructor(
    private readonly keyRing: KeyRing,
    private readonly shared: SharedTokenCache | undefined,
    private readonly issuer: () => string,
    private readonly options: TokenIssuerOptions,
    private readonly metrics: AuthzMetrics,
    private readonly logger: Logger,
    private readonly clock: () => number = Date.now,
  ) {
    this.memory = new PairTokenMemory(options.maxMemoryEntries ?? 10_000);
    this.marginMs = (options.ttlSeconds - options.cacheTtlSeconds) * 1000;
    this.memoryHits = metrics.tokenCacheCounter('memory', 'hit');
    this.memoryMisses = metrics.tokenCacheCounter('memory', 'miss');
  }

  /** The in-process cache alone, synchronously: the hot path of a Check. Undefined on a miss. */
  cachedToken(source: string, destination: string): CachedToken | undefined {
    const signer = this.keyRing.signer();
    if (!signer) return undefined;
    const cached = usableToken(this.memory, source, destination, signer.kid, this.issuer(), this.clock());
    if (cached) this.memoryHits.inc();
    return cached;
  }

  /** A token for `source` calling `destination`; throws NoSigningKeyError when nothing may sign. */
  async tokenFor(source: string, destination: string): Promise<CachedToken> {
    const hit = this.cachedToken(source, destination);
    if (hit) return hit;
    const signer = this.keyRing.signer();
    if (!signer) throw new NoSigningKeyError();
    const issuer = this.issuer();
    const key = `${source}:${destination}:${signer.kid}`;
    this.memoryMisses.inc();
    return this.flights.run(key, async () => {
      const entry =
        (await this.fromShared(key, source, destination, signer, issuer)) ?? (await this.mint(key, source, destination, issuer));
      this.memory.set(source, destination, signer.kid, entry);
      return entry;
    });
  }

  /**
   * A freshly signed xDS token for `service` (`sub` = service, `aud` = XDS_TOKEN_AUDIENCE).
   * Not cached: a sidecar presents it only when its xDS stream (re)connects, so it should
   * get the whole lifetime, not what is left of a cached one. The lifetime is the mesh
   * tokens' one, which the key schedule's retirement (old keys stay published until
   * every token they signed expired) is computed from.
   */
  async xdsTokenFor(service: string): Promise<MintedToken> {
    const signer = this.keyRing.signer();
    if (!signer) throw new NoSigningKeyError();
    return this.sign(signer, service, XDS_TOKEN_AUDIENCE, this.issuer(), 'xds');
  }

  /**
   * Redis is shared storage anyone who reaches it can write, not a signer: a token read
   * from it is verified like an inbound one — signature by this very key, iss, sub, aud,
   * exp, a lifetime no longer than ours — before it is handed out or kept in memory. A
   * token that fails is deleted from Redis and counted (`result="rejected"`).
   */
  private async fromShared(
    key: string,
    source: string,
    destination: string,
    signer: SigningKey,
    issuer: string,
  ): Promise<CachedToken | undefined> {
    if (!this.shared) return undefined;
    const lookup = await this.shared.get(key);
    if (lookup.result !== 'hit') {
      this.metrics.tokenCache.inc({ layer: 'redis', result: lookup.result });
      return undefined;
    }
    const verified = await verifyMeshToken(
      lookup.token,
      (kid) => (kid === signer.kid ? { kid, alg: signer.alg, key: signer.publicKey } : undefined),
      { issuer, audience: destination, clockSkewSeconds: this.marginMs / 1000, maxLifetimeSeconds: this.options.ttlSeconds },
      this.clock(),
    );
    if (!verified.valid || verified.subject !== source) {
      this.metrics.tokenCache.inc({ layer: 'redis', result: 'rejected' });
      this.logger.warn(
        { source, destination, reason: verified.valid ? 'wrong-subject' : verified.reason },
        'token in Redis does not verify; deleted it and minting instead',
      );
      this.shared.delete(key, lookup.token);
      return undefined;
    }
    const { iat } = decodeClaims(lookup.token);
    const entry: CachedToken = {
      token: lookup.token,
      kid: signer.kid,
      issuedAt: iat,
      expiresAt: verified.expiresAt,
      issuer,
      useUntil: verified.expiresAt * 1000 - this.marginMs,
    };
    if (entry.useUntil <= this.clock()) {
      this.metrics.tokenCache.inc({ layer: 'redis', result: 'miss' });
      return undefined;
    }
    this.metrics.tokenCache.inc({ layer: 'redis', result: 'hit' });
    return entry;
  }

  private async mint(key: string, source: string, destination: string, issuer: string): Promise<CachedToken> {
    const signer = this.keyRing.signer();
    if (!signer) throw new NoSigningKeyError();
    const minted = await this.sign(signer, source, destination, issuer, 'mesh');
    const entry: CachedToken = { ...minted, issuer, useUntil: minted.expiresAt * 1000 - this.marginMs };
    this.shared?.set(key, minted.token, entry.useUntil - this.clock());
    return entry;
  }

  private async sign(signer: SigningKey, subject: string, audience: string, issuer: string, kind: MintedKind): Promise<MintedToken> {
    const started = process.hrtime.bigint();
    const minted = await mintMeshToken(signer, { issuer, subject, audience, ttlSeconds: this.options.ttlSeconds }, this.clock());
    this.metrics.mintDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    this.metrics.tokensMinted.inc({ alg: signer.alg, kind });
    this.logger.debug({ subject, audience, kid: minted.kid, kind }, 'token minted');
    return minted;
  }
}

/** The claims of a token that has already been verified. */
function decodeClaims(token: string): { iat: number } {
  const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { iat: number };
  return { iat: payload.iat };
}

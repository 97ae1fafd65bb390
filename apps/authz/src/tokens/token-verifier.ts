// Inbound validation with a small cache of tokens that verified: a caller sends
// the same token for up to 14.5 minutes, so one RSA verification per token and
// destination suffices. A hit still re-checks what can change: the key must still
// be published and not retired, the issuer the same, the token not expired.
import type { KeyRing } from '../keys/key-ring';
import { verifyMeshToken, type TokenVerification } from '@trellis/mesh-contracts';

export interface TokenVerifierOptions {
  issuer: () => string;
  clockSkewSeconds: number;
  maxLifetimeSeconds: number;
  maxEntries?: number;
}

interface Verified {
  subject: string;
  kid: string;
  issuer: string;
  expiresAt: number;
}

export class MeshTokenVerifier {
  private readonly verified = new Map<string, Verified>();
  private readonly maxEntries: number;

  constructor(
    private readonly keyRing: KeyRing,
    private readonly options: TokenVerifierOptions,
    private readonly clock: () => number = Date.now,
  ) {
    this.maxEntries = options.maxEntries ?? 10_000;
  }

  async verify(token: string | undefined, audience: string): Promise<TokenVerification> {
    const now = this.clock();
    const issuer = this.options.issuer();
    const cacheKey = token ? `${audience} ${token}` : undefined;
    const hit = cacheKey ? this.verified.get(cacheKey) : undefined;
    if (
      hit &&
      hit.issuer === issuer &&
      now < (hit.expiresAt + this.options.clockSkewSeconds) * 1000 &&
      this.keyRing.verificationKey(hit.kid)
    ) {
      return { valid: true, subject: hit.subject, audience, expiresAt: hit.expiresAt, kid: hit.kid };
    }
    const result = await verifyMeshToken(
      token,
      (kid) => this.keyRing.verificationKey(kid),
      {
        issuer,
        audience,
        clockSkewSeconds: this.options.clockSkewSeconds,
        maxLifetimeSeconds: this.options.maxLifetimeSeconds,
      },
      now,
    );
    if (cacheKey) {
      this.verified.delete(cacheKey);
      if (result.valid) {
        this.verified.set(cacheKey, { subject: result.subject, kid: result.kid, issuer, expiresAt: result.expiresAt });
        if (this.verified.size > this.maxEntries) this.verified.delete(this.verified.keys().next().value!);
      }
    }
    return result;
  }
}

// Server side: validates the mesh token a caller presents, as B's sidecar would
// with jwt_authn: RS256/ES256 signature against authz's published keys, `iss` =
// the mesh, `aud` = this service, `exp`/`nbf` with a small leeway, and a caller
// (`sub`) that declared this service as a dependency.
// The token rules themselves are @trellis/mesh-contracts' verifyMeshToken, the
// same function authz applies.
import type { JWTVerifyGetKey } from 'jose';
import { JwksCache, type JwksCacheOptions } from './jwks-cache';
import { MAX_MESH_TOKEN_LIFETIME_SECONDS, verifyMeshToken, type MeshTokenKeyLookup, type TokenRejection } from '@trellis/mesh-contracts';

export interface MeshTokenVerifierOptions {
  /** This service's name: tokens must carry it as `aud`. */
  service: string;
  issuer: string;
  /** authz's JWKS, e.g. http://authz.trellis:8181/.well-known/jwks.json; or a key getter (tests, etcd-fed keys). */
  keys: string | JWTVerifyGetKey;
  /** For a JWKS URL: refresh interval, cooldown, and where failed refreshes are reported (the last keys stay in use). */
  jwks?: JwksCacheOptions;
  clockSkewSeconds?: number;
  /** Longest token life accepted (exp - iat); default and ceiling MAX_MESH_TOKEN_LIFETIME_SECONDS. */
  maxLifetimeSeconds?: number;
  /** Callers allowed right now (those that declared this service); absent means any holder of a valid token. */
  isAllowedCaller?: (caller: string) => boolean;
}

export interface VerifiedCaller {
  caller: string;
  keyId: string | undefined;
  expiresAt: number;
}

export class MeshTokenRejected extends Error {
  /** `reason` explains; `code` is the bounded rejection kind (undeclared callers: 'undeclared-caller'). */
  constructor(
    readonly reason: string,
    readonly code: TokenRejection | 'undeclared-caller' = 'malformed',
  ) {
    super(`mesh token rejected: ${reason}`);
    this.name = 'MeshTokenRejected';
  }
}

export class MeshTokenVerifier {
  private readonly lookupKey: MeshTokenKeyLookup;

  constructor(private readonly options: MeshTokenVerifierOptions) {
    // Stale-while-error: an authz outage at a refresh never stops verification with the keys already held.
    const getKey = typeof options.keys === 'string' ? new JwksCache(new URL(options.keys), options.jwks).getKey : options.keys;
    this.lookupKey = keyLookup(getKey);
  }

  /** Verifies an `authorization` header value; throws MeshTokenRejected with the reason. */
  async verify(authorization: string | undefined): Promise<VerifiedCaller> {
    const match = /^Bearer (\S+)$/.exec(authorization ?? '');
    if (!match) throw new MeshTokenRejected('missing bearer token', 'missing');
    const result = await verifyMeshToken(match[1], this.lookupKey, {
      issuer: this.options.issuer,
      audience: this.options.service,
      clockSkewSeconds: this.options.clockSkewSeconds ?? 30,
      maxLifetimeSeconds: this.options.maxLifetimeSeconds ?? MAX_MESH_TOKEN_LIFETIME_SECONDS,
    });
    if (!result.valid) throw new MeshTokenRejected(result.detail, result.reason);
    const caller = result.subject;
    if (this.options.isAllowedCaller && !this.options.isAllowedCaller(caller)) {
      throw new MeshTokenRejected(`caller ${caller} has not declared ${this.options.service} as a dependency`, 'undeclared-caller');
    }
    return { caller, keyId: result.kid, expiresAt: result.expiresAt };
  }
}

/** A JWKS getter (remote, or a test's) as the contract's key lookup: a kid it cannot resolve is an unknown kid. */
function keyLookup(getKey: JWTVerifyGetKey): MeshTokenKeyLookup {
  return async (kid, alg) => {
    try {
      return { kid, alg, key: await getKey({ kid, alg }, { payload: '', signature: '' }) };
    } catch {
      return undefined;
    }
  };
}

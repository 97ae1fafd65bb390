// Server side: validates the mesh token a caller presents, as B's sidecar would
// with jwt_authn: RS256/ES256 signature against authz's published keys, `iss` =
// the mesh, `aud` = this service, `exp`/`nbf` with a small leeway, and a caller
// (`sub`) that declared this service as a dependency.
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';

export interface MeshTokenVerifierOptions {
  /** This service's name: tokens must carry it as `aud`. */
  service: string;
  issuer: string;
  /** authz's JWKS, e.g. http://authz.trellis:8181/.well-known/jwks.json; or a key getter (tests, etcd-fed keys). */
  keys: string | JWTVerifyGetKey;
  clockSkewSeconds?: number;
  /** Callers allowed right now (those that declared this service); absent means any holder of a valid token. */
  isAllowedCaller?: (caller: string) => boolean;
}

export interface VerifiedCaller {
  caller: string;
  keyId: string | undefined;
  expiresAt: number;
}

export class MeshTokenRejected extends Error {
  constructor(readonly reason: string) {
    super(`mesh token rejected: ${reason}`);
    this.name = 'MeshTokenRejected';
  }
}

const MAX_TOKEN_LENGTH = 8 * 1024;

export class MeshTokenVerifier {
  private readonly getKey: JWTVerifyGetKey;

  constructor(private readonly options: MeshTokenVerifierOptions) {
    this.getKey = typeof options.keys === 'string' ? createRemoteJWKSet(new URL(options.keys), { cooldownDuration: 5_000 }) : options.keys;
  }

  /** Verifies an `authorization` header value; throws MeshTokenRejected with the reason. */
  async verify(authorization: string | undefined): Promise<VerifiedCaller> {
    const match = /^Bearer ([A-Za-z0-9_.-]+)$/.exec(authorization ?? '');
    if (!match) throw new MeshTokenRejected('missing bearer token');
    const token = match[1]!;
    if (token.length > MAX_TOKEN_LENGTH) throw new MeshTokenRejected('token too large');
    let result;
    try {
      result = await jwtVerify(token, this.getKey, {
        issuer: this.options.issuer,
        audience: this.options.service,
        algorithms: ['RS256', 'ES256'],
        clockTolerance: this.options.clockSkewSeconds ?? 30,
        requiredClaims: ['sub', 'exp', 'iat'],
      });
    } catch (err) {
      throw new MeshTokenRejected(err instanceof Error ? err.message : 'invalid token');
    }
    const caller = result.payload.sub!;
    if (this.options.isAllowedCaller && !this.options.isAllowedCaller(caller)) {
      throw new MeshTokenRejected(`caller ${caller} has not declared ${this.options.service} as a dependency`);
    }
    return { caller, keyId: result.protectedHeader.kid, expiresAt: result.payload.exp! };
  }
}

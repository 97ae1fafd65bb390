// Proof of identity on Kubernetes: a projected ServiceAccount token (audience
// TRELLIS_K8S_TOKEN_AUDIENCE, so a token meant for the API server or anything
// else is refused) verified against the cluster's OIDC JWKS. The service record
// names which namespace/ServiceAccount may act as the service.
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { rejectingWeakKeys, tokenTimeProblem } from '@trellis/mesh-contracts';
import type { KubernetesServiceAccount } from '@trellis/mesh-schema';

/**
 * The longest life a ServiceAccount token may claim here. Projected tokens live
 * `expirationSeconds` (the kubelet's default is an hour, renewed at 80 %); authz checks
 * them offline, so a leaked one stays good as long as it claims, even after its pod is gone.
 */
export const MAX_KUBERNETES_TOKEN_LIFETIME_SECONDS = 86_400;

export interface KubernetesIdentityOptions {
  /** The cluster's service-account issuer (`--service-account-issuer`). */
  issuer: string;
  /** The cluster's JWKS: its URL, or the key set itself (tests, air-gapped clusters). */
  jwks: URL | JSONWebKeySet;
  audience: string;
  clockSkewSeconds: number;
}

export class KubernetesIdentity {
  private readonly keys: JWTVerifyGetKey;

  constructor(private readonly options: KubernetesIdentityOptions) {
    this.keys = rejectingWeakKeys(
      options.jwks instanceof URL ? createRemoteJWKSet(options.jwks, { cooldownDuration: 30_000 }) : createLocalJWKSet(options.jwks),
    ) as JWTVerifyGetKey;
  }

  /** The ServiceAccount a token proves, or a reason it proves nothing. */
  async verify(token: string): Promise<{ ok: true; account: KubernetesServiceAccount } | { ok: false; reason: string }> {
    try {
      const { payload } = await jwtVerify(token, this.keys, {
        issuer: this.options.issuer,
        audience: this.options.audience,
        algorithms: ['RS256', 'ES256'],
        clockTolerance: this.options.clockSkewSeconds,
        requiredClaims: ['exp', 'iat', 'sub'],
      });
      const times = tokenTimeProblem(payload, {
        clockSkewSeconds: this.options.clockSkewSeconds,
        maxLifetimeSeconds: MAX_KUBERNETES_TOKEN_LIFETIME_SECONDS,
      });
      if (times) return { ok: false, reason: times.detail };
      const k8s = payload['kubernetes.io'] as { namespace?: unknown; serviceaccount?: { name?: unknown } } | undefined;
      const namespace = k8s?.namespace;
      const name = k8s?.serviceaccount?.name;
      if (typeof namespace !== 'string' || typeof name !== 'string') return { ok: false, reason: 'not a ServiceAccount token' };
      // Both places must agree: `sub` is what the API server itself would authenticate.
      if (payload.sub !== `system:serviceaccount:${namespace}:${name}`)
        return { ok: false, reason: 'sub does not name the ServiceAccount' };
      return { ok: true, account: { namespace, serviceAccount: name } };
    } catch (err) {
      return { ok: false, reason: err instanceof Error ? err.message : String(err) };
    }
  }
}

// The token settings this replica runs with: the mesh-wide ones stored in etcd
// (the first replica writes them, everyone follows what is stored) combined with
// this replica's configuration.
import type { MeshSettings, MeshStore } from '@trellis/mesh-schema';
import type { Logger } from '@trellis/runtime';
import type { AuthzConfig } from '../config';

export interface TokenSettings {
  /** What is stored in mesh/settings (its issuer wins over the configured one). */
  mesh: MeshSettings;
  /** The larger of the configured and the mesh-wide clock skew. */
  clockSkewSeconds: number;
  /** How long a token stays cached: never past TTL − skew, so a handed-out token always has the skew of validity left. */
  cacheTtlSeconds: number;
}

export async function resolveTokenSettings(store: MeshStore, config: AuthzConfig, logger: Logger): Promise<TokenSettings> {
  const mesh = await store.ensureMeshSettings({
    tokenIssuer: config.TRELLIS_TOKEN_ISSUER,
    clockSkewSeconds: config.TRELLIS_CLOCK_SKEW_SECONDS,
    trustDomain: config.TRELLIS_TRUST_DOMAIN,
  });
  if (mesh.tokenIssuer !== config.TRELLIS_TOKEN_ISSUER) {
    logger.warn(
      { stored: mesh.tokenIssuer, configured: config.TRELLIS_TOKEN_ISSUER },
      'mesh/settings names another token issuer; using the stored one',
    );
  }
  // Validators allow the mesh-wide skew: never hand out a token with less validity left than
  // that, and keep a retired key published for at least that long past its last token.
  const clockSkewSeconds = Math.max(config.TRELLIS_CLOCK_SKEW_SECONDS, mesh.clockSkewSeconds);
  const cacheTtlSeconds = Math.min(config.TRELLIS_TOKEN_CACHE_TTL_SECONDS, config.TRELLIS_TOKEN_TTL_SECONDS - clockSkewSeconds);
  if (cacheTtlSeconds < config.TRELLIS_TOKEN_CACHE_TTL_SECONDS) {
    logger.warn({ cacheTtlSeconds, clockSkewSeconds }, 'token cache TTL shortened to keep the mesh clock skew of validity');
  }
  return { mesh, clockSkewSeconds, cacheTtlSeconds };
}

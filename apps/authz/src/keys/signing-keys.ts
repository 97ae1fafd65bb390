// The signing keys of this replica over their lifetime: read from the configured
// source at start and every TRELLIS_KEY_RELOAD_SECONDS, published through the key
// ring, and reconciled when another replica changes the published set. Whoever
// depends on "a key can sign" hears each moment that may have changed.
import type { MeshStore } from '@trellis/mesh-schema';
import { ConfigError, type Logger, type ShutdownStep } from '@trellis/runtime';
import type { AuthzConfig } from '../config';
import type { AuthzMetrics } from '../metrics';
import { KeyRing } from './key-ring';
import { CREDENTIAL_NAME_PREFIX, loadSigningKeys } from './load-signing-keys';
import { generateSigningKey, type SigningKey } from './signing-key';

export interface SigningKeysDeps {
  config: AuthzConfig;
  store: MeshStore;
  metrics: AuthzMetrics;
  logger: Logger;
  clock: () => number;
  /** The mesh-wide clock skew (a retired key stays published that long past its last token). */
  clockSkewSeconds: number;
  /** Keys to sign with instead of reading them from the configured source (tests). */
  readKeys?: () => Promise<SigningKey[]>;
  /** Called whenever which key signs may have changed: keys reloaded or reconciled, a pending key's activation time reached. */
  onSignerMayChange: () => void;
}

export interface SigningKeys {
  keyRing: KeyRing;
  /** Re-reads the key source and publishes/retires keys (also runs on a timer). */
  reload(): Promise<void>;
  /** Takes another replica's view of the published keys. */
  reconcile(): Promise<void>;
  /** Stops the reload and activation timers. */
  shutdownStep: ShutdownStep;
}

/** Loads the first keys (a missing key source stops the start) and keeps them current. */
export async function startSigningKeys(deps: SigningKeysDeps): Promise<SigningKeys> {
  const { config, logger, clock } = deps;
  const keyRing = new KeyRing(
    deps.store,
    {
      publishLeadSeconds: config.TRELLIS_KEY_PUBLISH_LEAD_SECONDS,
      tokenTtlSeconds: config.TRELLIS_TOKEN_TTL_SECONDS,
      clockSkewSeconds: deps.clockSkewSeconds,
    },
    logger,
    deps.metrics,
    clock,
  );
  const readKeys = deps.readKeys ?? signingKeySource(config, logger);

  // A pending key starts signing at its activeFrom: nothing else happens then, so a timer says so.
  let activationTimer: NodeJS.Timeout | undefined;
  let stopped = false;
  const changed = () => {
    if (activationTimer) clearTimeout(activationTimer);
    activationTimer = undefined;
    const next = keyRing.nextActivationAt();
    if (next !== undefined && !stopped) {
      // Capped so a far-off activation never overflows setTimeout's 32-bit delay.
      activationTimer = setTimeout(changed, Math.min(Math.max(0, next - clock()) + 10, 2 ** 31 - 1));
      activationTimer.unref();
    }
    deps.onSignerMayChange();
  };

  const reload = async () => {
    try {
      await keyRing.setLocalKeys(await readKeys());
    } finally {
      changed();
    }
  };
  const reconcile = async () => {
    try {
      await keyRing.reconcile();
    } finally {
      changed();
    }
  };
  await reload();

  const reloadTimer = setInterval(() => {
    reload().catch((err: unknown) => logger.error({ err }, 'reloading signing keys failed; keeping the current ones'));
  }, config.TRELLIS_KEY_RELOAD_SECONDS * 1000);
  reloadTimer.unref();

  return {
    keyRing,
    reload,
    reconcile,
    shutdownStep: {
      name: 'stop key reloads',
      run: () => {
        stopped = true;
        clearInterval(reloadTimer);
        if (activationTimer) clearTimeout(activationTimer);
      },
    },
  };
}

/** Keys from the configured source; an ephemeral key only when asked for (local development). */
function signingKeySource(config: AuthzConfig, logger: Logger): () => Promise<SigningKey[]> {
  // A dedicated directory holds only signing keys; systemd's credentials directory holds
  // every credential of the unit, of which the signing keys are those named signing-key*.
  const dir = config.TRELLIS_SIGNING_KEYS_DIR ?? config.CREDENTIALS_DIRECTORY;
  const namePrefix = config.TRELLIS_SIGNING_KEYS_DIR ? undefined : CREDENTIAL_NAME_PREFIX;
  const exclude = config.TRELLIS_ETCD_KEY_FILE ? [config.TRELLIS_ETCD_KEY_FILE] : [];
  let ephemeral: Promise<SigningKey> | undefined;
  return async () => {
    const keys = await loadSigningKeys({ dir, namePrefix, exclude, pem: config.TRELLIS_SIGNING_KEY });
    if (keys.length > 0) return keys;
    if (config.TRELLIS_SIGNING_KEY_EPHEMERAL) {
      if (!ephemeral) {
        logger.warn('signing with an ephemeral key generated at start: tokens die with this process and replicas do not share it');
        ephemeral = generateSigningKey('RS256', 'ephemeral');
      }
      return [await ephemeral];
    }
    throw new ConfigError([
      `TRELLIS_SIGNING_KEYS_DIR: no signing key found${dir ? ` in ${dir}` : ''}; set TRELLIS_SIGNING_KEYS_DIR, TRELLIS_SIGNING_KEY or systemd LoadCredential= (CREDENTIALS_DIRECTORY)`,
    ]);
  };
}

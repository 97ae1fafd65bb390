// startAuthz: the whole service wired together — embeddable, so tests start it
// on port 0 against real etcd and Redis, and main.ts only reads config.
import type { Server as HttpServer } from 'node:http';
import type { Registry } from 'prom-client';
import { DEFAULT_TRUST_DOMAIN, KeyLayout, MeshStore, MeshWatcher, ServiceCredentials, type EtcdClient } from '@trellis/mesh-schema';
import { MeshCa } from '@trellis/pki';
import { ConfigError, createMetricsRegistry, Health, type Logger, type ShutdownStep } from '@trellis/runtime';
import { caSourceFromConfig, ReloadingCa } from './ca/ca-source';
import { KubernetesIdentity } from './ca/kubernetes-identity';
import { CheckService } from './check/check-service';
import { MeshPolicy } from './check/mesh-policy';
import type { AuthzConfig } from './config';
import { CloudflareAccessVerifier, type CloudflareAccessOptions } from './edge/cloudflare-access';
import { AUTHORIZATION_SERVICE_NAME, startGrpcServer, stopGrpcServer } from './grpc/grpc-server';
import { certificateRouter } from './http/certificate-route';
import { createHttpApp } from './http/http-app';
import { KeyRing } from './keys/key-ring';
import { CREDENTIAL_NAME_PREFIX, loadSigningKeys } from './keys/load-signing-keys';
import { generateSigningKey, type SigningKey } from './keys/signing-key';
import { AuthzMetrics } from './metrics';
import { createRedisClient, type RedisClient } from './tokens/redis-client';
import { RedisTokenCache } from './tokens/redis-token-cache';
import { MeshTokenIssuer } from './tokens/token-issuer';
import { MeshTokenVerifier } from './tokens/token-verifier';

export interface AuthzDeps {
  config: AuthzConfig;
  logger: Logger;
  /** The caller owns the client and closes it after `close()`. */
  etcd: EtcdClient;
  /** Keys to sign with instead of reading them from the configured source (tests). */
  signingKeys?: () => Promise<SigningKey[]>;
  /** Overrides for the Cloudflare Access verifier (tests shorten the refetch cooldown). */
  edge?: Partial<CloudflareAccessOptions>;
  clock?: () => number;
}

export interface Authz {
  grpcPort: number;
  httpPort: number;
  health: Health;
  registry: Registry;
  metrics: AuthzMetrics;
  keyRing: KeyRing;
  /** The shared token cache's client (tests wait for it to connect; the decision never does). */
  redis: RedisClient;
  /** The mesh CA when one is configured; `reload()` re-reads its files (also runs on the key timer). */
  ca: ReloadingCa | undefined;
  /** Re-reads the key source and publishes/retires keys (also runs on a timer). */
  reloadKeys(): Promise<void>;
  /** Resolves when the first registry snapshot is loaded and a key can sign. */
  whenReady(): Promise<void>;
  /** Shutdown in order: not ready, drain gRPC, close HTTP, stop the watch, close Redis. */
  shutdownSteps: ShutdownStep[];
  close(): Promise<void>;
}

const GRPC_DRAIN_MS = 5_000;
const HTTP_DRAIN_MS = 5_000;

export async function startAuthz(deps: AuthzDeps): Promise<Authz> {
  const { config, logger } = deps;
  const clock = deps.clock ?? Date.now;
  const registry = createMetricsRegistry('authz');
  const metrics = new AuthzMetrics(registry);
  const health = new Health();
  const layout = new KeyLayout(config.TRELLIS_ETCD_PREFIX);
  const store = new MeshStore(deps.etcd, layout);

  // Mesh-wide settings: the first replica writes them, everyone follows what is stored.
  const settings = await store.ensureMeshSettings({
    tokenIssuer: config.TRELLIS_TOKEN_ISSUER,
    clockSkewSeconds: config.TRELLIS_CLOCK_SKEW_SECONDS,
    trustDomain: config.TRELLIS_TRUST_DOMAIN,
  });
  if (settings.tokenIssuer !== config.TRELLIS_TOKEN_ISSUER) {
    logger.warn(
      { stored: settings.tokenIssuer, configured: config.TRELLIS_TOKEN_ISSUER },
      'mesh/settings names another token issuer; using the stored one',
    );
  }
  // Validators allow the mesh-wide skew: never hand out a token with less validity left than
  // that, and keep a retired key published for at least that long past its last token.
  const skewSeconds = Math.max(config.TRELLIS_CLOCK_SKEW_SECONDS, settings.clockSkewSeconds);
  const cacheTtlSeconds = Math.min(config.TRELLIS_TOKEN_CACHE_TTL_SECONDS, config.TRELLIS_TOKEN_TTL_SECONDS - skewSeconds);
  if (cacheTtlSeconds < config.TRELLIS_TOKEN_CACHE_TTL_SECONDS) {
    logger.warn({ cacheTtlSeconds, clockSkewSeconds: skewSeconds }, 'token cache TTL shortened to keep the mesh clock skew of validity');
  }

  const keyRing = new KeyRing(
    store,
    {
      publishLeadSeconds: config.TRELLIS_KEY_PUBLISH_LEAD_SECONDS,
      tokenTtlSeconds: config.TRELLIS_TOKEN_TTL_SECONDS,
      clockSkewSeconds: skewSeconds,
    },
    logger,
    metrics,
    clock,
  );
  const readKeys = deps.signingKeys ?? signingKeySource(config, logger);
  const reloadKeys = async () => keyRing.setLocalKeys(await readKeys());
  await reloadKeys();

  const watcher = MeshWatcher.start(deps.etcd, layout, {
    logger,
    onInvalid: (record) => metrics.recordsDropped.inc({ kind: record.kind }),
  });
  const policy = new MeshPolicy(watcher);
  watcher.on('update', (update) => {
    // Another replica published or retired a key: take its view (a re-list, not the event, so the schedule sees everything).
    if (update.reset || update.changes.some((change) => change.kind === 'authzKey')) {
      keyRing.reconcile().catch((err: unknown) => logger.warn({ err }, 'key reconcile after a watch update failed'));
    }
  });
  const issuer = () => watcher.state.meshSettings?.tokenIssuer ?? settings.tokenIssuer;

  const redis = createRedisClient(config);
  watchRedisConnection(redis, logger);
  const sharedCache = new RedisTokenCache(redis, { keyPrefix: config.TRELLIS_REDIS_KEY_PREFIX }, metrics, logger);
  const tokens = new MeshTokenIssuer(
    keyRing,
    sharedCache,
    issuer,
    { ttlSeconds: config.TRELLIS_TOKEN_TTL_SECONDS, cacheTtlSeconds },
    metrics,
    logger,
    clock,
  );
  const access = new CloudflareAccessVerifier(
    { certsUrlTemplate: config.TRELLIS_CLOUDFLARE_CERTS_URL_TEMPLATE, clockSkewSeconds: skewSeconds, ...deps.edge },
    metrics,
    logger,
  );
  // Fetch the certs of Access teams as soon as an ingress names them.
  const prefetchAccessCerts = () =>
    access.prefetch(policy.accessTeamDomains()).catch((err: unknown) => logger.warn({ err }, 'prefetching Access certs failed'));
  watcher.on('update', (update) => {
    if (update.reset || update.changes.some((change) => change.kind === 'service')) prefetchAccessCerts();
  });
  const verifier = new MeshTokenVerifier(
    keyRing,
    { issuer, clockSkewSeconds: skewSeconds, maxLifetimeSeconds: config.TRELLIS_TOKEN_TTL_SECONDS },
    clock,
  );
  const checks = new CheckService(policy, tokens, verifier, access, metrics, logger);

  const credentials = config.TRELLIS_TOKEN_ENDPOINT_CREDENTIALS
    ? await ServiceCredentials.load(config.TRELLIS_TOKEN_ENDPOINT_CREDENTIALS)
    : undefined;
  if (!credentials) logger.info('POST /v1/token is disabled: TRELLIS_TOKEN_ENDPOINT_CREDENTIALS is not set');

  // The mesh CA, when one is configured (never generated silently: see ca/ca-source.ts).
  const trustDomain = settings.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  if (trustDomain !== config.TRELLIS_TRUST_DOMAIN)
    logger.warn(
      { stored: trustDomain, configured: config.TRELLIS_TRUST_DOMAIN },
      'mesh/settings names another trust domain; using the stored one',
    );
  const caSource = await caSourceFromConfig(config, logger);
  const ca = caSource
    ? await ReloadingCa.start(
        caSource,
        (material) => MeshCa.load(material, { trustDomain, lifetimeSeconds: config.TRELLIS_WORKLOAD_CERT_TTL_SECONDS }),
        logger,
      )
    : undefined;
  if (!ca) logger.info('the mesh CA is off: no TRELLIS_CA_CERT_FILE / TRELLIS_CA_KEY_FILE, ca.crt credential or dev root');
  const kubernetes =
    config.TRELLIS_K8S_TOKEN_ISSUER && config.TRELLIS_K8S_JWKS_URL
      ? new KubernetesIdentity({
          issuer: config.TRELLIS_K8S_TOKEN_ISSUER,
          jwks: new URL(config.TRELLIS_K8S_JWKS_URL),
          audience: config.TRELLIS_K8S_TOKEN_AUDIENCE,
          clockSkewSeconds: skewSeconds,
        })
      : undefined;
  const certificates = certificateRouter({
    ca: () => ca?.ca,
    credentials,
    kubernetes,
    services: () => watcher.state.services,
    metrics,
    logger,
  });

  health.addCheck('registry', () => watcher.ready);
  health.addCheck('signingKey', () => keyRing.signer() !== undefined);

  const grpc = await startGrpcServer(checks, config.TRELLIS_HOST, config.TRELLIS_GRPC_PORT);
  const http = createHttpApp({ health, registry, keyRing, policy, tokens, credentials, certificates, metrics, logger });
  const httpServer = await new Promise<HttpServer>((resolve, reject) => {
    const server = http.listen(config.TRELLIS_HTTP_PORT, config.TRELLIS_HOST, () => resolve(server)).once('error', reject);
  });
  const httpPort = (httpServer.address() as { port: number }).port;
  // Outlive the idle timeouts of scrapers and load balancers, so they never reuse a socket we just closed.
  httpServer.keepAliveTimeout = 65_000;
  httpServer.headersTimeout = 66_000;

  // gRPC health follows readiness (probes and Envoy health checks read it).
  const syncGrpcHealth = async () => {
    const status = (await health.readiness()).ready ? 'SERVING' : 'NOT_SERVING';
    grpc.health.setStatus('', status);
    grpc.health.setStatus(AUTHORIZATION_SERVICE_NAME, status);
  };
  const healthTimer = setInterval(() => void syncGrpcHealth(), 1_000);
  healthTimer.unref();
  watcher.on('status', () => void syncGrpcHealth());
  const keyTimer = setInterval(() => {
    reloadKeys().catch((err: unknown) => logger.error({ err }, 'reloading signing keys failed; keeping the current ones'));
    void ca?.reload();
  }, config.TRELLIS_KEY_RELOAD_SECONDS * 1000);
  keyTimer.unref();
  void watcher.whenReady().then(syncGrpcHealth);

  logger.info({ grpcPort: grpc.port, httpPort, issuer: settings.tokenIssuer }, 'authz listening');

  const shutdownSteps: ShutdownStep[] = [
    {
      name: 'stop gRPC',
      run: async () => {
        clearInterval(healthTimer);
        clearInterval(keyTimer);
        grpc.health.setStatus('', 'NOT_SERVING');
        grpc.health.setStatus(AUTHORIZATION_SERVICE_NAME, 'NOT_SERVING');
        await stopGrpcServer(grpc.server, GRPC_DRAIN_MS);
      },
    },
    { name: 'close HTTP', run: () => closeHttpServer(httpServer, HTTP_DRAIN_MS) },
    { name: 'stop etcd watch', run: () => watcher.close() },
    { name: 'close Redis', run: () => void redis.disconnect() },
  ];
  let closing: Promise<void> | undefined;

  return {
    grpcPort: grpc.port,
    httpPort,
    health,
    registry,
    metrics,
    keyRing,
    redis,
    ca,
    reloadKeys,
    async whenReady() {
      await watcher.whenReady();
      while (!(await health.readiness()).ready) await new Promise((resolve) => setTimeout(resolve, 50));
      await syncGrpcHealth();
    },
    shutdownSteps,
    close() {
      closing ??= (async () => {
        health.startDraining();
        for (const step of shutdownSteps) await step.run();
      })();
      return closing;
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

/** Stops accepting, lets in-flight requests finish for up to `graceMs`, then cuts what is left. */
function closeHttpServer(server: HttpServer, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/** Logs Redis connectivity once per change, not once per reconnect attempt. */
function watchRedisConnection(redis: RedisClient, logger: Logger): void {
  let healthy: boolean | undefined;
  redis.on('ready', () => {
    if (healthy !== true) logger.info('Redis connected');
    healthy = true;
  });
  redis.on('error', (err: Error) => {
    if (healthy !== false) logger.warn({ err: { message: err.message } }, 'Redis unavailable: tokens are minted locally until it is back');
    healthy = false;
  });
}

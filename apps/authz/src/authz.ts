// startAuthz: the whole service wired together — embeddable, so tests start it
// on port 0 against real etcd and Redis, and main.ts only reads config. The
// parts with a life of their own start in their modules: the signing keys
// (keys/signing-keys.ts), the Redis client (tokens/redis-client.ts), the gRPC
// server with its health service (grpc/grpc-server.ts), or the Check worker that
// runs that server in a thread of its own (check-worker/check-worker.ts).
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import type { Registry } from 'prom-client';
import {
  DEFAULT_TRUST_DOMAIN,
  KeyLayout,
  MeshStore,
  MeshWatcher,
  ReloadingServiceCredentials,
  type EtcdClient,
} from '@trellis/mesh-schema';
import { MeshCa } from '@trellis/pki';
import {
  closeHttpServer,
  closeInOrder,
  createMetricsRegistry,
  Health,
  listenHttp,
  stoppingOnFailure,
  type ListeningHttpServer,
  type Logger,
  type ShutdownStep,
} from '@trellis/runtime';
import {
  grpcConnectionLimitsFrom,
  grpcTlsLimitsFrom,
  pendingTlsConnections,
  ServingTls,
  stopGrpcServer,
  type TlsMaterialSource,
} from '@trellis/runtime/grpc';
import { caSourceFromConfig, ReloadingCa } from './ca/ca-source';
import { KubernetesIdentity } from './ca/kubernetes-identity';
import { CheckService } from './check/check-service';
import { CheckWorker } from './check-worker/check-worker';
import { MeshPolicy } from './check/mesh-policy';
import { DEFAULT_AUTHZ_MAX_CONNECTION_AGE_MS, type AuthzConfig } from './config';
import { CloudflareAccessVerifier, type CloudflareAccessOptions } from './edge/cloudflare-access';
import { startGrpcServer, type AuthzGrpcServer } from './grpc/grpc-server';
import { operatorFilesSource, selfIssuedSource } from './tls/serving-tls';
import { certificateRouter } from './http/certificate-route';
import { createHttpApp, createMtlsApp } from './http/http-app';
import { listenMtls, type ListeningMtlsServer } from './http/mtls-server';
import type { KeyRing } from './keys/key-ring';
import type { SigningKey } from './keys/signing-key';
import { startSigningKeys, type SigningKeys } from './keys/signing-keys';
import { AuthzMetrics } from './metrics';
import { startRedis, type RedisClient } from './tokens/redis-client';
import { RedisTokenCache } from './tokens/redis-token-cache';
import { MeshTokenIssuer } from './tokens/token-issuer';
import { resolveTokenSettings } from './tokens/token-settings';
import { MeshTokenVerifier } from './tokens/token-verifier';

export interface AuthzDeps {
  config: AuthzConfig;
  logger: Logger;
  /** The caller owns the client and closes it after `close()`. */
  etcd: EtcdClient;
  /** The client certificate (PEM) the etcd client presents, if any: exported as its expiry. */
  etcdClientCert?: Buffer;
  /** Keys to sign with instead of reading them from the configured source (tests). */
  signingKeys?: () => Promise<SigningKey[]>;
  /** Overrides for the Cloudflare Access verifier (tests shorten the refetch cooldown). */
  edge?: Partial<CloudflareAccessOptions>;
  clock?: () => number;
  /**
   * The Check worker's script (default: check.worker.js beside authz's bundle; tests build one:
   * test/support/check-worker-script.ts) and its first restart delay (default 100 ms).
   */
  checkWorker?: { script?: string; restartDelayMs?: number };
}

export interface Authz {
  grpcPort: number;
  httpPort: number;
  /** The mTLS port (POST /v1/token with a client certificate); undefined without TLS (local development). */
  mtlsPort: number | undefined;
  health: Health;
  /** The main thread's metrics; `allMetrics()` adds the Check worker's. */
  registry: Registry;
  /** Everything /metrics shows: the main thread's registry with the Check worker's counts added. */
  allMetrics(): Promise<Registry>;
  metrics: AuthzMetrics;
  keyRing: KeyRing;
  /** The shared token cache's client (tests wait for it to connect; the decision never does). */
  redis: RedisClient;
  /** The mesh CA when one is configured; `reload()` re-reads its files (also runs on the key reload timer). */
  ca: ReloadingCa | undefined;
  /** authz's own certificate and client roots (undefined: plaintext, local development); `refresh()` also runs on the timer. */
  tls: ServingTls | undefined;
  /** Re-reads the key source and publishes/retires keys (also runs on a timer). */
  reloadKeys(): Promise<void>;
  /**
   * Re-reads every file authz follows, now: the signing keys, the mesh CA and authz's own TLS, the token endpoint's
   * credentials (SIGHUP, `systemctl reload`). Each keeps what it had when its new content does not load.
   */
  reloadFiles(): Promise<void>;
  /** Resolves when the first registry snapshot is loaded and a key can sign. */
  whenReady(): Promise<void>;
  /** Shutdown in order: stop key reloads, drain gRPC, close HTTP, stop the watch, close Redis. Not `etcd`. */
  shutdownSteps: ShutdownStep[];
  /** The thread serving Checks (TRELLIS_CHECK_WORKER, the default); undefined when the main thread serves them. */
  checkWorker: CheckWorker | undefined;
  /** Readiness goes false, then the shutdown steps run once. */
  close(): Promise<void>;
}

const GRPC_DRAIN_MS = 5_000;
const HTTP_DRAIN_MS = 5_000;
/** How long the Check worker waits for the main thread (a token miss, an inbound or Access verification) before denying (503). */
const CHECK_WORKER_CALL_TIMEOUT_MS = 5_000;

export async function startAuthz(deps: AuthzDeps): Promise<Authz> {
  // Ready (and gRPC SERVING) with the registry snapshot loaded and a key that can sign; rechecked on each change of either.
  const health = new Health();
  const started: StartedParts = {};
  const shutdownSteps = shutdownStepsOf(started);
  const close = closeInOrder(health, shutdownSteps);
  // A start that fails part way (a port taken, a file that does not load, no way to verify callers) stops what it had
  // started, then rejects with its own failure: nothing it opened keeps the process alive.
  const authz = await stoppingOnFailure(close, deps.logger)(startParts(deps, health, started));
  return { ...authz, shutdownSteps, close };
}

/** What startAuthz has started so far: its shutdown steps stop these, after a start that finished or one that failed part way. */
interface StartedParts {
  keys?: SigningKeys;
  tlsReloadTimer?: NodeJS.Timeout;
  credentials?: ReloadingServiceCredentials;
  worker?: CheckWorker;
  grpc?: AuthzGrpcServer;
  http?: ListeningHttpServer;
  mtls?: ListeningMtlsServer;
  watcher?: MeshWatcher;
  sharedCache?: RedisTokenCache;
  redis?: { shutdownStep: ShutdownStep };
}

/** Shutdown in order: stop key reloads, drain gRPC, close HTTP, stop the watch, close Redis; each only if it started. */
function shutdownStepsOf(started: StartedParts): ShutdownStep[] {
  return [
    { name: 'stop key reloads', run: () => started.keys?.shutdownStep.run() },
    { name: 'stop CA and TLS reloads', run: () => clearInterval(started.tlsReloadTimer) },
    { name: 'stop service credential reloads', run: () => started.credentials?.close() },
    {
      name: 'stop gRPC',
      run: () => (started.grpc ? stopGrpcServer(started.grpc.server, GRPC_DRAIN_MS) : started.worker?.stop(GRPC_DRAIN_MS)),
    },
    { name: 'close HTTP', run: () => (started.http ? closeHttpServer(started.http.server, HTTP_DRAIN_MS) : undefined) },
    { name: 'close mTLS', run: () => (started.mtls ? closeHttpServer(started.mtls.server, HTTP_DRAIN_MS) : undefined) },
    { name: 'stop etcd watch', run: () => started.watcher?.close() },
    { name: 'stop Redis probes', run: () => started.sharedCache?.close() },
    { name: 'close Redis', run: () => started.redis?.shutdownStep.run() },
  ];
}

/** Everything of startAuthz but its shutdown; each part with a life of its own goes into `started` as it starts. */
async function startParts(deps: AuthzDeps, health: Health, started: StartedParts): Promise<Omit<Authz, 'shutdownSteps' | 'close'>> {
  const { config, logger } = deps;
  const clock = deps.clock ?? Date.now;
  const registry = createMetricsRegistry('authz');
  const metrics = new AuthzMetrics(registry);
  if (deps.etcdClientCert) metrics.registerEtcdClientCertExpiry(deps.etcdClientCert);
  // Each possible change of signer also goes to the Check worker, once it runs.
  const onRecheck: Array<() => void> = [];
  const recheck = () => {
    void health.recheck();
    for (const listener of onRecheck) listener();
  };
  const layout = new KeyLayout(config.TRELLIS_ETCD_PREFIX);
  const store = new MeshStore(deps.etcd, layout);

  const settings = await resolveTokenSettings(store, config, logger);
  const keys = await startSigningKeys({
    config,
    store,
    metrics,
    logger,
    clock,
    clockSkewSeconds: settings.clockSkewSeconds,
    readKeys: deps.signingKeys,
    onSignerMayChange: recheck,
  });
  started.keys = keys;
  const { keyRing } = keys;

  const watcher = MeshWatcher.start(deps.etcd, layout, {
    logger,
    onInvalid: (record) => metrics.recordsDropped.inc({ kind: record.kind }),
    onDisconnect: (code) => metrics.etcdWatchDisconnects.inc({ code }),
  });
  started.watcher = watcher;
  const policy = new MeshPolicy(watcher);
  watcher.on('update', (update) => {
    // Another replica published or retired a key: take its view (a re-list, not the event, so the schedule sees everything).
    if (update.reset || update.changes.some((change) => change.kind === 'authzKey')) {
      keys.reconcile().catch((err: unknown) => logger.warn({ err }, 'key reconcile after a watch update failed'));
    }
  });
  watcher.on('status', recheck);
  void watcher.whenReady().then(recheck, () => undefined);
  const issuer = () => watcher.state.meshSettings?.tokenIssuer ?? settings.mesh.tokenIssuer;

  const redis = startRedis(config, logger, (result) => metrics.redisFilesReloads.inc({ result }));
  started.redis = redis;
  const sharedCache = new RedisTokenCache(redis.client, { keyPrefix: config.TRELLIS_REDIS_KEY_PREFIX }, metrics, logger);
  started.sharedCache = sharedCache;
  const tokens = new MeshTokenIssuer(
    keyRing,
    sharedCache,
    issuer,
    { ttlSeconds: config.TRELLIS_TOKEN_TTL_SECONDS, cacheTtlSeconds: settings.cacheTtlSeconds },
    metrics,
    logger,
    clock,
  );
  const access = new CloudflareAccessVerifier(
    { certsUrlTemplate: config.TRELLIS_CLOUDFLARE_CERTS_URL_TEMPLATE, clockSkewSeconds: settings.clockSkewSeconds, ...deps.edge },
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
    { issuer, clockSkewSeconds: settings.clockSkewSeconds, maxLifetimeSeconds: config.TRELLIS_TOKEN_TTL_SECONDS },
    clock,
  );

  // Followed without a restart, as the registry follows the same Secret: a revoked credential buys no certificate
  // within the reload period; a new content that does not parse keeps the last good set (ReloadingServiceCredentials).
  const credentialsPath = config.TRELLIS_TOKEN_ENDPOINT_CREDENTIALS;
  const credentials = credentialsPath
    ? await ReloadingServiceCredentials.start(credentialsPath, {
        pollMs: config.TRELLIS_TOKEN_ENDPOINT_CREDENTIALS_RELOAD_SECONDS * 1000,
        onReload: (result, { size, error }) => {
          metrics.serviceCredentialsReloads.inc({ result });
          if (result === 'ok') logger.info({ path: credentialsPath, credentials: size }, 'service credentials reloaded');
          else
            logger.error(
              { path: credentialsPath, reason: error?.message, credentials: size },
              'service credentials not reloaded: keeping the last good set',
            );
        },
      })
    : undefined;
  started.credentials = credentials;
  if (!credentials) logger.info('POST /v1/token is disabled: TRELLIS_TOKEN_ENDPOINT_CREDENTIALS is not set');

  // The mesh CA, when one is configured (never generated silently: see ca/ca-source.ts).
  const trustDomain = settings.mesh.trustDomain ?? DEFAULT_TRUST_DOMAIN;
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

  // Callers prove who they are with client certificates: authz needs its own certificate and the roots to verify theirs.
  const tlsSource = servingTlsSourceOf(config, ca);
  const tls = tlsSource
    ? await ServingTls.start(tlsSource, { name: 'authz', logger, onRefresh: (result) => metrics.tlsReloads.inc({ result }) })
    : undefined;
  if (!tls) {
    if (!config.TRELLIS_ALLOW_INSECURE_CALLERS)
      throw new Error(
        'authz cannot verify who calls it: configure the mesh CA (TRELLIS_CA_CERT_FILE / TRELLIS_CA_KEY_FILE or the ca.crt credential) ' +
          'or TRELLIS_TLS_CERT_FILE / TRELLIS_TLS_KEY_FILE with TRELLIS_TLS_CLIENT_CA_FILE; ' +
          'TRELLIS_ALLOW_INSECURE_CALLERS=true (local development only) serves plaintext instead',
      );
    logger.warn(
      'authz serves plaintext gRPC and decides Checks on what the route says (TRELLIS_ALLOW_INSECURE_CALLERS): never in production',
    );
  } else if (config.TRELLIS_ALLOW_INSECURE_CALLERS) {
    logger.warn('client certificates are optional (TRELLIS_ALLOW_INSECURE_CALLERS): never in production');
  }
  // A rotated Secret updates the CA and TLS files too: re-read them on the key reload period, the CA first (authz's
  // own certificate follows its trust bundle), and the Redis password and TLS files (used from the next reconnect).
  const reloadCaAndTls = async () => {
    await ca?.reload();
    await tls?.refresh();
    redis.reloadFiles();
  };
  const tlsReloadTimer = setInterval(() => void reloadCaAndTls(), config.TRELLIS_KEY_RELOAD_SECONDS * 1000);
  tlsReloadTimer.unref();
  started.tlsReloadTimer = tlsReloadTimer;
  const kubernetes =
    config.TRELLIS_K8S_TOKEN_ISSUER && config.TRELLIS_K8S_JWKS_URL
      ? new KubernetesIdentity({
          issuer: config.TRELLIS_K8S_TOKEN_ISSUER,
          jwks: new URL(config.TRELLIS_K8S_JWKS_URL),
          audience: config.TRELLIS_K8S_TOKEN_AUDIENCE,
          clockSkewSeconds: settings.clockSkewSeconds,
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

  const requireClientCertificate = !config.TRELLIS_ALLOW_INSECURE_CALLERS;
  const tlsLimits = grpcTlsLimitsFrom(config);
  const connectionLimits = grpcConnectionLimitsFrom(config, { maxConnectionAgeMs: DEFAULT_AUTHZ_MAX_CONNECTION_AGE_MS });
  const worker = config.TRELLIS_CHECK_WORKER
    ? await CheckWorker.start({
        script: deps.checkWorker?.script ?? join(__dirname, 'check.worker.js'),
        restartDelayMs: deps.checkWorker?.restartDelayMs,
        settings: {
          host: config.TRELLIS_HOST,
          port: config.TRELLIS_GRPC_PORT,
          logLevel: logger.level,
          allowInsecureCallers: config.TRELLIS_ALLOW_INSECURE_CALLERS,
          requireClientCertificate,
          trustDomain,
          tls: tls?.material,
          callTimeoutMs: CHECK_WORKER_CALL_TIMEOUT_MS,
          tlsLimits,
          connectionLimits,
        },
        watcher,
        signer: () => ({ type: 'signer', kid: keyRing.signer()?.kid, issuer: issuer() }),
        answerers: { tokens, verifier, access },
        tls,
        health,
        metrics,
        logger,
      })
    : undefined;
  started.worker = worker;
  if (worker) {
    health.addCheck('checkWorker', () => worker.serving);
    onRecheck.push(() => worker.pushSigner());
  }
  const grpc: AuthzGrpcServer | undefined = worker
    ? undefined
    : await startGrpcServer(
        new CheckService(policy, tokens, verifier, access, metrics, logger, {
          allowInsecureCallers: config.TRELLIS_ALLOW_INSECURE_CALLERS,
        }),
        health,
        config.TRELLIS_HOST,
        config.TRELLIS_GRPC_PORT,
        {
          tls,
          requireClientCertificate,
          trustDomain: () => trustDomain,
          tlsLimits,
          connectionLimits,
          onTlsRefused: (reason) => metrics.tlsRefused.inc({ port: 'grpc', reason }),
          onStreamsKept: (streams) => metrics.grpcConnections.inc({ streams }),
        },
        logger,
      );
  started.grpc = grpc;
  if (grpc) metrics.readTlsPendingFrom('grpc', () => pendingTlsConnections(grpc.server));
  const grpcPort = worker?.grpcPort ?? grpc!.port;
  // With the worker, /metrics adds its Check counts to the main thread's.
  const allMetrics = () => (worker ? worker.withWorkerMetrics(registry) : Promise.resolve(registry));
  const metricsSource = { contentType: registry.contentType, metrics: async () => (await allMetrics()).metrics() };
  const http = await listenHttp(
    createHttpApp({
      health,
      registry: metricsSource,
      keyRing,
      policy,
      tokens,
      credentials,
      allowInsecureCallers: config.TRELLIS_ALLOW_INSECURE_CALLERS,
      certificates,
      metrics,
      logger,
    }),
    config.TRELLIS_HOST,
    config.TRELLIS_HTTP_PORT,
    { headersTimeoutMs: config.TRELLIS_HTTP_HEADERS_TIMEOUT_MS, requestTimeoutMs: config.TRELLIS_HTTP_REQUEST_TIMEOUT_MS },
  );
  started.http = http;
  const mtls = tls
    ? await listenMtls(createMtlsApp({ policy, tokens, metrics, logger, trustDomain: () => trustDomain }), tls, {
        host: config.TRELLIS_HOST,
        port: config.TRELLIS_MTLS_PORT,
        requireClientCertificate,
        limits: { headersTimeoutMs: config.TRELLIS_HTTP_HEADERS_TIMEOUT_MS, requestTimeoutMs: config.TRELLIS_HTTP_REQUEST_TIMEOUT_MS },
        tlsLimits: { handshakeTimeoutMs: tlsLimits.handshakeTimeoutMs, maxPendingConnections: tlsLimits.maxPendingConnections },
        onTlsRefused: (reason) => metrics.tlsRefused.inc({ port: 'mtls', reason }),
      })
    : undefined;
  started.mtls = mtls;
  if (mtls) metrics.readTlsPendingFrom('mtls', () => mtls.guard.pending);
  recheck();

  logger.info(
    { grpcPort, checkWorker: worker !== undefined, httpPort: http.port, mtlsPort: mtls?.port, issuer: settings.mesh.tokenIssuer },
    'authz listening',
  );

  return {
    grpcPort,
    httpPort: http.port,
    mtlsPort: mtls?.port,
    health,
    registry,
    allMetrics,
    metrics,
    keyRing,
    redis: redis.client,
    ca,
    tls,
    reloadKeys: keys.reload,
    async reloadFiles() {
      const results = await Promise.allSettled([keys.reload(), reloadCaAndTls(), credentials?.reload()]);
      for (const r of results) if (r.status === 'rejected') logger.error({ err: r.reason }, 'reloading a file on request failed');
    },
    checkWorker: worker,
    async whenReady() {
      await watcher.whenReady();
      await health.whenReady();
    },
  };
}

/** Where authz's serving certificate comes from: the operator's files, else its own mesh CA; undefined when neither is configured. */
function servingTlsSourceOf(config: AuthzConfig, ca: ReloadingCa | undefined): TlsMaterialSource | undefined {
  const meshCa = () => ca?.ca;
  if (config.TRELLIS_TLS_CERT_FILE && config.TRELLIS_TLS_KEY_FILE)
    return operatorFilesSource(config.TRELLIS_TLS_CERT_FILE, config.TRELLIS_TLS_KEY_FILE, config.TRELLIS_TLS_CLIENT_CA_FILE ?? meshCa);
  return ca ? selfIssuedSource(meshCa, config.TRELLIS_TLS_CLIENT_CA_FILE) : undefined;
}

/**
 * V8 settings for the authz process, applied by main.ts before anything starts.
 *
 * Allocation-site pretenuring: when objects from one allocation site survive
 * scavenges in bulk (loading the registry snapshot through the etcd watch, thousands
 * of records through grpc-js), V8 starts allocating from that site straight into the
 * old generation. Sites the Check path shares with that work (grpc-js's per-call
 * objects) then fill the old generation with per-call garbage, and mark-compacts run
 * every second or so. Whether it happens depends on the timing of the start: one
 * authz process served 15,500 cache-hit Checks per CPU-second, the same code without
 * pretenuring 22,500
 * (docs/benchmarks-history.md, authz). Every per-call object of a Check dies young: they
 * belong in the young generation, always.
 */
export function tuneV8ForChecks(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}

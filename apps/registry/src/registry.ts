// startRegistry: the registry wired together — embeddable like startControlPlane
// and startAuthz, so tests start it on port 0 against a real etcd and main.ts
// only reads config and runs the shutdown steps it returns.
import type { Server as HttpServer } from 'node:http';
import type { Registry as MetricsRegistry } from 'prom-client';
import {
  LeasePool,
  MeshStore,
  MeshWatcher,
  ReloadingServiceCredentials,
  WrittenValues,
  type EtcdClient,
  type ServiceCredentials,
  type KeyLayout,
} from '@trellis/mesh-schema';
import {
  closeHttpServer,
  closeInOrder,
  stoppingOnFailure,
  ConfigError,
  createMetricsRegistry,
  Health,
  listenHttp,
  ReloadingSecretFile,
  type Logger,
  type ShutdownStep,
} from '@trellis/runtime';
import { createApp } from './app';
import { Authenticator } from './auth';
import type { RegistryEnv } from './config';
import {
  createRegistryMetrics,
  registerLeasePoolGauge,
  registerEtcdClientCertExpiry,
  registerServiceCredentialsGauge,
  registerViewGauges,
  type RegistryMetrics,
} from './metrics';
import { addEtcdReadiness } from './readiness';
import { RegistryView } from './view';

export type RegistryOptions = Pick<
  RegistryEnv,
  | 'TRELLIS_HOST'
  | 'TRELLIS_HTTP_PORT'
  | 'TRELLIS_ADMIN_TOKEN'
  | 'TRELLIS_ADMIN_TOKEN_FILE'
  | 'TRELLIS_AUTH_JWKS_URL'
  | 'TRELLIS_AUTH_ISSUER'
  | 'TRELLIS_AUTH_AUDIENCE'
  | 'TRELLIS_SERVICE_CREDENTIALS'
  | 'TRELLIS_CSRF_SECRET'
  | 'TRELLIS_CSRF_SECRET_FILE'
  | 'TRELLIS_READS_REQUIRE_AUTH'
  | 'TRELLIS_MAX_BODY_BYTES'
  | 'TRELLIS_SECURE_COOKIES'
> &
  Partial<
    Pick<
      RegistryEnv,
      | 'TRELLIS_HTTP_HEADERS_TIMEOUT_MS'
      | 'TRELLIS_HTTP_REQUEST_TIMEOUT_MS'
      | 'TRELLIS_AUTH_MAX_TOKEN_LIFETIME_SECONDS'
      | 'TRELLIS_SERVICE_CREDENTIALS_RELOAD_SECONDS'
    >
  >;

export interface RegistryDeps {
  config: RegistryOptions;
  /** The caller owns the client and closes it after `close()`. */
  etcd: EtcdClient;
  /** The client certificate (PEM) the etcd client presents, if any: exported as its expiry. */
  etcdClientCert?: Buffer;
  layout: KeyLayout;
  logger: Logger;
  /** Fixed instance-agent credentials instead of reading TRELLIS_SERVICE_CREDENTIALS (tests). */
  serviceCredentials?: ServiceCredentials;
  /** The client the view's watch runs on (default `etcd`); tests cut it off on its own. */
  watchEtcd?: EtcdClient;
  /** How long a read waits for the in-memory view to reach this process's last write before reading etcd (default 2 s). */
  viewCatchUpMs?: number;
}

export interface RegistryService {
  httpPort: number;
  health: Health;
  metricsRegistry: MetricsRegistry;
  store: MeshStore;
  /** What GETs of services, instances and topology are served from. */
  view: RegistryView;
  /** Shutdown in order: close HTTP (in-flight requests finish), revoke pooled leases, close the view's watch. Not `etcd`. */
  shutdownSteps: ShutdownStep[];
  /** Reads TRELLIS_SERVICE_CREDENTIALS, TRELLIS_ADMIN_TOKEN_FILE and TRELLIS_CSRF_SECRET_FILE again now (SIGHUP); those set. */
  reloadFiles(): Promise<void>;
  /** Readiness goes false, then the shutdown steps run once. */
  close(): Promise<void>;
}

const HTTP_DRAIN_MS = 5_000;
/** The config default of TRELLIS_SERVICE_CREDENTIALS_RELOAD_SECONDS, for embedders that leave it out. */
const DEFAULT_SERVICE_CREDENTIALS_RELOAD_SECONDS = 5;

export async function startRegistry(deps: RegistryDeps): Promise<RegistryService> {
  const { config, etcd, layout, logger } = deps;
  const metricsRegistry = createMetricsRegistry('registry');
  const metrics = createRegistryMetrics(metricsRegistry);
  if (deps.etcdClientCert) registerEtcdClientCertExpiry(metricsRegistry, deps.etcdClientCert);
  // The secret files and the service credentials first: one that does not load refuses the start before anything runs
  // that would need stopping (the view's watch, the lease pool).
  const reloadSeconds = config.TRELLIS_SERVICE_CREDENTIALS_RELOAD_SECONDS ?? DEFAULT_SERVICE_CREDENTIALS_RELOAD_SECONDS;
  const adminTokenFile = await loadSecretFile('admin token', 'TRELLIS_ADMIN_TOKEN', config, 16, reloadSeconds, metrics, logger);
  const csrfSecretFile = await loadSecretFile('CSRF secret', 'TRELLIS_CSRF_SECRET', config, 32, reloadSeconds, metrics, logger).catch(
    (err: Error) => {
      adminTokenFile?.close();
      throw err;
    },
  );
  const secretFiles = [adminTokenFile, csrfSecretFile].filter((file) => file !== undefined);
  const reloadingCredentials = deps.serviceCredentials
    ? undefined
    : await loadServiceCredentials(config, metrics, logger).catch((err: Error) => {
        secretFiles.forEach((file) => file.close());
        throw err;
      });
  // Ready while etcd answers and the view holds a snapshot: evaluated on each /readyz (no gRPC health to push to).
  const health = new Health();
  // The same watch the control plane and authz run; the view serves reads from it. The
  // records this process writes come back on it: the store hands them over already checked.
  const writtenValues = new WrittenValues();
  const watcher = MeshWatcher.start(deps.watchEtcd ?? etcd, layout, {
    logger,
    onInvalid: (record) => metrics.invalidRecords.inc({ kind: record.kind }),
    onDisconnect: (code) => metrics.etcdWatchDisconnects.inc({ code }),
    writtenValues,
  });
  const view = new RegistryView(watcher, deps.viewCatchUpMs !== undefined ? { catchUpMs: deps.viewCatchUpMs } : {});
  registerViewGauges(metricsRegistry, view);
  // Instance registrations take a lease granted ahead: one etcd round trip instead of two.
  // Heartbeats refresh their leases on the pool's keep-alive stream too (MeshStore below): one stream for all of them.
  const leasePool = new LeasePool(etcd, {
    logger,
    onTake: (result) => metrics.leasePoolTakes.inc({ result }),
    onKeepAliveStreamDropped: (reason) => metrics.leaseKeepAliveStreamsDropped.inc({ reason }),
  });
  registerLeasePoolGauge(metricsRegistry, leasePool);
  const store = new MeshStore(etcd, layout, { logger, onCommit: (revision) => view.noteWrite(revision), leasePool, writtenValues });
  addEtcdReadiness(health, etcd, layout, metrics, logger);
  health.addCheck('view', () => view.ready);

  const serviceCredentials = deps.serviceCredentials ?? reloadingCredentials;
  if (serviceCredentials) registerServiceCredentialsGauge(metricsRegistry, serviceCredentials);
  const authenticator = Authenticator.fromConfig(config, serviceCredentials, adminTokenFile);
  if (!authenticator.acceptsAnyToken)
    logger.warn('neither TRELLIS_ADMIN_TOKEN(_FILE) nor TRELLIS_AUTH_JWKS_URL is set: every write will be refused');
  if (config.TRELLIS_AUTH_JWKS_URL && !config.TRELLIS_AUTH_ISSUER)
    logger.warn('TRELLIS_AUTH_ISSUER is not set: team tokens from any issuer the JWKS verifies are accepted');
  if (!config.TRELLIS_CSRF_SECRET && !csrfSecretFile)
    logger.warn('TRELLIS_CSRF_SECRET(_FILE) is not set: using a per-process secret, so web forms fail across replicas and restarts');

  const app = createApp({
    store,
    view,
    authenticator,
    health,
    metricsRegistry,
    metrics,
    logger,
    readsRequireAuth: config.TRELLIS_READS_REQUIRE_AUTH,
    maxBodyBytes: config.TRELLIS_MAX_BODY_BYTES,
    csrfSecret: csrfSecretFile ?? config.TRELLIS_CSRF_SECRET,
    secureCookies: config.TRELLIS_SECURE_COOKIES,
  });
  // Set once listening; the shutdown steps close it if it is.
  const started: { httpServer?: HttpServer } = {};
  const shutdownSteps: ShutdownStep[] = [
    { name: 'close HTTP', run: () => (started.httpServer ? closeHttpServer(started.httpServer, HTTP_DRAIN_MS) : undefined) },
    // After HTTP: no registration can take one any more. Before etcd closes.
    { name: 'revoke pooled leases', run: () => leasePool.close() },
    { name: 'close the mesh view', run: () => view.close() },
    { name: 'stop reloading service credentials', run: async () => reloadingCredentials?.close() },
    { name: 'stop reloading secret files', run: async () => secretFiles.forEach((file) => file.close()) },
  ];
  const close = closeInOrder(health, shutdownSteps);
  // The port taken: what started above (the view's watch, the lease pool, the files' polls) is stopped, then the start fails.
  const http = await stoppingOnFailure(
    close,
    logger,
  )(
    listenHttp(app, config.TRELLIS_HOST, config.TRELLIS_HTTP_PORT, {
      headersTimeoutMs: config.TRELLIS_HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: config.TRELLIS_HTTP_REQUEST_TIMEOUT_MS,
    }),
  );
  started.httpServer = http.server;
  logger.info({ host: config.TRELLIS_HOST, port: http.port, etcdPrefix: layout.prefix }, 'registry listening');
  return {
    httpPort: http.port,
    health,
    metricsRegistry,
    store,
    view,
    shutdownSteps,
    reloadFiles: async () => void (await Promise.all([reloadingCredentials?.reload(), ...secretFiles.map((file) => file.reload())])),
    close,
  };
}

/**
 * TRELLIS_SERVICE_CREDENTIALS, followed without a restart so that revoking a leaked agent
 * secret (removing it from the Secret) takes seconds, not a rollout. A new content that does
 * not parse keeps the last good set (see ReloadingServiceCredentials): logged and counted.
 */
async function loadServiceCredentials(
  config: Pick<RegistryOptions, 'TRELLIS_SERVICE_CREDENTIALS' | 'TRELLIS_SERVICE_CREDENTIALS_RELOAD_SECONDS'>,
  metrics: RegistryMetrics,
  logger: Logger,
): Promise<ReloadingServiceCredentials | undefined> {
  const path = config.TRELLIS_SERVICE_CREDENTIALS;
  if (!path) return undefined;
  const reloadSeconds = config.TRELLIS_SERVICE_CREDENTIALS_RELOAD_SECONDS ?? DEFAULT_SERVICE_CREDENTIALS_RELOAD_SECONDS;
  const credentials = await ReloadingServiceCredentials.start(path, {
    pollMs: reloadSeconds * 1000,
    onReload: (result, { size, error }) => {
      metrics.serviceCredentialsReloads.inc({ result });
      if (result === 'ok') logger.info({ path, credentials: size }, 'service credentials reloaded');
      else logger.error({ path, reason: error?.message, credentials: size }, 'service credentials not reloaded: keeping the last good set');
    },
  }).catch((err: Error) => {
    throw new ConfigError([`TRELLIS_SERVICE_CREDENTIALS: ${err.message}`]);
  });
  logger.info({ path, credentials: credentials.size, reloadSeconds }, 'service credentials loaded');
  return credentials;
}

/**
 * `<name>_FILE`, followed on the service credentials' poll and on SIGHUP, so that rotating the admin token or the
 * CSRF secret is a file update. Setting both `<name>` and `<name>_FILE` is refused (which one rules would be a
 * guess). A new content that is empty, short or unreadable keeps the last good secret (fail closed: never an
 * empty token), logged and counted in trellis_registry_secret_file_reloads_total{result="invalid"}. A file absent
 * from its directory is a Secret's optional key not given: no secret until it appears (the Helm chart mounts its
 * Secret, whose `admin-token` key is optional).
 */
async function loadSecretFile(
  what: string,
  name: 'TRELLIS_ADMIN_TOKEN' | 'TRELLIS_CSRF_SECRET',
  config: Pick<RegistryOptions, 'TRELLIS_ADMIN_TOKEN' | 'TRELLIS_ADMIN_TOKEN_FILE' | 'TRELLIS_CSRF_SECRET' | 'TRELLIS_CSRF_SECRET_FILE'>,
  minLength: number,
  reloadSeconds: number,
  metrics: RegistryMetrics,
  logger: Logger,
): Promise<ReloadingSecretFile | undefined> {
  const path = config[`${name}_FILE`];
  if (!path) return undefined;
  if (config[name]) throw new ConfigError([`${name} and ${name}_FILE are both set: set one`]);
  const secret = name === 'TRELLIS_ADMIN_TOKEN' ? 'admin_token' : 'csrf_secret';
  // Both series from the start: the first refusal is a step from 0 that increase() sees, not a series that appears at 1.
  for (const result of ['ok', 'invalid']) metrics.secretFileReloads.inc({ secret, result }, 0);
  const file = await ReloadingSecretFile.start(path, {
    minLength,
    pollMs: reloadSeconds * 1000,
    optional: true,
    onReload: (result, error) => {
      metrics.secretFileReloads.inc({ secret, result });
      if (result === 'ok') logger.info({ path }, `${what} reloaded`);
      else logger.error({ path, reason: error?.message }, `${what} not reloaded: keeping the last good one`);
    },
  }).catch((err: Error) => {
    throw new ConfigError([`${name}_FILE: ${err.message}`]);
  });
  if (file.current === undefined) logger.warn({ path, reloadSeconds }, `${what}: its file is not there (yet); none until it appears`);
  else logger.info({ path, reloadSeconds }, `${what} read from its file`);
  return file;
}

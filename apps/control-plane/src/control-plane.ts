// The control plane as an embeddable unit: etcd watch → rebuild loop (debounce →
// mesh model → per-identity snapshots) → ADS streams, plus the HTTP side. main.ts
// reads the configuration, calls startControlPlane and runs the shutdown steps it
// returns; tests start it on port 0.
import type { Server as HttpServer } from 'node:http';
import { Server as GrpcServer } from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { EtcdProbe, MeshStore, MeshWatcher, XDS_MAX_MESSAGE_BYTES, type EtcdClient, type KeyLayout } from '@trellis/mesh-schema';
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
import {
  bindGrpcServer,
  grpcConnectionLimitsFrom,
  grpcConnectionOptions,
  grpcTlsLimitsFrom,
  pendingTlsConnections,
  readRequestsAsTheyArrive,
  releaseDecodedReadBuffers,
  requestIdInterceptor,
  serveGrpcHealth,
  stopGrpcServer,
  type ServingTls,
} from '@trellis/runtime/grpc';
import { DEFAULT_XDS_MAX_CONNECTION_AGE_MS, DEFAULT_XDS_TLS_RELOAD_SECONDS, type ControlPlaneConfig } from './config';
import { buildProxyResources, sharedUpstreamsChange } from './envoy';
import { adminDigestSource } from './http/access';
import { createHttpApp } from './http/app';
import type { XdsTransport } from './http/bootstrap-route';
import { createControlPlaneMetrics, registerEtcdClientCertExpiry, type ControlPlaneMetrics } from './metrics';
import { DEFAULT_TRANSLATOR_SETTINGS, type MeshModel, type TranslatorSettings } from './model';
import { RebuildLoop } from './rebuild-loop';
import { snapshotInconsistencies, TranslationMemo } from './resource';
import {
  AdsServer,
  AdsServiceDefinition,
  backstopAgeMs,
  composeCallbacks,
  createStreamAuthenticator,
  NODE_TRIMMING_READERS,
  ProxyStatusWriter,
  SnapshotCache,
  startXdsTls,
  type SnapshotCacheOptions,
  type Translate,
  xdsServerCredentials,
  xdsTokenRefusal,
  type XdsCallbacks,
} from './xds';

export type ControlPlaneOptions = Pick<
  ControlPlaneConfig,
  | 'TRELLIS_HOST'
  | 'TRELLIS_XDS_PORT'
  | 'TRELLIS_HTTP_PORT'
  | 'TRELLIS_AUTHZ_ADDRESS'
  | 'TRELLIS_AUTHZ_TLS'
  | 'TRELLIS_XDS_ADVERTISE_ADDRESS'
  | 'TRELLIS_XDS_ALLOW_INSECURE_CLIENTS'
  | 'TRELLIS_CONTROL_PLANE_ID'
  | 'TRELLIS_XDS_DEBOUNCE_MS'
  | 'TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION'
  | 'TRELLIS_XDS_MAX_REQUEST_BYTES'
  | 'TRELLIS_ADMIN_TOKEN'
  | 'TRELLIS_ADMIN_TOKEN_FILE'
  | 'TRELLIS_HTTP_HEADERS_TIMEOUT_MS'
  | 'TRELLIS_HTTP_REQUEST_TIMEOUT_MS'
  | 'TRELLIS_XDS_FIRST_REQUEST_TIMEOUT_MS'
  | 'TRELLIS_XDS_KEEPALIVE_TIME_MS'
  | 'TRELLIS_XDS_KEEPALIVE_TIMEOUT_MS'
  | 'TRELLIS_XDS_DEBOUNCE_MAX_MS'
  | 'TRELLIS_PROXY_STATUS_INTERVAL_MS'
  | 'TRELLIS_PROXY_STATUS_MAX_WRITES'
  | 'TRELLIS_ENDPOINT_RETENTION_SECONDS'
  | 'TRELLIS_ENDPOINT_RETENTION_SHARE'
  | 'TRELLIS_ENDPOINT_RETENTION_WINDOW_MS'
  | 'TRELLIS_XDS_TLS_CERT_FILE'
  | 'TRELLIS_XDS_TLS_KEY_FILE'
  | 'TRELLIS_XDS_TLS_CLIENT_CA_FILE'
> &
  // Tracing is off unless asked for: embedders (tests, the local mesh) may leave it out; the fan-out slice and the start-up rehearsal (on) likewise;
  // the TLS limits have the runtime's defaults, the connection limits the schema's, the status writer's deferral its own.
  Partial<
    Pick<
      ControlPlaneConfig,
      | 'TRELLIS_TRACING_OTLP_ADDRESS'
      | 'TRELLIS_TRACING_SAMPLING_PERCENT'
      | 'TRELLIS_XDS_FANOUT_SLICE_MS'
      | 'TRELLIS_XDS_CHANGE_REHEARSAL'
      | 'TRELLIS_XDS_STREAM_REHEARSAL'
      | 'TRELLIS_TLS_HANDSHAKE_TIMEOUT_MS'
      | 'TRELLIS_HTTP2_PREFACE_TIMEOUT_MS'
      | 'TRELLIS_TLS_MAX_PENDING_CONNECTIONS'
      | 'TRELLIS_GRPC_MAX_CONNECTION_IDLE_MS'
      | 'TRELLIS_GRPC_MAX_CONNECTION_AGE_MS'
      | 'TRELLIS_GRPC_MAX_CONNECTION_AGE_GRACE_MS'
      | 'TRELLIS_PROXY_STATUS_MAX_DEFER_MS'
      | 'TRELLIS_XDS_TLS_RELOAD_SECONDS'
    >
  >;

export interface ControlPlaneDeps {
  config: ControlPlaneOptions;
  etcd: EtcdClient;
  /** The client certificate (PEM) the etcd client presents, if any: exported as its expiry. */
  etcdClientCert?: Buffer;
  layout: KeyLayout;
  logger: Logger;
  registry?: Registry;
  /** Extra stream observers (tests). */
  callbacks?: XdsCallbacks;
}

export interface ControlPlane {
  readonly xdsPort: number;
  readonly httpPort: number;
  readonly health: Health;
  readonly registry: Registry;
  readonly cache: SnapshotCache<MeshModel>;
  readonly ads: AdsServer;
  readonly watcher: MeshWatcher;
  readonly statusWriter: ProxyStatusWriter;
  /** The xDS port's certificate and client CA (undefined: plaintext). */
  readonly xdsTls: ServingTls | undefined;
  /** Reads the files read at start again now (SIGHUP): the xDS port's TLS files. Never throws; a failure keeps what serves. */
  reloadFiles(): Promise<void>;
  /** The model being served (undefined before the first snapshot). */
  model(): MeshModel | undefined;
  /** In order: stop rebuilding, end streams (proxies reconnect elsewhere) and stop gRPC, close HTTP, revoke the status lease, stop the watch. Not `etcd`. */
  readonly shutdownSteps: ShutdownStep[];
  /** Readiness goes false, then the shutdown steps run once. */
  close(): Promise<void>;
}

const ADS_SERVICE_NAME = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
const GRPC_DRAIN_MS = 5_000;
const HTTP_DRAIN_MS = 5_000;

export async function startControlPlane(deps: ControlPlaneDeps): Promise<ControlPlane> {
  const { config, etcd, layout, logger } = deps;
  const registry = deps.registry ?? createMetricsRegistry('control-plane');
  const metrics = createControlPlaneMetrics(registry);
  if (deps.etcdClientCert) registerEtcdClientCertExpiry(registry, deps.etcdClientCert);
  // Before anything that would need stopping: a file that does not load refuses the start.
  const adminTokenFile = await loadAdminTokenFile(config, metrics, logger);
  const health = new Health();
  const settings: TranslatorSettings = {
    ...DEFAULT_TRANSLATOR_SETTINGS,
    authzCluster: config.TRELLIS_AUTHZ_ADDRESS,
    authzTls: config.TRELLIS_AUTHZ_TLS,
    tracing: config.TRELLIS_TRACING_OTLP_ADDRESS
      ? { collector: config.TRELLIS_TRACING_OTLP_ADDRESS, samplingPercent: config.TRELLIS_TRACING_SAMPLING_PERCENT ?? 1 }
      : undefined,
  };

  const watcher = MeshWatcher.start(etcd, layout, {
    logger,
    onInvalid: (record) => metrics.invalidRecords.inc({ kind: record.kind }),
    onDisconnect: (code) => metrics.etcdWatchDisconnects.inc({ code }),
  });
  // Resources many identities share (a callee's clusters and endpoints) are encoded once per model.
  const translateWith =
    (memo: TranslationMemo): Translate<MeshModel> =>
    (m, identity) =>
      buildProxyResources(m, identity, memo);
  const cacheOptions: SnapshotCacheOptions<MeshModel> = {
    // A set that names a resource it does not hold is a translation bug: never publish it.
    check: snapshotInconsistencies,
    // Callers whose only change is a callee's shared clusters or endpoints take them without a translation each.
    sharedTypesChange: sharedUpstreamsChange,
    // A change reaching thousands of identities is handed out in slices, serving ACKs and new streams in between.
    ...(config.TRELLIS_XDS_FANOUT_SLICE_MS ? { fanOutSliceMs: config.TRELLIS_XDS_FANOUT_SLICE_MS } : {}),
  };
  const cache = new SnapshotCache<MeshModel>(translateWith(new TranslationMemo()), {
    ...cacheOptions,
    onTranslateError: (identity, err) => {
      metrics.translateErrors.inc();
      logger.error({ err, service: identity.service, kind: identity.kind }, 'translation failed; proxies keep their last good config');
    },
    onInconsistent: (identity, problems) => {
      metrics.inconsistentSnapshots.inc();
      logger.error(
        { service: identity.service, kind: identity.kind, problems: problems.slice(0, 20) },
        'translation produced an inconsistent snapshot; proxies keep their last good config',
      );
    },
  });
  // The start-up rehearsal's cache: the same translation and options, its own memo (the served one's generations
  // stay those of served models), no metric or log, no fan-out slices (a step of the rehearsal is one turn's work).
  const { fanOutSliceMs: _sliced, ...rehearsalOptions } = cacheOptions;
  const rehearsalCache =
    (config.TRELLIS_XDS_CHANGE_REHEARSAL ?? true)
      ? () => new SnapshotCache<MeshModel>(translateWith(new TranslationMemo()), rehearsalOptions)
      : undefined;
  // A frozen etcd keeps the watch stream open until gRPC keepalive gives up (up to 90 s, ETCD_KEEPALIVE);
  // a linearizable read with a short deadline, every second, notices within seconds.
  const etcdProbe = new EtcdProbe(etcd, {
    key: layout.meshSettings(),
    onChange: (healthy, err) => {
      void health.recheck();
      if (healthy) logger.info('etcd answers the liveness probe again');
      else logger.warn({ err: err?.message }, 'etcd did not answer the liveness probe; serving the last known mesh');
    },
  });
  void etcdProbe.start();
  // Ready (and gRPC SERVING) once etcd answers, the watch is live and the first snapshot is served; rechecked on each change.
  health.addCheck('etcd', () => etcdProbe.check());
  health.addCheck('etcd_watch', () => watcher.live);
  health.addCheck('mesh_snapshot', () => watcher.ready && cache.ready);
  const rebuilds = new RebuildLoop({
    watcher,
    cache,
    settings,
    metrics,
    logger,
    debounceMs: config.TRELLIS_XDS_DEBOUNCE_MS,
    debounceMaxMs: config.TRELLIS_XDS_DEBOUNCE_MAX_MS,
    retention: {
      graceSeconds: config.TRELLIS_ENDPOINT_RETENTION_SECONDS,
      share: config.TRELLIS_ENDPOINT_RETENTION_SHARE,
      windowMs: config.TRELLIS_ENDPOINT_RETENTION_WINDOW_MS,
    },
    // A rebuild can only make readiness true (the first snapshot served); once ready, rechecking after every
    // rebuild would only probe etcd again (a linearizable read) while the change's responses wait to be written.
    onRebuilt: () => {
      if (!health.isReady) void health.recheck();
    },
    rehearsalCache,
    rehearsalStreams: (config.TRELLIS_XDS_STREAM_REHEARSAL ?? false) ? { controlPlaneId: config.TRELLIS_CONTROL_PLANE_ID } : undefined,
  });
  watcher.on('status', ({ live }) => {
    void health.recheck();
    logger.info({ live }, live ? 'etcd watch live' : 'etcd watch down; serving the last known mesh');
  });

  const statusWriter = new ProxyStatusWriter({
    client: etcd,
    store: new MeshStore(etcd, layout, { logger }),
    controlPlaneId: config.TRELLIS_CONTROL_PLANE_ID,
    logger,
    intervalMs: config.TRELLIS_PROXY_STATUS_INTERVAL_MS,
    maxWritesPerFlush: config.TRELLIS_PROXY_STATUS_MAX_WRITES,
    onWrite: (result) => metrics.statusWrites.inc({ result }),
    // Records wait while the fan-out translates: in a connection storm the status writes' etcd txns, their JSON and the
    // watch's echo of them would otherwise share the one thread with the first pushes.
    pushActivity: () => cache.pushActivity(),
    maxDeferMs: config.TRELLIS_PROXY_STATUS_MAX_DEFER_MS,
    onDeferred: () => metrics.statusFlushesDeferred.inc(),
  });
  statusWriter.start();
  metrics.readStatusBacklogFrom(() => statusWriter.backlog);

  const nackLog: XdsCallbacks = {
    onNack: (s, typeUrl, version, error, meshRevision) =>
      logger.warn(
        { nodeId: s.nodeId, service: s.identity.service, typeUrl, version, meshRevision, error },
        'proxy rejected config (NACK); holding that version back',
      ),
  };
  const connectionLimits = grpcConnectionLimitsFrom(config, { maxConnectionAgeMs: DEFAULT_XDS_MAX_CONNECTION_AGE_MS });
  const ads = new AdsServer({
    cache,
    callbacks: composeCallbacks(metrics.callbacks, statusWriter, nackLog, deps.callbacks ?? {}),
    authenticate: createStreamAuthenticator({
      allowInsecure: config.TRELLIS_XDS_ALLOW_INSECURE_CLIENTS,
      keys: () => watcher.state,
    }),
    controlPlaneId: config.TRELLIS_CONTROL_PLANE_ID,
    maxStreamsPerConnection: config.TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION,
    firstRequestTimeoutMs: config.TRELLIS_XDS_FIRST_REQUEST_TIMEOUT_MS,
    connectionAge: connectionLimits.maxConnectionAgeMs
      ? { maxAgeMs: connectionLimits.maxConnectionAgeMs, graceMs: connectionLimits.maxConnectionAgeGraceMs ?? 0 }
      : undefined,
    onConnectionAged: () => metrics.connectionsAged.inc(),
    logger,
  });

  // Else every stream waiting for its first push keeps the read buffers under its first request (an Envoy's: ~52 KB).
  if (!releaseDecodedReadBuffers())
    logger.warn('grpc-js message decoder not as expected: each xDS stream keeps the read buffers of its last request');
  // Else each xDS request is held whole until its last byte: in a connection storm, every first request (~52 KB).
  if (!readRequestsAsTheyArrive(NODE_TRIMMING_READERS))
    logger.warn('grpc-js server call not as expected: xDS requests are held whole until their last byte');
  const grpcServer = new GrpcServer({
    // A long timeout: a busy turn must not drop healthy proxies (config.ts).
    'grpc.keepalive_time_ms': config.TRELLIS_XDS_KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': config.TRELLIS_XDS_KEEPALIVE_TIMEOUT_MS,
    // No ping policing: grpc-js reads none of gRPC core's enforcement options (docs/security.md, "Limits on the wire").
    'grpc.max_send_message_length': XDS_MAX_MESSAGE_BYTES,
    // With the streams cap, what one connection can make us hold: grpc-js refuses a larger message at its prefix.
    'grpc.max_receive_message_length': config.TRELLIS_XDS_MAX_REQUEST_BYTES,
    // Nothing here serves channelz, and its bookkeeping (a tracker per call, a timestamp per message) is ~5 % of
    // grpc-js's server CPU in a connection storm; the connection limits and metrics do not read it.
    'grpc.enable_channelz': 0,
    // HTTP/2's own ceiling, above the ADS cap so health checks still fit; the ADS server refuses the excess with a status.
    'grpc.max_concurrent_streams': config.TRELLIS_XDS_MAX_STREAMS_PER_CONNECTION + 8,
    // An open ADS stream keeps its connection from the idle limit; the age moves proxies across replicas (config.ts). The ADS
    // server ages connections with ADS streams itself, ending the streams with a status; grpc-js's age comes later, as a backstop.
    ...grpcConnectionOptions({
      ...connectionLimits,
      maxConnectionAgeMs: connectionLimits.maxConnectionAgeMs && backstopAgeMs(connectionLimits.maxConnectionAgeMs),
    }),
    // Every call (an xDS stream, a health check) gets a request id: echoed, and logged when it ends.
    interceptors: [requestIdInterceptor(logger)],
  });
  grpcServer.addService(AdsServiceDefinition, ads.implementation());
  serveGrpcHealth(grpcServer, health, [ADS_SERVICE_NAME]);
  // Set as they start; the shutdown steps stop what has.
  const started: { tlsReloadTimer?: NodeJS.Timeout; httpServer?: HttpServer } = {};
  const shutdownSteps: ShutdownStep[] = [
    {
      name: 'stop rebuilding',
      run: () => {
        clearInterval(started.tlsReloadTimer);
        adminTokenFile?.close();
        etcdProbe.stop();
        return rebuilds.close();
      },
    },
    {
      // Streams never end on their own: end them (proxies reconnect to another replica), then drain unary calls.
      name: 'end xDS streams and stop gRPC',
      run: async () => {
        ads.closeAll();
        await stopGrpcServer(grpcServer, GRPC_DRAIN_MS);
      },
    },
    { name: 'close HTTP', run: () => (started.httpServer ? closeHttpServer(started.httpServer, HTTP_DRAIN_MS) : undefined) },
    { name: 'flush proxy status and revoke its lease', run: () => statusWriter.close() },
    { name: 'stop etcd watch', run: () => watcher.close() },
  ];
  const close = closeInOrder(health, shutdownSteps);
  // A start that fails after this point (a port taken, a TLS file that does not load) stops what it started, then fails.
  const stopOnFailure = stoppingOnFailure(close, logger);

  const xdsTls = await stopOnFailure(
    startXdsTls(
      {
        certFile: config.TRELLIS_XDS_TLS_CERT_FILE,
        keyFile: config.TRELLIS_XDS_TLS_KEY_FILE,
        clientCaFile: config.TRELLIS_XDS_TLS_CLIENT_CA_FILE,
      },
      { logger, onRefresh: (result) => metrics.xdsTlsReloads.inc({ result }) },
    ),
  );
  // A rotated Secret (cert-manager, a mesh CA) or a file swapped in place: read again on the poll period and on SIGHUP.
  started.tlsReloadTimer = xdsTls
    ? setInterval(() => void xdsTls.refresh(), (config.TRELLIS_XDS_TLS_RELOAD_SECONDS ?? DEFAULT_XDS_TLS_RELOAD_SECONDS) * 1000)
    : undefined;
  started.tlsReloadTimer?.unref();
  const credentials = xdsServerCredentials(xdsTls);
  const xdsPort = await stopOnFailure(
    bindGrpcServer(grpcServer, config.TRELLIS_HOST, config.TRELLIS_XDS_PORT, credentials, {
      tlsLimits: grpcTlsLimitsFrom(config),
      onTlsRefused: (reason) => metrics.tlsRefused.inc({ reason }),
      listenBacklog: connectionLimits.listenBacklog,
    }),
  );
  metrics.readTlsPendingFrom(() => pendingTlsConnections(grpcServer));

  const advertise = config.TRELLIS_XDS_ADVERTISE_ADDRESS ?? [{ host: '127.0.0.1', port: xdsPort }];
  const app = createHttpApp({
    health,
    registry,
    cache,
    ads,
    model: () => rebuilds.model,
    retained: () => rebuilds.retained(),
    xdsAddresses: advertise,
    xdsTransport: xdsTransportOf(config),
    adminDigest: adminDigestSource(config.TRELLIS_ADMIN_TOKEN ?? adminTokenFile),
    bootstrapOpen: config.TRELLIS_XDS_ALLOW_INSECURE_CLIENTS && config.TRELLIS_XDS_TLS_CLIENT_CA_FILE === undefined,
    serviceTokenRefusal: (token, service) => xdsTokenRefusal(token, service, watcher.state),
    logger,
  });
  const listening = await stopOnFailure(
    listenHttp(app, config.TRELLIS_HOST, config.TRELLIS_HTTP_PORT, {
      headersTimeoutMs: config.TRELLIS_HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: config.TRELLIS_HTTP_REQUEST_TIMEOUT_MS,
    }),
  );
  started.httpServer = listening.server;
  const httpPort = listening.port;
  logger.info(
    {
      xdsPort,
      httpPort,
      controlPlaneId: config.TRELLIS_CONTROL_PLANE_ID,
      allowInsecureClients: config.TRELLIS_XDS_ALLOW_INSECURE_CLIENTS,
      tls: Boolean(config.TRELLIS_XDS_TLS_CERT_FILE),
      mtls: Boolean(config.TRELLIS_XDS_TLS_CLIENT_CA_FILE),
    },
    'control plane listening',
  );

  return {
    xdsPort,
    httpPort,
    health,
    registry,
    cache,
    ads,
    watcher,
    statusWriter,
    xdsTls,
    async reloadFiles() {
      await Promise.all([xdsTls?.refresh(), adminTokenFile?.reload()]);
    },
    model: () => rebuilds.model,
    shutdownSteps,
    close,
  };
}

/**
 * TRELLIS_ADMIN_TOKEN_FILE, followed on the TLS files' poll and on SIGHUP, so that rotating the admin token (the
 * registry's, usually the same Secret) is a file update. A new content that is empty, short or unreadable keeps the
 * last good token (fail closed: never an empty one), logged and counted.
 */
async function loadAdminTokenFile(
  config: ControlPlaneOptions,
  metrics: ControlPlaneMetrics,
  logger: Logger,
): Promise<ReloadingSecretFile | undefined> {
  const path = config.TRELLIS_ADMIN_TOKEN_FILE;
  if (!path) return undefined;
  if (config.TRELLIS_ADMIN_TOKEN) throw new ConfigError(['TRELLIS_ADMIN_TOKEN and TRELLIS_ADMIN_TOKEN_FILE are both set: set one']);
  // Both series from the start: the first refusal is a step from 0 that increase() sees.
  for (const result of ['ok', 'invalid'] as const) metrics.adminTokenReloads.inc({ result }, 0);
  const file = await ReloadingSecretFile.start(path, {
    minLength: 16,
    pollMs: (config.TRELLIS_XDS_TLS_RELOAD_SECONDS ?? DEFAULT_XDS_TLS_RELOAD_SECONDS) * 1000,
    onReload: (result, error) => {
      metrics.adminTokenReloads.inc({ result });
      if (result === 'ok') logger.info({ path }, 'admin token reloaded');
      else logger.error({ path, reason: error?.message }, 'admin token not reloaded: keeping the last good one');
    },
  }).catch((err: Error) => {
    throw new ConfigError([`TRELLIS_ADMIN_TOKEN_FILE: ${err.message}`]);
  });
  logger.info({ path }, 'admin token read from its file');
  return file;
}

/**
 * What a sidecar needs to reach this control plane: with a client CA configured the
 * client certificate is its credential; otherwise a token, unless insecure clients
 * are admitted.
 */
function xdsTransportOf(config: ControlPlaneOptions): XdsTransport {
  const clientCertificates = config.TRELLIS_XDS_TLS_CLIENT_CA_FILE !== undefined;
  const requireToken = !clientCertificates && !config.TRELLIS_XDS_ALLOW_INSECURE_CLIENTS;
  return config.TRELLIS_XDS_TLS_CERT_FILE !== undefined ? { tls: true, clientCertificates, requireToken } : { tls: false, requireToken };
}

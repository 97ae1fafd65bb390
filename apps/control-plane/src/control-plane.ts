// The control plane as an embeddable unit: etcd watch → debounce → mesh model →
// per-identity snapshots → ADS streams, plus the HTTP side. main.ts reads the
// configuration and calls startControlPlane; tests start it on port 0.
import type { AddressInfo } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { Server as GrpcServer } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Registry } from 'prom-client';
import { MeshStore, MeshWatcher, type EtcdClient, type KeyLayout } from '@trellis/mesh-schema';
import { createMetricsRegistry, Health, type Logger } from '@trellis/runtime';
import type { ControlPlaneConfig } from './config';
import { Debouncer } from './debounce';
import { buildProxyResources } from './envoy';
import { createHttpApp } from './http/app';
import type { XdsTransport } from './http/bootstrap-route';
import { createControlPlaneMetrics } from './metrics';
import {
  buildMeshModel,
  DEFAULT_TRANSLATOR_SETTINGS,
  EndpointRetention,
  servicesAffected,
  type MeshModel,
  type TranslatorSettings,
} from './model';
import { snapshotInconsistencies, TranslationMemo } from './resource';
import {
  AdsServer,
  AdsServiceDefinition,
  composeCallbacks,
  createStreamAuthenticator,
  ProxyStatusWriter,
  SnapshotCache,
  xdsServerCredentials,
  type XdsCallbacks,
} from './xds';

export type ControlPlaneOptions = Pick<
  ControlPlaneConfig,
  | 'TRELLIS_HOST'
  | 'TRELLIS_XDS_PORT'
  | 'TRELLIS_HTTP_PORT'
  | 'TRELLIS_AUTHZ_ADDRESS'
  | 'TRELLIS_XDS_ADVERTISE_ADDRESS'
  | 'TRELLIS_XDS_ALLOW_INSECURE_CLIENTS'
  | 'TRELLIS_CONTROL_PLANE_ID'
  | 'TRELLIS_XDS_DEBOUNCE_MS'
  | 'TRELLIS_XDS_DEBOUNCE_MAX_MS'
  | 'TRELLIS_PROXY_STATUS_INTERVAL_MS'
  | 'TRELLIS_PROXY_STATUS_MAX_WRITES'
  | 'TRELLIS_ENDPOINT_RETENTION_SECONDS'
  | 'TRELLIS_ENDPOINT_RETENTION_SHARE'
  | 'TRELLIS_ENDPOINT_RETENTION_WINDOW_MS'
  | 'TRELLIS_XDS_TLS_CERT_FILE'
  | 'TRELLIS_XDS_TLS_KEY_FILE'
  | 'TRELLIS_XDS_TLS_CLIENT_CA_FILE'
>;

export interface ControlPlaneDeps {
  config: ControlPlaneOptions;
  etcd: EtcdClient;
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
  /** The model being served (undefined before the first snapshot). */
  model(): MeshModel | undefined;
  /** Stops accepting, ends streams (proxies reconnect elsewhere), revokes the status lease. Does not close `etcd`. */
  close(): Promise<void>;
}

export async function startControlPlane(deps: ControlPlaneDeps): Promise<ControlPlane> {
  const { config, etcd, layout, logger } = deps;
  const registry = deps.registry ?? createMetricsRegistry('control-plane');
  const metrics = createControlPlaneMetrics(registry);
  const health = new Health();
  const settings: TranslatorSettings = { ...DEFAULT_TRANSLATOR_SETTINGS, authzCluster: config.TRELLIS_AUTHZ_ADDRESS };

  const watcher = MeshWatcher.start(etcd, layout, { logger, onInvalid: (record) => metrics.invalidRecords.inc({ kind: record.kind }) });
  // Resources many identities share (a callee's clusters and endpoints) are encoded once per model.
  const memo = new TranslationMemo();
  const cache = new SnapshotCache<MeshModel>((m, identity) => buildProxyResources(m, identity, memo), {
    onTranslateError: (identity, err) => {
      metrics.translateErrors.inc();
      logger.error({ err, service: identity.service, kind: identity.kind }, 'translation failed; proxies keep their last good config');
    },
    // A set that names a resource it does not hold is a translation bug: never publish it.
    check: snapshotInconsistencies,
    onInconsistent: (identity, problems) => {
      metrics.inconsistentSnapshots.inc();
      logger.error(
        { service: identity.service, kind: identity.kind, problems: problems.slice(0, 20) },
        'translation produced an inconsistent snapshot; proxies keep their last good config',
      );
    },
  });
  let model: MeshModel | undefined;

  // The gRPC health answer follows /readyz: watch live, first snapshot served, not draining.
  const grpcHealth = new HealthImplementation({
    '': 'NOT_SERVING',
    'envoy.service.discovery.v3.AggregatedDiscoveryService': 'NOT_SERVING',
  });
  const setServing = (): void => {
    const serving = watcher.ready && watcher.live && cache.ready && !health.isDraining ? 'SERVING' : 'NOT_SERVING';
    grpcHealth.setStatus('', serving);
    grpcHealth.setStatus('envoy.service.discovery.v3.AggregatedDiscoveryService', serving);
  };

  // Endpoints lost to a mass lease expiry (an etcd stall) stay for a grace period.
  const retention = new EndpointRetention({
    graceMs: config.TRELLIS_ENDPOINT_RETENTION_SECONDS * 1000,
    share: config.TRELLIS_ENDPOINT_RETENTION_SHARE,
    windowMs: config.TRELLIS_ENDPOINT_RETENTION_WINDOW_MS,
  });
  /** Services with instance changes since the last rebuild ('all' after a reset). */
  let instancesChanged: Set<string> | 'all' = 'all';
  let retentionTimer: NodeJS.Timeout | undefined;

  const observeRetention = (): void => {
    const changed = instancesChanged;
    instancesChanged = new Set();
    const state = watcher.state;
    const result = retention.observe(state, changed, Date.now());
    for (const e of result.engaged) {
      metrics.retentionsEngaged.inc();
      logger.warn(
        { service: e.service, expired: e.expired, live: e.live, graceSeconds: config.TRELLIS_ENDPOINT_RETENTION_SECONDS },
        'most endpoints of a service expired at once (etcd stall?); keeping them for the grace period',
      );
    }
    const retained = retention.list();
    metrics.retainedEndpoints.set(retained.length);
    if (result.released > 0) logger.info({ released: result.released, stillRetained: retained.length }, 'retained endpoints released');
    clearTimeout(retentionTimer);
    const deadline = retention.nextDeadline();
    // A grace period ends without any etcd change: rebuild then.
    if (deadline !== undefined) retentionTimer = setTimeout(() => debouncer.trigger(), Math.max(0, deadline - Date.now()) + 1).unref();
  };

  const rebuild = (firstChangeAt: number, reset: boolean): void => {
    const started = process.hrtime.bigint();
    observeRetention();
    const state = watcher.state;
    const view = { ...state, instances: retention.overlay(state.instances) };
    // The previous model lets unchanged services be reused instead of re-digested.
    const next = buildMeshModel(view, settings, reset ? undefined : model);
    const affected = reset || !model ? 'all' : servicesAffected(model, next);
    const prev = model;
    model = next;
    const result = cache.setModel(next, affected, { revision: next.revision, changedAt: firstChangeAt });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    metrics.observeRebuild(seconds, { ...result, reset });
    metrics.droppedInputs.set(next.dropped.length);
    metrics.meshRevision.set(Number(next.revision));
    const stats = cache.stats();
    metrics.cacheIdentities.set(stats.identities);
    metrics.cacheResources.set(stats.pooledResources);
    metrics.cacheBytes.set(stats.pooledBytes);
    // Logged when the set of dropped inputs changes, not on every rebuild.
    if (next.dropped.length > 0 && JSON.stringify(next.dropped) !== JSON.stringify(prev?.dropped ?? []))
      logger.warn({ dropped: next.dropped.slice(0, 20), count: next.dropped.length }, 'registry inputs left out of the mesh model');
    setServing();
    logger.debug(
      { revision: next.revision, affected: affected === 'all' ? 'all' : affected.size, ...result, ms: seconds * 1000 },
      'mesh rebuilt',
    );
  };

  let pendingReset = false;
  const debouncer = new Debouncer(
    (firstChangeAt) => {
      const reset = pendingReset;
      pendingReset = false;
      rebuild(firstChangeAt, reset);
    },
    config.TRELLIS_XDS_DEBOUNCE_MS,
    config.TRELLIS_XDS_DEBOUNCE_MAX_MS,
    (err) => logger.error({ err }, 'mesh rebuild failed; serving the previous model'),
  );
  watcher.on('update', (update) => {
    if (update.reset) pendingReset = true;
    if (update.reset) instancesChanged = 'all';
    else if (instancesChanged !== 'all')
      for (const c of update.changes) if ((c.kind === 'instance' || c.kind === 'service') && c.service) instancesChanged.add(c.service);
    debouncer.trigger();
  });
  watcher.on('status', ({ live }) => {
    setServing();
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
  });
  statusWriter.start();

  const streamLog: XdsCallbacks = {
    onNack: (s, typeUrl, version, error, meshRevision) =>
      logger.warn(
        { nodeId: s.nodeId, service: s.identity.service, typeUrl, version, meshRevision, error },
        'proxy rejected config (NACK); holding that version back',
      ),
    onStreamClosed: (s) => logger.info({ nodeId: s.nodeId, service: s.identity.service, streamId: s.streamId }, 'xds stream closed'),
  };
  const ads = new AdsServer({
    cache,
    callbacks: composeCallbacks(metrics.callbacks, statusWriter, streamLog, deps.callbacks ?? {}),
    authenticate: createStreamAuthenticator({
      allowInsecure: config.TRELLIS_XDS_ALLOW_INSECURE_CLIENTS,
      keys: () => watcher.state,
    }),
    controlPlaneId: config.TRELLIS_CONTROL_PLANE_ID,
    logger,
  });

  const credentials = xdsServerCredentials({
    certFile: config.TRELLIS_XDS_TLS_CERT_FILE,
    keyFile: config.TRELLIS_XDS_TLS_KEY_FILE,
    clientCaFile: config.TRELLIS_XDS_TLS_CLIENT_CA_FILE,
  });
  const grpcServer = new GrpcServer({
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  grpcServer.addService(AdsServiceDefinition, ads.implementation());
  grpcHealth.addToServer(grpcServer);
  const xdsPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(`${config.TRELLIS_HOST}:${config.TRELLIS_XDS_PORT}`, credentials, (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );

  health.addCheck('etcd_watch', () => watcher.live);
  health.addCheck('mesh_snapshot', () => watcher.ready && cache.ready);

  const advertise = config.TRELLIS_XDS_ADVERTISE_ADDRESS ?? { host: '127.0.0.1', port: xdsPort };
  const app = createHttpApp({
    health,
    registry,
    cache,
    ads,
    model: () => model,
    retained: () => retention.list(),
    xdsAddress: advertise,
    xdsTransport: xdsTransportOf(config),
    logger,
  });
  const httpServer: HttpServer = await new Promise((resolve, reject) => {
    const server = app.listen(config.TRELLIS_HTTP_PORT, config.TRELLIS_HOST, () => resolve(server));
    server.once('error', reject);
  });
  const httpPort = (httpServer.address() as AddressInfo).port;
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

  let closing: Promise<void> | undefined;
  return {
    xdsPort,
    httpPort,
    health,
    registry,
    cache,
    ads,
    watcher,
    statusWriter,
    model: () => model,
    close: () =>
      (closing ??= (async () => {
        health.startDraining();
        setServing();
        debouncer.close();
        clearTimeout(retentionTimer);
        ads.closeAll();
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            grpcServer.forceShutdown();
            resolve();
          }, 5_000);
          grpcServer.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        await new Promise<void>((resolve) => {
          httpServer.close(() => resolve());
          httpServer.closeAllConnections();
        });
        await statusWriter.close();
        await watcher.close();
      })()),
  };
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

// registry: config → etcd → store → app → listen → shutdown.
import { once } from 'node:events';
import type { Server } from 'node:http';
import { connectEtcd, etcdOptionsFromEnv, KeyLayout, MeshStore, ServiceCredentials } from '@trellis/mesh-schema';
import { ConfigError, createLogger, createMetricsRegistry, Health, installShutdown, runMain } from '@trellis/runtime';
import { createApp } from './app';
import { Authenticator } from './auth';
import { loadRegistryConfig } from './config';
import { createRegistryMetrics } from './metrics';
import { addEtcdReadiness } from './readiness';

const APP = 'registry';

async function main(): Promise<void> {
  const config = loadRegistryConfig();
  const logger = createLogger(APP, config.TRELLIS_LOG_LEVEL);
  const metricsRegistry = createMetricsRegistry(APP);
  const metrics = createRegistryMetrics(metricsRegistry);
  const health = new Health();

  const etcd = connectEtcd(etcdOptionsFromEnv(config));
  const layout = new KeyLayout(config.TRELLIS_ETCD_PREFIX);
  const store = new MeshStore(etcd, layout, { logger });
  addEtcdReadiness(health, etcd, metrics, logger);

  const serviceCredentials = config.TRELLIS_SERVICE_CREDENTIALS
    ? await ServiceCredentials.load(config.TRELLIS_SERVICE_CREDENTIALS).catch((err: Error) => {
        throw new ConfigError([`TRELLIS_SERVICE_CREDENTIALS: ${err.message}`]);
      })
    : undefined;
  const authenticator = Authenticator.fromConfig(config, serviceCredentials);
  if (!authenticator.acceptsAnyToken)
    logger.warn('neither TRELLIS_ADMIN_TOKEN nor TRELLIS_AUTH_JWKS_URL is set: every write will be refused');
  if (config.TRELLIS_AUTH_JWKS_URL && !config.TRELLIS_AUTH_ISSUER)
    logger.warn('TRELLIS_AUTH_ISSUER is not set: team tokens from any issuer the JWKS verifies are accepted');
  if (!config.TRELLIS_CSRF_SECRET)
    logger.warn('TRELLIS_CSRF_SECRET is not set: using a per-process secret, so web forms fail across replicas and restarts');

  const app = createApp({
    store,
    authenticator,
    health,
    metricsRegistry,
    metrics,
    logger,
    readsRequireAuth: config.TRELLIS_READS_REQUIRE_AUTH,
    maxBodyBytes: config.TRELLIS_MAX_BODY_BYTES,
    csrfSecret: config.TRELLIS_CSRF_SECRET,
    secureCookies: config.TRELLIS_SECURE_COOKIES,
  });
  const server: Server = app.listen(config.TRELLIS_HTTP_PORT, config.TRELLIS_HOST);
  await once(server, 'listening');
  logger.info({ host: config.TRELLIS_HOST, port: config.TRELLIS_HTTP_PORT, etcdPrefix: layout.prefix }, 'registry listening');

  installShutdown({
    logger,
    health,
    drainMs: 2_000,
    steps: [
      {
        name: 'http',
        run: () =>
          new Promise<void>((resolve, reject) => {
            server.close((err) => (err ? reject(err) : resolve()));
            server.closeIdleConnections();
          }),
      },
      { name: 'etcd', run: () => etcd.close() },
    ],
  });
}

runMain(APP, main);

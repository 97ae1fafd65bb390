// registry: config → etcd → startRegistry → its shutdown steps (+ close etcd) on SIGTERM.
import { connectEtcd, etcdOptionsFromEnv, KeyLayout } from '@trellis/mesh-schema';
import { createLogger, installShutdown, runMain } from '@trellis/runtime';
import { loadRegistryConfig } from './config';
import { startRegistry } from './registry';

runMain('registry', async () => {
  const config = loadRegistryConfig();
  const logger = createLogger('registry', config.TRELLIS_LOG_LEVEL);
  const etcd = connectEtcd(etcdOptionsFromEnv(config));
  const registry = await startRegistry({ config, etcd, layout: new KeyLayout(config.TRELLIS_ETCD_PREFIX), logger });
  installShutdown({
    logger,
    health: registry.health,
    drainMs: 2_000,
    steps: [...registry.shutdownSteps, { name: 'close etcd client', run: () => etcd.close() }],
  });
});

// registry: config → etcd → startRegistry → its shutdown steps (+ close etcd) on SIGTERM.
import { connectEtcd, etcdOptionsFromEnv, KeyLayout } from '@trellis/mesh-schema';
import { createLogger, installShutdown, runMain } from '@trellis/runtime';
import { loadRegistryConfig } from './config';
import { startRegistry } from './registry';
import { setupEtcdRoles } from './setup-etcd-roles';

// `main.js setup-etcd-roles`: the one-off least-privilege setup of etcd (docs/security.md).
if (process.argv[2] === 'setup-etcd-roles') runMain('registry setup-etcd-roles', () => setupEtcdRoles());
else
  runMain('registry', async () => {
    const config = loadRegistryConfig();
    const logger = createLogger('registry', config.TRELLIS_LOG_LEVEL);
    const etcdOptions = etcdOptionsFromEnv(config);
    const etcd = connectEtcd(etcdOptions);
    const registry = await startRegistry({
      config,
      etcd,
      etcdClientCert: etcdOptions.tls?.cert,
      layout: new KeyLayout(config.TRELLIS_ETCD_PREFIX),
      logger,
    });
    // SIGHUP (systemctl reload, or by hand after editing a file): read the service credentials and secret files now.
    process.on('SIGHUP', () => void registry.reloadFiles());
    installShutdown({
      logger,
      health: registry.health,
      drainMs: 2_000,
      steps: [...registry.shutdownSteps, { name: 'close etcd client', run: () => etcd.close() }],
    });
  });

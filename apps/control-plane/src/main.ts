// Reads the configuration, connects to etcd and starts the control plane.
import { connectEtcd, etcdOptionsFromEnv, KeyLayout } from '@trellis/mesh-schema';
import { createLogger, installShutdown, runMain } from '@trellis/runtime';
import { loadControlPlaneConfig } from './config';
import { startControlPlane } from './control-plane';

runMain('control-plane', async () => {
  const config = loadControlPlaneConfig();
  const logger = createLogger('control-plane', config.TRELLIS_LOG_LEVEL);
  const etcdOptions = etcdOptionsFromEnv(config);
  const etcd = connectEtcd(etcdOptions);
  const controlPlane = await startControlPlane({
    config,
    etcd,
    etcdClientCert: etcdOptions.tls?.cert,
    layout: new KeyLayout(config.TRELLIS_ETCD_PREFIX),
    logger,
  });
  // systemctl reload (ExecReload) / kill -HUP: the xDS port's TLS files now, not at the next poll.
  process.on('SIGHUP', () => void controlPlane.reloadFiles());
  installShutdown({
    logger,
    health: controlPlane.health,
    drainMs: 2_000,
    steps: [...controlPlane.shutdownSteps, { name: 'close etcd client', run: () => etcd.close() }],
  });
});

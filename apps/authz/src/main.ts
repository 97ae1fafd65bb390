// authz: Envoy ext_authz for the mesh. Reads configuration, starts, and shuts
// down gracefully on SIGTERM; everything else lives in startAuthz.
import { connectEtcd, etcdOptionsFromEnv } from '@trellis/mesh-schema';
import { createLogger, installShutdown, runMain } from '@trellis/runtime';
import { startAuthz, tuneV8ForChecks } from './authz';
import { loadAuthzConfig } from './config';

tuneV8ForChecks();

runMain('authz', async () => {
  const config = loadAuthzConfig();
  const logger = createLogger('authz', config.TRELLIS_LOG_LEVEL);
  const etcdOptions = etcdOptionsFromEnv(config);
  const etcd = connectEtcd(etcdOptions);
  const authz = await startAuthz({ config, logger, etcd, etcdClientCert: etcdOptions.tls?.cert });
  // SIGHUP (systemctl reload, or by hand after a rotation): read keys, CA, TLS and credentials now, not at the next poll.
  process.on('SIGHUP', () => void authz.reloadFiles());
  installShutdown({
    logger,
    health: authz.health,
    // Give Envoy and load balancers a moment to see not-ready before the listeners close.
    drainMs: 2_000,
    steps: [...authz.shutdownSteps, { name: 'close etcd', run: () => etcd.close() }],
  });
});

// Readiness: the registry is ready when etcd answers a linearizable read within
// a short deadline (EtcdProbe), so a frozen or leaderless etcd shows at once.
import { EtcdProbe, type EtcdClient, type KeyLayout } from '@trellis/mesh-schema';
import type { Health, Logger } from '@trellis/runtime';
import type { RegistryMetrics } from './metrics';

export function addEtcdReadiness(health: Health, etcd: EtcdClient, layout: KeyLayout, metrics: RegistryMetrics, logger: Logger): EtcdProbe {
  const probe = new EtcdProbe(etcd, {
    key: layout.meshSettings(),
    onChange: (healthy, err) => {
      if (healthy) logger.info('etcd answers again');
      else logger.warn({ err: err?.message }, 'etcd did not answer the readiness probe');
    },
  });
  health.addCheck('etcd', async () => {
    const ok = await probe.check();
    if (!ok) metrics.etcdErrors.inc({ operation: 'readiness' });
    return ok;
  });
  return probe;
}

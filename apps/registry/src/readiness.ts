// Readiness: the registry is ready when etcd answers.
import { etcdStatus, type EtcdClient } from '@trellis/mesh-schema';
import type { Health, Logger } from '@trellis/runtime';
import type { RegistryMetrics } from './metrics';

export function addEtcdReadiness(health: Health, etcd: EtcdClient, metrics: RegistryMetrics, logger: Logger): void {
  health.addCheck('etcd', async () => {
    try {
      await etcdStatus(etcd);
      return true;
    } catch (err) {
      metrics.etcdErrors.inc({ operation: 'status' });
      logger.warn({ err }, 'etcd status check failed');
      return false;
    }
  });
}

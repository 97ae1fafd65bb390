// Readiness: the registry is ready when etcd answers.
import type { Etcd3 } from 'etcd3';
import type { Health, Logger } from '@trellis/runtime';
import type { RegistryMetrics } from './metrics';

export function addEtcdReadiness(health: Health, etcd: Etcd3, metrics: RegistryMetrics, logger: Logger): void {
  health.addCheck('etcd', async () => {
    try {
      await etcd.maintenance.status();
      return true;
    } catch (err) {
      metrics.etcdErrors.inc({ operation: 'status' });
      logger.warn({ err }, 'etcd status check failed');
      return false;
    }
  });
}

import { collectDefaultMetrics, Registry } from 'prom-client';

/**
 * prom-client also exports three totals as gauges with a counter's `_total` suffix, which
 * `promtool check metrics` rejects. They are dropped: the per-type gauges beside them
 * (`nodejs_active_handles{type}`, …) carry the same numbers, so `sum()` gives the total.
 */
const MISNAMED_GAUGES = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * A registry per app. Process and runtime metrics keep their standard names (`process_*`,
 * `nodejs_*`), as every Node exporter and stock dashboard expects; Prometheus's `job` label
 * tells the apps apart. The app adds its own `trellis_<app>_…` metrics.
 */
export function createMetricsRegistry(_app: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_GAUGES) registry.removeSingleMetric(name);
  return registry;
}

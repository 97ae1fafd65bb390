import { collectDefaultMetrics, Registry } from 'prom-client';

/** A registry per app: process metrics named `trellis_<app>_process_…`, app metrics added by the app. */
export function createMetricsRegistry(app: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: `trellis_${app.replace(/-/g, '_')}_` });
  return registry;
}

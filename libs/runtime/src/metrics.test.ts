import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createMetricsRegistry } from './metrics';

describe('createMetricsRegistry', () => {
  it('exports the standard process and Node metrics under their usual names, gauges without _total', async () => {
    const text = await createMetricsRegistry('control-plane').metrics();
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    expect(text).toMatch(/^# TYPE nodejs_active_handles gauge$/m);
    expect(text).not.toMatch(/^nodejs_active_\w+_total/m);
    expect(text).not.toMatch(/trellis_control_plane_process/);
  });

  // The apps' whole /metrics is checked by the local-mesh end-to-end suite; this covers the shared part.
  const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
  (promtool ? it : it.skip)('passes promtool check metrics (where promtool is installed)', async () => {
    const text = await createMetricsRegistry('authz').metrics();
    const checked = spawnSync(promtool!, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(checked.status === 0 ? 'ok' : `${checked.stdout}${checked.stderr}`).toBe('ok');
  });
});

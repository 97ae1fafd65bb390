// The registry benchmark at tiny sizes (`--smoke`: 20 services, 1 s per load, 10 writes), so
// the tool cannot rot. It exits non-zero when a read or a write fails; the timings it prints
// are not looked at.
import { benchmarkHelp, runBenchmark } from './run-benchmark';

describe('registry-reads benchmark, smoke mode', () => {
  it('--help prints the usage and its options and exits 0', async () => {
    const { code, usage, options } = await benchmarkHelp('registry-reads');
    expect({ code, usage }).toEqual({ code: 0, usage: 'Usage: node tools/bench/registry-reads.mjs [options]' });
    expect(options).toEqual(expect.arrayContaining(['smoke', 'services', 'rate', 'writes-only', 'role', 'help']));
  }, 120_000);

  it('loads the view-served reads and the floor, writes through the registry and etcd, and prints every row', async () => {
    const { code, output } = await runBenchmark('registry-reads', ['--smoke']);
    if (code !== 0) throw new Error(`registry-reads --smoke exited with ${code}:\n${output}`);
    for (const row of [
      '/healthz (floor)',
      'GET /api/v1/services/{name}',
      'GET /api/v1/topology',
      'etcd put (floor)',
      'GET /healthz, one at a time (HTTP round trip)',
      'etcd txn: guarded record + history puts (context)',
      'etcd lease grant, then put on it (context)',
      'PUT /api/v1/services/{name} (If-Match)',
      'POST /api/v1/services (create)',
      'POST /api/v1/services/{name}/instances',
      'PUT /api/v1/services/{name}/instances/{id}/heartbeat',
    ]) {
      expect(output).toContain(`| ${row} |`);
    }
    expect(output).not.toContain('FAILED');
  }, 600_000);
});

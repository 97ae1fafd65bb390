// The fan-out benchmark at tiny sizes (`--smoke`: 40 services, 30 streams, 2 rounds, every
// profile), so the tool cannot rot. It exits non-zero when a push is missing, extra or stale;
// the timings it prints are not looked at.
import { runBenchmark } from './run-benchmark';
const PROFILES = ['clusters', 'envoy', 'delta'];

describe('xds-fanout benchmark, smoke mode', () => {
  it('reaches every affected stream exactly as it should, in every profile, on the floor and the control plane', async () => {
    const { code, output } = await runBenchmark('xds-fanout', ['--smoke']);
    if (code !== 0) throw new Error(`xds-fanout --smoke exited with ${code}:\n${output}`);
    for (const profile of PROFILES) {
      for (const server of ['floor', 'control plane']) {
        expect(output).toMatch(new RegExp(`^${server} \\[${profile}\\]: 20/20 affected streams reached, 0 missing.* — correct$`, 'm'));
      }
      // The report names what it measures next to latency.
      expect(output).toMatch(new RegExp(`\\[${profile}\\] hub write → push received`));
    }
    expect(output).toMatch(/^server peak RSS, MiB/m);
    expect(output).toMatch(/^resource bytes per change/m);
  }, 600_000);
});

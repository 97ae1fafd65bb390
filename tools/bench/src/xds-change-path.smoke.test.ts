// The in-process change-path tool at tiny sizes (`--smoke`: 40 services, 30 streams, 3 rounds), so it
// cannot rot. It exits non-zero when an affected stream misses its new clusters or another stream gets
// some; the times it prints are not looked at here.
import { benchmarkHelp, runBenchmark } from './run-benchmark';

describe('xds-change-path tool, smoke mode', () => {
  it('--help prints the usage and its options and exits 0', async () => {
    const { code, usage, options } = await benchmarkHelp('xds-change-path');
    expect({ code, usage }).toEqual({ code: 0, usage: 'Usage: node tools/bench/xds-change-path.mjs [options]' });
    expect(options).toEqual(expect.arrayContaining(['smoke', 'services', 'proxies', 'cpu-prof', 'help']));
  }, 120_000);

  it('changes hub and pushes the new clusters to exactly its callers’ streams, in process', async () => {
    const { code, output } = await runBenchmark('xds-change-path', ['--smoke']);
    if (code !== 0) throw new Error(`xds-change-path --smoke exited with ${code}:\n${output}`);
    expect(output).toContain('40 services, 30 streams (10 affected)');
    expect(output).toMatch(/to last CDS: CPU median [\d.]+ ms/);
  }, 300_000);
});
